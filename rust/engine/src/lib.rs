//! The turbokv engine: plain Rust, no Python.
//!
//! [`gguf`] reads model files over mmap, [`model`] builds a transformer from
//! them, [`kv_cache`] stores keys and values (fp32, fp16 or TurboQuant
//! blocks), [`tokenizer`] and [`sampler`] turn text into tokens and back.

pub mod attention;
pub mod centering;
pub mod centers_cache;
pub mod config;
pub mod error;
pub mod forward;
pub mod generate;
pub mod gguf;
pub mod kv_cache;
pub mod matmul;
pub mod model;
pub mod perplexity;
pub mod pool;
pub mod sampler;
pub mod tokenizer;
pub mod weights;

pub use error::{Error, Result};
pub use kv_cache::KvType;
pub use model::{LogitsWanted, Model, Session};
