//! Xen's version as XENVER_version and XENVER_extraversion report it.

use core::fmt;

/// "4.17.7-pre" from major/minor (`XENVER_version`) and the extraversion string.
#[derive(Clone, Copy)]
pub struct XenVersion {
    pub major: u16,
    pub minor: u16,
    extra: [u8; super::abi::XEN_EXTRAVERSION_LEN],
}

impl XenVersion {
    /// From XENVER_version's `major << 16 | minor` and the raw extraversion bytes.
    pub fn new(version: u64, extra: [u8; super::abi::XEN_EXTRAVERSION_LEN]) -> Self {
        XenVersion { major: (version >> 16) as u16, minor: version as u16, extra }
    }

    pub fn extraversion(&self) -> &str {
        let len = self.extra.iter().position(|&b| b == 0).unwrap_or(self.extra.len());
        core::str::from_utf8(&self.extra[..len]).unwrap_or("")
    }

    /// Queries Xen.
    #[cfg(target_os = "none")]
    pub fn query() -> Result<Self, super::XenError> {
        let version = super::hypercall::xen_version(super::abi::XENVER_VERSION)?;
        let mut extra = [0u8; super::abi::XEN_EXTRAVERSION_LEN];
        super::hypercall::xen_extraversion(&mut extra)?;
        Ok(Self::new(version, extra))
    }
}

impl fmt::Display for XenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}{}", self.major, self.minor, self.extraversion())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_like_xl_info() {
        let mut extra = [0u8; 16];
        extra[..2].copy_from_slice(b".7");
        let v = super::XenVersion::new((4 << 16) | 17, extra);
        assert_eq!(v.to_string(), "4.17.7");
    }
}
