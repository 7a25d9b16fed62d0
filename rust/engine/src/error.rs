//! The engine's error type. Every variant maps to a typed Python exception.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// The file could not be opened or read.
    Io { path: String, source: std::io::Error },
    /// The file is not a valid GGUF file; the message names the field or tensor.
    Format(String),
    /// The file is valid but uses an architecture, tensor type or tokenizer
    /// turbokv does not support.
    Unsupported(String),
    /// More tokens than the context holds.
    ContextOverflow { n_tokens: usize, n_ctx: usize },
    /// An argument is out of range; the message names it and the valid range.
    InvalidArgument(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "cannot read {path}: {source}"),
            Error::Format(msg) => write!(f, "invalid GGUF file: {msg}"),
            Error::Unsupported(msg) => write!(f, "unsupported model: {msg}"),
            Error::ContextOverflow { n_tokens, n_ctx } => write!(
                f,
                "{n_tokens} tokens do not fit in the context of {n_ctx} tokens; \
                 use a larger context (n_ctx) or a shorter input"
            ),
            Error::InvalidArgument(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand for `Err(Error::Format(..))`.
pub fn format_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Format(msg.into()))
}
