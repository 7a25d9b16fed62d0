//! Tokenizers built from a GGUF vocabulary, with the same token ids as
//! llama.cpp: SentencePiece-style (`tokenizer.ggml.model = llama`) and GPT-2
//! byte-level BPE (`gpt2`).
//!
//! Encoding first cuts the text at special tokens ([`special`]), then runs
//! the model's tokenizer ([`spm`] or [`bpe`], the latter after the
//! pre-tokenizer of [`pretokenize`]) on each piece of plain text.

mod bpe;
mod gguf_vocab;
mod pretokenize;
mod special;
mod spm;
mod text_index;
mod unicode;
mod vocab;

#[cfg(test)]
mod json;
#[cfg(test)]
mod tests;

use crate::error::Result;
use crate::gguf::GgufFile;

pub use vocab::{attr, SpecialIds, Vocab, SPECIAL_ID_KEYS};

use special::Fragment;
use vocab::{LoadedVocab, ModelKind};

/// The escaped form of a space in SentencePiece vocabularies (U+2581).
const SPM_SPACE: &str = "\u{2581}";

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
    vocab: LoadedVocab,
}

impl Tokenizer {
    /// Builds the tokenizer from the file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        Tokenizer::from_vocab(gguf_vocab::read_vocab(file)?)
    }

    /// Builds the tokenizer from a vocabulary's parts. Mismatched array
    /// lengths and special ids outside the vocabulary are [`crate::Error::Format`].
    pub fn from_vocab(vocab: Vocab) -> Result<Tokenizer> {
        Ok(Tokenizer { vocab: LoadedVocab::build(vocab)? })
    }

    /// Encodes `text`. `add_special` adds BOS (and EOS) as the vocabulary's
    /// flags say; `parse_special` turns control-token text such as
    /// `<|im_end|>` into that token, otherwise it stays plain text.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let v = &self.vocab;
        let fragments = special::partition(v, text, parse_special);
        let mut out = Vec::new();

        if add_special && v.add_bos {
            out.extend(v.ids.bos);
        }
        match v.kind {
            ModelKind::Spm => self.encode_spm(&fragments, &mut out),
            ModelKind::Bpe(config) => {
                for fragment in &fragments {
                    match *fragment {
                        Fragment::Text(t) => bpe::tokenize(v, config, t, &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && v.add_eos {
            out.extend(v.ids.eos);
        }

        if add_special && v.add_bos && out.len() >= 2 && Some(out[1]) == v.ids.bos {
            log::warn!("the text starts with BOS and BOS was added, so the tokens start with two BOS");
        }
        out
    }

    /// SentencePiece: spaces become U+2581, and text that starts the input
    /// or follows a special token gets a leading space when
    /// `add_space_prefix` is set.
    fn encode_spm(&self, fragments: &[Fragment], out: &mut Vec<u32>) {
        let mut prev_is_special = true;
        for fragment in fragments {
            match *fragment {
                Fragment::Text(t) => {
                    let mut text = String::with_capacity(t.len() + 3);
                    if self.vocab.add_space_prefix && prev_is_special {
                        text.push(' ');
                    }
                    text.push_str(t);
                    let escaped = text.replace(' ', SPM_SPACE);
                    spm::tokenize(&self.vocab, &escaped, out);
                    prev_is_special = false;
                }
                Fragment::Token(id) => {
                    out.push(id);
                    prev_is_special = true;
                }
            }
        }
    }

    /// The bytes a token stands for, as llama.cpp's `token_to_piece` returns
    /// them. Control tokens give their text only when `special` is true.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        let (token, text) = match (self.vocab.tokens.get(id as usize), self.vocab.texts.get(id as usize)) {
            (Some(token), Some(text)) => (token, text),
            _ => return Vec::new(),
        };
        let attr = token.attr;
        if !special && attr & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return Vec::new();
        }
        if attr & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            return text.as_bytes().to_vec();
        }
        if attr & attr::NORMAL != 0 {
            return match self.vocab.kind {
                ModelKind::Spm => text.replace(SPM_SPACE, " ").into_bytes(),
                ModelKind::Bpe(_) => bpe::decode_text(text),
            };
        }
        if attr & attr::BYTE != 0 {
            return vec![byte_token_value(text)];
        }
        Vec::new()
    }

    /// Concatenates the pieces of `ids`.
    pub fn decode(&self, ids: &[u32], special: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend(self.token_to_piece(id, special));
        }
        out
    }

    pub fn n_vocab(&self) -> usize {
        self.vocab.n_tokens()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.vocab.ids.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.vocab.ids.eos
    }

    /// The end-of-turn token (stored `eot_token_id`, else found by its text).
    pub fn eot_id(&self) -> Option<u32> {
        self.vocab.ids.eot
    }

    /// Whether encoding with `add_special` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    /// Whether encoding with `add_special` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }

    /// Whether `id` ends generation (eos, eot, `<end_of_turn>`, `<|im_end|>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog_ids.contains(&id)
    }

    /// All end-of-generation token ids, ascending.
    pub fn eog_ids(&self) -> Vec<u32> {
        self.vocab.eog_ids.iter().copied().collect()
    }

    /// The vocabulary text of `id`; empty for an id outside the vocabulary.
    pub fn token_text(&self, id: u32) -> &str {
        self.vocab.texts.get(id as usize).unwrap_or("")
    }

    /// The token's score (SentencePiece log probability; 0 for BPE).
    pub fn token_score(&self, id: u32) -> f32 {
        self.vocab.tokens.get(id as usize).map_or(0.0, |t| t.score)
    }

    /// The token's attribute bits ([`attr`]), equal to llama.cpp's
    /// `llama_vocab_get_attr`, including the CONTROL and UNUSED bits it adds
    /// by token text. 0 for an id outside the vocabulary.
    pub fn token_attr(&self, id: u32) -> u32 {
        self.vocab.tokens.get(id as usize).map_or(attr::UNDEFINED, |t| t.attr)
    }

    /// The token's type; a token with several attribute bits reports the
    /// first of control, user-defined, unknown, byte, normal, unused.
    pub fn token_type(&self, id: u32) -> TokenType {
        let a = self.token_attr(id);
        let order = [
            (attr::CONTROL, TokenType::Control),
            (attr::USER_DEFINED, TokenType::UserDefined),
            (attr::UNKNOWN, TokenType::Unknown),
            (attr::BYTE, TokenType::Byte),
            (attr::NORMAL, TokenType::Normal),
            (attr::UNUSED, TokenType::Unused),
        ];
        order.iter().find(|(bit, _)| a & bit != 0).map_or(TokenType::Undefined, |&(_, t)| t)
    }

    /// `"llama"` (SentencePiece) or `"gpt2"` (byte-level BPE).
    pub fn model_name(&self) -> &str {
        &self.vocab.model_name
    }
}

/// Parses the byte of a `<0xXX>` token, or 0 when the hex digits are
/// malformed (C's `strtol` also returns 0 there).
fn byte_token_value(text: &str) -> u8 {
    text.get(3..5).and_then(|hex| u8::from_str_radix(hex, 16).ok()).unwrap_or(0)
}
