//! The runner's error: a one-line reason for a set-up or build problem (exit status 6).

use std::fmt;

/// A set-up or build problem, with the one line that says what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

/// The runner's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with this message (one line; say what is missing and the command that fixes it).
    pub fn new(message: impl Into<String>) -> Self {
        Error { message: message.into() }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Adds "while doing X" context to I/O and other errors.
pub trait Context<T> {
    /// Turns the error into an [`Error`] whose message starts with `what`.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|error| Error::new(format!("{}: {error}", what())))
    }
}
