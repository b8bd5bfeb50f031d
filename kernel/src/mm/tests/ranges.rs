//! Range operations.
