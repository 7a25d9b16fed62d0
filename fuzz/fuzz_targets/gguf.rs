//! Fuzzes the GGUF reader and the model loader on arbitrary bytes.
//!
//! Any input must give `Ok` or an `Err`; a panic, an abort or an allocation
//! above libFuzzer's `-malloc_limit_mb` is a finding.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use turbokv_engine::config::Config;
use turbokv_engine::gguf::GgufFile;
use turbokv_engine::tokenizer::Tokenizer;
use turbokv_engine::weights::Weights;

fuzz_target!(|data: &[u8]| {
    let file = match GgufFile::from_bytes(data.to_vec()) {
        Ok(file) => Arc::new(file),
        Err(_) => return,
    };

    // The loader's steps after parsing, in the order Model::load runs them.
    // Each reads metadata and tensors that the reader accepted.
    let config = Config::from_gguf(&file);
    let tokenizer = Tokenizer::from_gguf(&file);
    if let Ok(config) = &config {
        let _ = Weights::load(&file, config);
    }

    // A tokenizer that loaded must encode and decode its own token texts.
    if let Ok(tokenizer) = tokenizer {
        let n_vocab = tokenizer.n_vocab().min(64) as u32;
        let ids: Vec<u32> = (0..n_vocab).collect();
        let text = String::from_utf8_lossy(&tokenizer.decode(&ids, true)).into_owned();
        let _ = tokenizer.encode(&text, true, true);
    }
});
