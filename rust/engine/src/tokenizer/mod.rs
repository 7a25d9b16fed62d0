//! Tokenizers built from a GGUF vocabulary, with the same token ids as
//! llama.cpp: SentencePiece-style (`tokenizer.ggml.model = llama`) and GPT-2
//! byte-level BPE (`gpt2`).

use crate::error::Result;
use crate::gguf::GgufFile;

/// Token types as stored in `tokenizer.ggml.token_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

pub struct Tokenizer {
    // private
}

impl Tokenizer {
    /// Builds the tokenizer from the file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        todo!()
    }

    /// Encodes `text`. `add_special` adds BOS (and EOS) as the vocabulary's
    /// flags say; `parse_special` turns control-token text such as
    /// `<|im_end|>` into that token, otherwise it stays plain text.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        todo!()
    }

    /// The bytes a token stands for, as llama.cpp's `token_to_piece` returns
    /// them. Control tokens give their text only when `special` is true.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        todo!()
    }

    /// Concatenates the pieces of `ids`.
    pub fn decode(&self, ids: &[u32], special: bool) -> Vec<u8> {
        todo!()
    }

    pub fn n_vocab(&self) -> usize {
        todo!()
    }

    pub fn bos_id(&self) -> Option<u32> {
        todo!()
    }

    pub fn eos_id(&self) -> Option<u32> {
        todo!()
    }

    /// Whether encoding with `add_special` prepends BOS.
    pub fn add_bos(&self) -> bool {
        todo!()
    }

    /// Whether `id` ends generation (eos, eot, `<end_of_turn>`, `<|im_end|>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        todo!()
    }

    /// All end-of-generation token ids.
    pub fn eog_ids(&self) -> Vec<u32> {
        todo!()
    }

    /// The vocabulary text of `id`.
    pub fn token_text(&self, id: u32) -> &str {
        todo!()
    }

    pub fn token_type(&self, id: u32) -> TokenType {
        todo!()
    }

    /// `"llama"` (SentencePiece) or `"gpt2"` (byte-level BPE).
    pub fn model_name(&self) -> &str {
        todo!()
    }
}
