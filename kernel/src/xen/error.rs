//! Xen's error results as values: a negative errno from a hypercall, with its name.

use core::fmt;

/// A hypercall failed: Xen returned `-errno`. Xen's errno values on x86 are Linux's
/// (Xen public/errno.h).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct XenError(pub i64);

impl XenError {
    pub const EPERM: XenError = XenError(1);
    pub const ENOENT: XenError = XenError(2);
    pub const ESRCH: XenError = XenError(3);
    pub const EINVAL: XenError = XenError(22);
    pub const ENOMEM: XenError = XenError(12);
    pub const EFAULT: XenError = XenError(14);
    pub const EBUSY: XenError = XenError(16);
    pub const EEXIST: XenError = XenError(17);
    pub const ENOSYS: XenError = XenError(38);
    pub const ETIMEDOUT: XenError = XenError(110);

    /// Turns a raw hypercall return value into a result: negative values are errors.
    pub fn check(ret: i64) -> Result<u64, XenError> {
        if ret < 0 {
            Err(XenError(-ret))
        } else {
            Ok(ret as u64)
        }
    }

    /// The errno's symbolic name, or `None` for a value Xen does not define.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            4 => "EINTR",
            5 => "EIO",
            6 => "ENXIO",
            7 => "E2BIG",
            8 => "ENOEXEC",
            9 => "EBADF",
            10 => "ECHILD",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            18 => "EXDEV",
            19 => "ENODEV",
            20 => "ENOTDIR",
            21 => "EISDIR",
            22 => "EINVAL",
            23 => "ENFILE",
            24 => "EMFILE",
            28 => "ENOSPC",
            30 => "EROFS",
            31 => "EMLINK",
            33 => "EDOM",
            34 => "ERANGE",
            35 => "EDEADLK",
            36 => "ENAMETOOLONG",
            37 => "ENOLCK",
            38 => "ENOSYS",
            39 => "ENOTEMPTY",
            61 => "ENODATA",
            62 => "ETIME",
            74 => "EBADMSG",
            75 => "EOVERFLOW",
            84 => "EILSEQ",
            85 => "ERESTART",
            88 => "ENOTSOCK",
            90 => "EMSGSIZE",
            95 => "EOPNOTSUPP",
            98 => "EADDRINUSE",
            99 => "EADDRNOTAVAIL",
            105 => "ENOBUFS",
            106 => "EISCONN",
            107 => "ENOTCONN",
            110 => "ETIMEDOUT",
            111 => "ECONNREFUSED",
            _ => return None,
        })
    }
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (-{})", self.0),
            None => write!(f, "errno -{}", self.0),
        }
    }
}

impl fmt::Debug for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_returns_are_named_errors() {
        assert_eq!(XenError::check(0), Ok(0));
        assert_eq!(XenError::check(7), Ok(7));
        assert_eq!(XenError::check(-22), Err(XenError::EINVAL));
        assert_eq!(format!("{}", XenError(1)), "EPERM (-1)");
        assert_eq!(format!("{}", XenError(38)), "ENOSYS (-38)");
        assert_eq!(format!("{}", XenError(9999)), "errno -9999");
    }
}
