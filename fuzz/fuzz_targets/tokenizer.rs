//! Fuzzes encoding and decoding with SentencePiece and byte-level BPE
//! vocabularies under each supported pre-tokenizer family.
//!
//! The first input byte picks the vocabulary and the flags, the rest is the
//! text (invalid UTF-8 is replaced, as Python callers would have to). The
//! vocabularies are small synthetic files in fuzz/vocab, written by
//! fuzz/make_corpus.py.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use turbokv_engine::gguf::GgufFile;
use turbokv_engine::tokenizer::Tokenizer;

const VOCAB_FILES: [&[u8]; 6] = [
    include_bytes!("../vocab/spm.gguf"),
    include_bytes!("../vocab/bpe-default.gguf"),
    include_bytes!("../vocab/bpe-gpt-2.gguf"),
    include_bytes!("../vocab/bpe-llama3.gguf"),
    include_bytes!("../vocab/bpe-qwen2.gguf"),
    include_bytes!("../vocab/bpe-smollm.gguf"),
];

fn tokenizers() -> &'static [Tokenizer] {
    static TOKENIZERS: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    TOKENIZERS.get_or_init(|| {
        VOCAB_FILES
            .iter()
            .map(|bytes| {
                let file = GgufFile::from_bytes(bytes.to_vec()).expect("fuzz/vocab file is valid GGUF");
                Tokenizer::from_gguf(&file).expect("fuzz/vocab file has a valid vocabulary")
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let (&selector, rest) = match data.split_first() {
        Some(split) => split,
        None => return,
    };
    let tokenizers = tokenizers();
    let tokenizer = &tokenizers[usize::from(selector >> 2) % tokenizers.len()];
    let add_special = selector & 1 != 0;
    let parse_special = selector & 2 != 0;
    let text = String::from_utf8_lossy(rest);

    let ids = tokenizer.encode(&text, add_special, parse_special);
    let n_vocab = tokenizer.n_vocab();
    assert!(ids.iter().all(|&id| (id as usize) < n_vocab), "encode returned an id outside the vocabulary");

    // Decoding any ids in range must not panic, whatever the token types.
    let _ = tokenizer.decode(&ids, true);
    let _ = tokenizer.decode(&ids, false);
    let arbitrary: Vec<u32> = rest.chunks(2).map(|pair| pair.iter().fold(0u32, |id, &b| id << 8 | u32::from(b)) % n_vocab as u32).collect();
    let _ = tokenizer.decode(&arbitrary, false);
});
