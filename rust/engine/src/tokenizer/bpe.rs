//! GPT-2 byte-level BPE (`tokenizer.ggml.model = gpt2`): llama.cpp's
//! `llm_tokenizer_bpe`. Each pre-tokenized word is byte-encoded to GPT-2's
//! printable characters, then adjacent symbols merge by merge rank.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::pretokenize::{self, PreConfig};
use super::unicode::{byte_to_char, char_to_byte};
use super::vocab::LoadedVocab;

#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: usize,
    /// Length in bytes; 0 once merged into its left neighbour.
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Appends the tokens of `text` to `out`.
pub fn tokenize(vocab: &LoadedVocab, config: PreConfig, text: &str, out: &mut Vec<u32>) {
    for word in pretokenize::split(text, config.pre) {
        let encoded: String = word.bytes().map(byte_to_char).collect();
        if config.ignore_merges {
            if let Some(id) = vocab.text_to_token(&encoded) {
                out.push(id);
                continue;
            }
        }
        for piece in merge_word(vocab, &encoded) {
            emit_piece(vocab, piece, out);
        }
    }
}

/// Merges the characters of one byte-encoded word, lowest rank first and
/// leftmost among equal ranks, and returns the final pieces in order.
fn merge_word<'w>(vocab: &LoadedVocab, word: &'w str) -> Vec<&'w str> {
    let n_chars = word.chars().count();
    let mut symbols: Vec<Symbol> = word
        .char_indices()
        .enumerate()
        .map(|(i, (start, c))| Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: if i + 1 < n_chars { Some(i + 1) } else { None },
        })
        .collect();

    // Entries: (rank, left, right, merged byte length).
    let mut queue = BinaryHeap::new();
    let text_of = |s: &Symbol| &word[s.start..s.start + s.len];
    let rank_of =
        |symbols: &[Symbol], left: usize, right: usize| vocab.merge_rank(text_of(&symbols[left]), text_of(&symbols[right]));
    for i in 1..symbols.len() {
        if let Some(rank) = rank_of(&symbols, i - 1, i) {
            queue.push(Reverse((rank, i - 1, i, symbols[i - 1].len + symbols[i].len)));
        }
    }

    while let Some(Reverse((_, left, right, len))) = queue.pop() {
        let (l, r) = (symbols[left], symbols[right]);
        // A stale candidate: a side was merged away or grew since.
        if l.len == 0 || r.len == 0 || l.len + r.len != len {
            continue;
        }

        symbols[left].len += r.len;
        symbols[right].len = 0;
        symbols[left].next = r.next;
        if let Some(next) = r.next {
            symbols[next].prev = Some(left);
        }

        if let Some(prev) = l.prev {
            if let Some(rank) = rank_of(&symbols, prev, left) {
                queue.push(Reverse((rank, prev, left, symbols[prev].len + symbols[left].len)));
            }
        }
        if let Some(next) = r.next {
            if let Some(rank) = rank_of(&symbols, left, next) {
                queue.push(Reverse((rank, left, next, symbols[left].len + symbols[next].len)));
            }
        }
    }

    symbols.iter().filter(|s| s.len > 0).map(text_of).collect()
}

/// Emits the token of a merged piece. A piece that is no token is emitted
/// byte by byte, keeping only bytes whose one-byte text is a token (as
/// llama.cpp does, so non-ASCII bytes are dropped).
fn emit_piece(vocab: &LoadedVocab, piece: &str, out: &mut Vec<u32>) {
    if let Some(id) = vocab.text_to_token(piece) {
        out.push(id);
        return;
    }
    for &byte in piece.as_bytes() {
        let single = [byte];
        if let Some(id) = std::str::from_utf8(&single).ok().and_then(|s| vocab.text_to_token(s)) {
            out.push(id);
        }
    }
}

/// Maps a byte-level token text back to bytes; characters outside GPT-2's
/// mapping come out as llama.cpp writes them, `[UNK_BYTE_0x<hex><text>]`.
pub fn decode_text(text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len());
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => bytes.push(b),
            None => {
                bytes.extend_from_slice(b"[UNK_BYTE_0x");
                let mut utf8 = [0u8; 4];
                for b in c.encode_utf8(&mut utf8).bytes() {
                    bytes.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                bytes.extend_from_slice(text.as_bytes());
                bytes.push(b']');
            }
        }
    }
    bytes
}
