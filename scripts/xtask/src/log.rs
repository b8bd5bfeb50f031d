//! One saved console log per run: `target/faultline-logs/<UTC time>-<mode>[-<command line>].log`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Context, Error, Result};

/// The run's log file, written line by line as the console streams.
pub struct RunLog {
    path: PathBuf,
    file: BufWriter<File>,
}

impl RunLog {
    /// Creates a new, uniquely named log file in `dir`.
    pub fn create(dir: &Path, mode: &str, cmdline: &str) -> Result<RunLog> {
        fs::create_dir_all(dir).context(|| format!("cannot create {}", dir.display()))?;
        let stem = format!("{}-{mode}{}", utc_stamp(SystemTime::now()), slug(cmdline));
        for attempt in 0..1000 {
            let name = match attempt {
                0 => format!("{stem}.log"),
                n => format!("{stem}-{n}.log"),
            };
            let path = dir.join(name);
            match File::options().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok(RunLog { path, file: BufWriter::new(file) }),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => {
                    return Err(Error::new(format!("cannot create {}: {error}", path.display())))
                }
            }
        }
        Err(Error::new(format!("cannot find a free log file name in {}", dir.display())))
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line (flushed, so the file is useful while the run goes on).
    pub fn line(&mut self, line: &str) {
        let _ = writeln!(self.file, "{line}");
        let _ = self.file.flush();
    }
}

/// `-selftest-pf` for `selftest=pf`: the command line's letters and digits, shortened.
fn slug(cmdline: &str) -> String {
    let mut slug = String::new();
    for c in cmdline.chars() {
        if slug.len() >= 40 {
            break;
        }
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches('-');
    if slug.is_empty() {
        String::new()
    } else {
        format!("-{slug}")
    }
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, day_seconds) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        day_seconds / 3600,
        day_seconds / 60 % 60,
        day_seconds % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_and_slugs() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101-000000");
        let time = UNIX_EPOCH + Duration::from_secs(1_764_043_512); // 2025-11-25 04:05:12 UTC
        assert_eq!(utc_stamp(time), "20251125-040512");
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "20000229-000000");
        assert_eq!(slug("selftest=pf"), "-selftest-pf");
        assert_eq!(slug(""), "");
        assert_eq!(slug("  a,,b  "), "-a-b");
    }
}
