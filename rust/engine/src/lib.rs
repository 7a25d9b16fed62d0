//! The turbokv engine: plain Rust, no Python.
//!
//! [`gguf`] reads model files over mmap, [`model`] builds a transformer from
//! them, [`kv_cache`] stores keys and values (fp32, fp16 or TurboQuant
//! blocks), [`tokenizer`] and [`sampler`] turn text into tokens and back.

pub mod error;
pub mod gguf;
pub mod sampler;
pub mod tokenizer;

pub use error::{Error, Result};
