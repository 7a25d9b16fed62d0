//! The vocabulary: token texts, scores and attributes, special ids, the
//! end-of-generation set and BPE merge ranks, built the way llama.cpp's
//! vocabulary loader (src/llama-vocab.cpp) builds them.

use std::collections::BTreeSet;

use super::pretokenize::PreConfig;
use super::text_index::TextIndex;
use crate::error::{Error, Result};
use crate::gguf::StringArray;

/// Token attribute bits, with llama.cpp's `llama_token_attr` values.
pub mod attr {
    pub const UNDEFINED: u32 = 0;
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;
}

/// Special token ids as stored in `tokenizer.ggml.*_token_id` (raw values,
/// checked against the vocabulary size when the tokenizer is built).
#[derive(Clone, Debug, Default)]
pub struct SpecialIds {
    pub bos: Option<u64>,
    pub eos: Option<u64>,
    pub eot: Option<u64>,
    pub eom: Option<u64>,
    pub unknown: Option<u64>,
    pub separator: Option<u64>,
    pub padding: Option<u64>,
    pub mask: Option<u64>,
    pub fim_pre: Option<u64>,
    pub fim_suf: Option<u64>,
    pub fim_mid: Option<u64>,
    pub fim_pad: Option<u64>,
    pub fim_rep: Option<u64>,
    pub fim_sep: Option<u64>,
}

/// GGUF keys of the special ids, in [`SpecialIds`] field order.
/// `seperator` is llama.cpp's spelling of the key.
pub const SPECIAL_ID_KEYS: [&str; 14] = [
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.seperator_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.mask_token_id",
    "tokenizer.ggml.fim_pre_token_id",
    "tokenizer.ggml.fim_suf_token_id",
    "tokenizer.ggml.fim_mid_token_id",
    "tokenizer.ggml.fim_pad_token_id",
    "tokenizer.ggml.fim_rep_token_id",
    "tokenizer.ggml.fim_sep_token_id",
];

impl SpecialIds {
    fn as_array(&self) -> [Option<u64>; 14] {
        [
            self.bos,
            self.eos,
            self.eot,
            self.eom,
            self.unknown,
            self.separator,
            self.padding,
            self.mask,
            self.fim_pre,
            self.fim_suf,
            self.fim_mid,
            self.fim_pad,
            self.fim_rep,
            self.fim_sep,
        ]
    }
}

/// A vocabulary from its parts, as stored in the `tokenizer.ggml.*` metadata.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    /// `tokenizer.ggml.model`: `llama` (SentencePiece) or `gpt2` (byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`: the BPE pre-tokenizer.
    pub pre: Option<String>,
    pub tokens: StringArray,
    /// One per token; 0 for every token when absent.
    pub scores: Option<Vec<f32>>,
    /// One per token, GGUF token types (1 normal, 2 unknown, 3 control,
    /// 4 user-defined, 5 unused, 6 byte); NORMAL for every token when absent.
    pub token_types: Option<Vec<i32>>,
    /// BPE merges, `"left right"` in rank order.
    pub merges: Option<StringArray>,
    pub special_ids: SpecialIds,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    Spm,
    Bpe(PreConfig),
}

/// A token's score and attributes. Its text is in [`LoadedVocab::texts`].
#[derive(Clone, Copy, Debug)]
pub struct TokenData {
    pub score: f32,
    pub attr: u32,
}

/// Special ids after defaults and validation.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResolvedIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unknown: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// The vocabulary ready for encoding and decoding.
#[derive(Clone, Debug)]
pub struct LoadedVocab {
    pub model_name: String,
    pub kind: ModelKind,
    /// Token texts by id, with empty texts replaced by `[EMPTY_<id>]`.
    pub texts: StringArray,
    pub tokens: Vec<TokenData>,
    /// Token ids by text.
    pub token_to_id: TextIndex,
    /// BPE merges `"left right"` in rank order, empty for SentencePiece.
    pub merges: StringArray,
    /// Merge ranks by `(left, right)` pair (see [`LoadedVocab::merge_rank`]).
    pub ranks: TextIndex,
    pub ids: ResolvedIds,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub eog_ids: BTreeSet<u32>,
    /// CONTROL, USER_DEFINED and UNKNOWN tokens, longest text first: the
    /// order in which special-token partitioning matches them.
    pub special_cache: Vec<u32>,
    /// SentencePiece byte-fallback token of each byte.
    pub byte_tokens: Vec<Option<u32>>,
}

/// Texts llama.cpp recognizes as the EOT token when no eot id is stored.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
    "<|code_prefix|>", "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
    "<|code_suffix|>", "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
    "<|code_middle|>", "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// Texts of tokens that end generation, in addition to the stored ids.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

impl LoadedVocab {
    /// Validates `vocab` and derives everything encoding needs.
    pub fn build(mut vocab: Vocab) -> Result<LoadedVocab> {
        let n_tokens = vocab.tokens.len();
        if n_tokens == 0 {
            return Err(Error::Format("tokenizer.ggml.tokens is empty".into()));
        }
        if n_tokens > u32::MAX as usize {
            return Err(Error::Format(format!("tokenizer.ggml.tokens has {n_tokens} entries, more than u32 ids hold")));
        }
        check_len("tokenizer.ggml.scores", vocab.scores.as_ref().map(Vec::len), n_tokens)?;
        check_len("tokenizer.ggml.token_type", vocab.token_types.as_ref().map(Vec::len), n_tokens)?;

        let kind = match vocab.model.as_str() {
            "llama" => ModelKind::Spm,
            "gpt2" => ModelKind::Bpe(PreConfig::from_name(vocab.pre.as_deref())?),
            other => {
                return Err(Error::Unsupported(format!(
                    "tokenizer.ggml.model = {other:?} is not supported; supported: \"llama\" (SentencePiece), \"gpt2\" (byte-level BPE)"
                )))
            }
        };

        let texts = token_texts(std::mem::take(&mut vocab.tokens));
        let token_to_id = index_texts(&texts)?;
        let tokens = token_data(&vocab, n_tokens);
        let mut loaded = LoadedVocab {
            model_name: vocab.model.clone(),
            kind,
            texts,
            tokens,
            token_to_id,
            merges: StringArray::new(),
            ranks: TextIndex::with_capacity(0),
            ids: ResolvedIds::default(),
            add_bos: false,
            add_eos: false,
            add_space_prefix: false,
            eog_ids: BTreeSet::new(),
            special_cache: Vec::new(),
            byte_tokens: Vec::new(),
        };

        loaded.set_flags_and_ids(&vocab)?;
        if let ModelKind::Bpe(_) = kind {
            let merges = vocab.merges.take().ok_or_else(|| {
                Error::Format("tokenizer.ggml.merges is missing; a gpt2 (BPE) vocabulary needs its merges".into())
            })?;
            if merges.len() > u32::MAX as usize {
                return Err(Error::Format(format!(
                    "tokenizer.ggml.merges has {} entries, more than u32 ranks hold",
                    merges.len()
                )));
            }
            loaded.ranks = merge_ranks(&merges);
            loaded.merges = merges;
        }
        loaded.detect_special_by_text();
        loaded.build_eog_set();
        loaded.build_special_cache();
        // NOTE: llama.cpp also sets LSTRIP/RSTRIP on some tokens by model name
        // (Phi-3, Jina v2, ModernBERT); that is not done here.
        loaded.byte_tokens = (0..=255u8).map(|b| loaded.find_byte_token(b)).collect();
        Ok(loaded)
    }

    pub fn n_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Returns the text of token `id`. Panics for an id outside the vocabulary.
    pub fn text(&self, id: u32) -> &str {
        &self.texts[id as usize]
    }

    pub fn text_to_token(&self, text: &str) -> Option<u32> {
        let hash = self.token_to_id.hash(text);
        self.token_to_id.find(hash, |id| self.text(id) == text)
    }

    /// Looks up the rank of the BPE merge of `left` and `right`. A lower
    /// rank merges first.
    pub fn merge_rank(&self, left: &str, right: &str) -> Option<u32> {
        let hash = self.ranks.hash(&(left, right));
        self.ranks.find(hash, |rank| split_merge(&self.merges[rank as usize]) == (left, right))
    }

    /// Applies the model type's defaults, then the stored ids and flags.
    fn set_flags_and_ids(&mut self, vocab: &Vocab) -> Result<()> {
        let n_tokens = self.tokens.len() as u64;
        let (mut bos, mut eos, mut unknown) = match self.kind {
            ModelKind::Spm => (Some(1u64), Some(2u64), Some(0u64)),
            ModelKind::Bpe(_) => (Some(11), Some(11), None),
        };
        (self.add_bos, self.add_eos, self.add_space_prefix) = match self.kind {
            ModelKind::Spm => (true, false, true),
            ModelKind::Bpe(config) => (config.add_bos, false, false),
        };

        // Defaults outside the vocabulary are dropped, as llama.cpp does.
        for id in [&mut bos, &mut eos, &mut unknown] {
            if id.map_or(false, |v| v >= n_tokens) {
                *id = None;
            }
        }

        // Stored ids must be in range: llama.cpp only warns and keeps the
        // default, but such a file is broken and its outputs would be wrong.
        let stored = vocab.special_ids.as_array();
        for (key, id) in SPECIAL_ID_KEYS.iter().zip(stored) {
            if let Some(id) = id {
                if id >= n_tokens {
                    return Err(Error::Format(format!(
                        "{key} = {id} is out of range for a vocabulary of {n_tokens} tokens"
                    )));
                }
            }
        }
        let to_u32 = |v: Option<u64>| v.map(|v| v as u32);
        let s = &vocab.special_ids;
        self.ids = ResolvedIds {
            bos: to_u32(s.bos.or(bos)),
            eos: to_u32(s.eos.or(eos)),
            eot: to_u32(s.eot),
            eom: to_u32(s.eom),
            unknown: to_u32(s.unknown.or(unknown)),
            fim_pad: to_u32(s.fim_pad),
            fim_rep: to_u32(s.fim_rep),
            fim_sep: to_u32(s.fim_sep),
        };

        if let Some(v) = vocab.add_bos {
            self.add_bos = v;
        }
        if let Some(v) = vocab.add_eos {
            self.add_eos = v;
        }
        if let Some(v) = vocab.add_space_prefix {
            self.add_space_prefix = v;
        }
        if self.add_bos && self.ids.bos.is_none() {
            return Err(Error::Format(
                "tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set".into(),
            ));
        }
        if self.add_eos && self.ids.eos.is_none() {
            return Err(Error::Format(
                "tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set".into(),
            ));
        }
        Ok(())
    }

    /// Finds EOT, EOM and FIM tokens by their text when no id names them,
    /// marks them CONTROL, and marks CONTROL tokens named "unused" UNUSED.
    fn detect_special_by_text(&mut self) {
        // NOTE: llama.cpp walks an unordered_map here. When several texts of
        // one list are in the vocabulary, its choice depends on hashing, and
        // this code takes the lowest id.
        self.ids.eot = self.ids.eot.or_else(|| self.find_and_mark_control(EOT_TEXTS));
        self.ids.eom = self.ids.eom.or_else(|| self.find_and_mark_control(EOM_TEXTS));
        for texts in [FIM_PRE_TEXTS, FIM_SUF_TEXTS, FIM_MID_TEXTS] {
            self.find_and_mark_control(texts);
        }
        self.ids.fim_pad = self.ids.fim_pad.or_else(|| self.find_and_mark_control(FIM_PAD_TEXTS));
        self.ids.fim_rep = self.ids.fim_rep.or_else(|| self.find_and_mark_control(FIM_REP_TEXTS));
        self.ids.fim_sep = self.ids.fim_sep.or_else(|| self.find_and_mark_control(FIM_SEP_TEXTS));

        for (token, text) in self.tokens.iter_mut().zip(self.texts.iter()) {
            if token.attr & attr::CONTROL != 0 && text.contains("unused") {
                token.attr |= attr::UNUSED;
            }
        }
    }

    fn find_and_mark_control(&mut self, texts: &[&str]) -> Option<u32> {
        let id = texts.iter().filter_map(|t| self.text_to_token(t)).min()?;
        self.mark_control(id);
        Some(id)
    }

    fn mark_control(&mut self, id: u32) {
        let token = &mut self.tokens[id as usize];
        if token.attr & attr::CONTROL == 0 {
            log::debug!("token {id} {:?} looks like a control token; marking it CONTROL", &self.texts[id as usize]);
            token.attr |= attr::CONTROL;
        }
    }

    /// Builds the end-of-generation set: FIM pad/repo/separator, tokens
    /// with an end-of-turn text, and the eos, eot and eom ids.
    fn build_eog_set(&mut self) {
        let mut eog = BTreeSet::new();
        for id in [self.ids.fim_pad, self.ids.fim_rep, self.ids.fim_sep].into_iter().flatten() {
            eog.insert(id);
        }
        for text in EOG_TEXTS {
            if let Some(id) = self.text_to_token(text) {
                eog.insert(id);
                self.mark_control(id);
            }
        }

        // gpt-oss renders these channel markers as text.
        for text in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = self.text_to_token(text) {
                self.tokens[id as usize].attr = attr::USER_DEFINED;
            }
        }

        for id in [self.ids.eos, self.ids.eot, self.ids.eom].into_iter().flatten() {
            eog.insert(id);
        }

        // o200k_harmony and solar-open use <|end|> inside a turn.
        let has = |t: &str| self.text_to_token(t).map_or(false, |id| eog.contains(&id));
        let has_call = has("<|call|>") || has("<|calls|>");
        let end_inside_turn = (has("<|return|>") && has_call) || (has_call && has("<|flush|>"));
        let end_id = self.text_to_token("<|end|>").filter(|id| eog.contains(id));
        if let (Some(end_id), true) = (end_id, end_inside_turn) {
            eog.remove(&end_id);
            self.tokens[end_id as usize].attr = attr::USER_DEFINED;
        }

        // Gemma 4 and PaddleOCR use </s> as text when <|tool_response> exists.
        let has_tool_response = self.text_to_token("<|tool_response>").map_or(false, |id| eog.contains(&id));
        let s_id = self.text_to_token("</s>").filter(|id| eog.contains(id));
        if let (Some(s_id), true) = (s_id, has_tool_response) {
            eog.remove(&s_id);
            self.tokens[s_id as usize].attr = attr::NORMAL;
        }
        self.eog_ids = eog;
    }

    fn build_special_cache(&mut self) {
        let special = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let mut cache: Vec<u32> = (0..self.tokens.len() as u32)
            .filter(|&id| self.tokens[id as usize].attr & special != 0)
            .collect();
        // NOTE: llama.cpp's std::sort is not stable, so it may try
        // equal-length tokens in another order. The order matters only when
        // two such tokens overlap in the text.
        cache.sort_by_key(|&id| std::cmp::Reverse(self.text(id).len()));
        self.special_cache = cache;
    }

    /// Finds the SentencePiece byte-fallback token `<0xXX>`, else the token
    /// whose text is the byte itself.
    fn find_byte_token(&self, byte: u8) -> Option<u32> {
        self.text_to_token(&format!("<0x{byte:02X}>")).or_else(|| {
            let single = [byte];
            std::str::from_utf8(&single).ok().and_then(|s| self.text_to_token(s))
        })
    }
}

fn check_len(key: &str, len: Option<usize>, n_tokens: usize) -> Result<()> {
    match len {
        Some(len) if len != n_tokens => Err(Error::Format(format!(
            "{key} has {len} entries but tokenizer.ggml.tokens has {n_tokens}; both must have one per token"
        ))),
        _ => Ok(()),
    }
}

/// Replaces empty token texts by `[EMPTY_<id>]`, as llama.cpp does. Returns
/// `tokens` itself when none is empty.
fn token_texts(tokens: StringArray) -> StringArray {
    if tokens.iter().all(|text| !text.is_empty()) {
        return tokens;
    }
    let mut texts = StringArray::with_capacity(tokens.len(), tokens.text_len());
    for (i, text) in tokens.iter().enumerate() {
        if text.is_empty() {
            log::warn!("empty token at index {i}");
            texts.push(&format!("[EMPTY_{i}]"));
        } else {
            texts.push(text);
        }
    }
    texts
}

/// Indexes token ids by text. A text that appears twice is an error
/// naming the lowest id that repeats an earlier text.
fn index_texts(texts: &StringArray) -> Result<TextIndex> {
    let mut index = TextIndex::with_capacity(texts.len());
    let hashes: Vec<u64> = texts.iter().map(|text| index.hash(text)).collect();
    let mut first_duplicate: Option<(u32, u32)> = None;
    index.insert_all(
        &hashes,
        |a, b| texts[a as usize] == texts[b as usize],
        |id, earlier| {
            if first_duplicate.map_or(true, |(first, _)| id < first) {
                first_duplicate = Some((id, earlier));
            }
        },
    );

    match first_duplicate {
        None => Ok(index),
        Some((id, earlier)) => Err(Error::Format(format!(
            "tokenizer.ggml.tokens has the duplicate token {:?} at ids {earlier} and {id}",
            &texts[id as usize]
        ))),
    }
}

fn token_data(vocab: &Vocab, n_tokens: usize) -> Vec<TokenData> {
    (0..n_tokens)
        .map(|i| {
            let score = vocab.scores.as_ref().map_or(0.0, |s| s[i]);
            let token_type = vocab.token_types.as_ref().map_or(1, |t| t[i]);
            TokenData { score, attr: type_to_attr(token_type) }
        })
        .collect()
}

/// GGUF token type to attribute bits; unknown types become UNDEFINED.
fn type_to_attr(token_type: i32) -> u32 {
    match token_type {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => attr::UNDEFINED,
    }
}

/// Indexes merges `"left right"` by their pair. The first occurrence of a
/// pair keeps its rank.
fn merge_ranks(merges: &StringArray) -> TextIndex {
    let mut ranks = TextIndex::with_capacity(merges.len());
    let hashes: Vec<u64> = merges.iter().map(|merge| ranks.hash(&split_merge(merge))).collect();
    ranks.insert_all(
        &hashes,
        |a, b| split_merge(&merges[a as usize]) == split_merge(&merges[b as usize]),
        |_, _| {},
    );
    ranks
}

/// Splits a merge at the first space after its first byte. A merge
/// without such a space is the pair `("", "")`.
fn split_merge(merge: &str) -> (&str, &str) {
    // Searching from the end of the first character equals llama.cpp's
    // byte search from index 1, since no space sits inside a character.
    let first_len = merge.chars().next().map_or(0, char::len_utf8);
    match merge[first_len..].find(' ') {
        Some(pos) => (&merge[..first_len + pos], &merge[first_len + pos + 1..]),
        None => ("", ""),
    }
}
