//! Turning the kernel's backtrace addresses into `function+offset (file:line)`.
//!
//! Function names and offsets come from the ELF symbol table (demangled, without the hash);
//! file and line from the DWARF line tables (the release profile keeps debug info). For a frame
//! above #0 the address is a return address, so the line lookup uses the call instruction
//! (address - 1) while the printed offset stays relative to the address as printed.

use std::borrow::Cow;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SectionKind, SymbolKind};

use crate::console::{find_rip, parse_backtrace_line};
use crate::error::{Context as _, Error, Result};

type Reader = gimli::EndianArcSlice<gimli::RunTimeEndian>;

/// A function symbol: where it starts, how long it is, its demangled name.
#[derive(Clone, Debug)]
struct FunctionSymbol {
    start: u64,
    size: u64,
    name: String,
}

/// Symbol and line information of one kernel image.
pub struct Symbolizer {
    /// Sorted by start address.
    symbols: Vec<FunctionSymbol>,
    lines: Option<addr2line::Context<Reader>>,
    /// Printed paths are made relative to this folder (the workspace root).
    source_root: String,
}

impl Symbolizer {
    /// Reads the symbols and debug info of the ELF at `path`.
    pub fn load(path: &Path, source_root: &Path) -> Result<Symbolizer> {
        let data = fs::read(path).context(|| format!("cannot read {}", path.display()))?;
        let file = object::File::parse(&*data).map_err(|error| {
            Error::new(format!("{} is not an ELF file: {error}", path.display()))
        })?;
        let symbols = function_symbols(&file);
        let lines = dwarf_context(&file);
        let mut source_root = source_root.to_string_lossy().into_owned();
        if !source_root.ends_with('/') {
            source_root.push('/');
        }
        Ok(Symbolizer { symbols, lines, source_root })
    }

    /// `name+0xoff (file:line)` for an address, or `None` if no function contains it.
    ///
    /// `return_address` says the address is where a call returns to (backtrace frames above #0).
    ///
    /// An address just past a function's end is a return address after a call to a function
    /// that does not return (the call is the last instruction): it is looked up at address - 1,
    /// whatever `return_address` says, since a panic backtrace's #0 is such an address too.
    pub fn describe(&self, address: u64, return_address: bool) -> Option<String> {
        let (symbol, return_address) = match self.symbol_at(address) {
            Some(symbol) => (symbol, return_address),
            None => (self.symbol_at(address.checked_sub(1)?)?, true),
        };
        let mut text = format!("{}+{:#x}", symbol.name, address - symbol.start);
        let probe = if return_address { address.saturating_sub(1) } else { address };
        if let Some(location) = self.location(probe, &symbol.name) {
            text.push_str(" (");
            text.push_str(&location);
            text.push(')');
        }
        Some(text)
    }

    /// The console line with its address symbolized: a backtrace line `#n 0x...` gets the
    /// function appended; a line with `rip=0x...` gets `[rip: function]` appended. Other lines,
    /// and addresses no function contains, are returned unchanged.
    pub fn annotate<'a>(&self, line: &'a str) -> Cow<'a, str> {
        if let Some((frame, address)) = parse_backtrace_line(line) {
            if let Some(text) = self.describe(address, frame > 0) {
                return Cow::Owned(format!("{} {text}", line.trim_end()));
            }
            return Cow::Borrowed(line);
        }
        if let Some(address) = find_rip(line) {
            if let Some(text) = self.describe(address, false) {
                return Cow::Owned(format!("{}  [rip: {text}]", line.trim_end()));
            }
        }
        Cow::Borrowed(line)
    }

    fn symbol_at(&self, address: u64) -> Option<&FunctionSymbol> {
        let index = self.symbols.partition_point(|symbol| symbol.start <= address);
        let symbol = self.symbols.get(index.checked_sub(1)?)?;
        let inside = if symbol.size > 0 {
            address < symbol.start + symbol.size
        } else {
            // An assembly label without a size: accept it up to the next symbol.
            self.symbols.get(index).is_none_or(|next| address < next.start)
        };
        inside.then_some(symbol)
    }

    /// `file:line` of the innermost frame in our own sources (not the standard library), with the
    /// inlined function's name when it is not the symbol's.
    fn location(&self, probe: u64, symbol_name: &str) -> Option<String> {
        let lines = self.lines.as_ref()?;
        let mut frames = lines.find_frames(probe).skip_all_loads().ok()?;
        let mut chosen: Option<(String, Option<String>)> = None;
        while let Ok(Some(frame)) = frames.next() {
            let Some(location) = frame.location.as_ref() else {
                continue;
            };
            let Some(file) = location.file else { continue };
            let place = match location.line {
                Some(line) => format!("{}:{line}", self.shorten(file)),
                None => self.shorten(file).to_string(),
            };
            let function = frame
                .function
                .as_ref()
                .and_then(|name| name.raw_name().ok())
                .map(|raw| format!("{:#}", rustc_demangle::demangle(raw.as_ref())));
            let ours = !file.starts_with("/rustc/") && !file.contains("/.cargo/registry/");
            if chosen.is_none() {
                chosen = Some((place.clone(), function.clone()));
            }
            if ours {
                chosen = Some((place, function));
                break;
            }
        }
        let (place, function) = chosen?;
        match function {
            Some(function) if function != symbol_name => Some(format!("{place}, in {function}")),
            _ => Some(place),
        }
    }

    /// A workspace path relative to the workspace; `/rustc/<commit>/library/...` as `library/...`.
    fn shorten<'a>(&self, file: &'a str) -> &'a str {
        if let Some(relative) = file.strip_prefix(self.source_root.as_str()) {
            return relative;
        }
        if let Some(in_rustc) = file.strip_prefix("/rustc/") {
            if let Some(slash) = in_rustc.find('/') {
                return &in_rustc[slash + 1..];
            }
        }
        file
    }
}

/// Every defined symbol in an executable section, sorted, named without the mangling hash.
fn function_symbols(file: &object::File<'_>) -> Vec<FunctionSymbol> {
    let mut symbols: Vec<FunctionSymbol> = file
        .symbols()
        .filter(|symbol| symbol.is_definition() || symbol.kind() == SymbolKind::Label)
        .filter(|symbol| {
            matches!(symbol.kind(), SymbolKind::Text | SymbolKind::Label | SymbolKind::Unknown)
        })
        .filter(|symbol| {
            symbol
                .section_index()
                .and_then(|index| file.section_by_index(index).ok())
                .is_some_and(|section| section.kind() == SectionKind::Text)
        })
        .filter_map(|symbol| {
            let name = symbol.name().ok()?;
            if name.is_empty() || name.starts_with(".L") || name.starts_with('$') {
                return None;
            }
            Some(FunctionSymbol {
                start: symbol.address(),
                size: symbol.size(),
                name: format!("{:#}", rustc_demangle::demangle(name)),
            })
        })
        .collect();
    // At one address, keep the sized symbol (a function) over a bare label.
    symbols.sort_by(|a, b| a.start.cmp(&b.start).then(b.size.cmp(&a.size)));
    symbols.dedup_by(|later, earlier| later.start == earlier.start);
    symbols
}

/// The DWARF line and inline information, if the image has any.
fn dwarf_context(file: &object::File<'_>) -> Option<addr2line::Context<Reader>> {
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    file.section_by_name(".debug_info")?;
    let load = |id: gimli::SectionId| -> std::result::Result<Reader, gimli::Error> {
        let data: Arc<[u8]> = match file.section_by_name(id.name()) {
            Some(section) => match section.uncompressed_data() {
                Ok(bytes) => Arc::from(&*bytes),
                Err(_) => Arc::from(&[][..]),
            },
            None => Arc::from(&[][..]),
        };
        Ok(gimli::EndianArcSlice::new(data, endian))
    };
    let dwarf = gimli::Dwarf::load(load).ok()?;
    addr2line::Context::from_dwarf(dwarf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary is itself an ELF with symbols and debug info: symbolize one of its own
    /// functions.
    #[inline(never)]
    fn a_function_to_find() -> u64 {
        std::hint::black_box(42)
    }

    #[test]
    fn symbolizes_an_address_in_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap();
        let symbolizer = Symbolizer::load(&exe, root).unwrap();
        assert_eq!(a_function_to_find(), 42);
        // The test binary is position independent: find the function's link-time address.
        let symbol = symbolizer
            .symbols
            .iter()
            .find(|symbol| symbol.name.ends_with("tests::a_function_to_find"))
            .expect("the test function has a symbol")
            .clone();
        let line = format!("    #0 0x{:016x}", symbol.start + 1);
        let annotated = symbolizer.annotate(&line);
        assert!(annotated.starts_with(&line), "{annotated}");
        assert!(annotated.contains("symbolize::tests::a_function_to_find+0x1"), "{annotated}");
        assert!(annotated.contains("symbolize.rs:"), "{annotated}");
        // An address nowhere in the image stays as it is.
        assert_eq!(symbolizer.annotate("    #1 0x0000000000000010"), "    #1 0x0000000000000010");
        assert_eq!(symbolizer.annotate("an ordinary line"), "an ordinary line");
    }
}
