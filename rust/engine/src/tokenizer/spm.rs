//! SentencePiece-style tokenization (`tokenizer.ggml.model = llama`):
//! llama.cpp's `llm_tokenizer_spm`. Characters merge pairwise, highest
//! token score first; what remains unmatched falls back to byte tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::vocab::LoadedVocab;

/// One symbol of the text being merged: a byte range and its neighbours in
/// the linked list of live symbols.
#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: usize,
    /// Length in bytes; 0 once merged into its left neighbour.
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of two adjacent symbols.
#[derive(Debug)]
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    /// Byte length of the merged text, which detects stale candidates.
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Highest score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then(other.left.cmp(&self.left))
    }
}

/// Appends the tokens of `text` (spaces already escaped to U+2581) to `out`.
pub fn tokenize(vocab: &LoadedVocab, text: &str, out: &mut Vec<u32>) {
    let mut symbols = split_chars(text);
    let mut queue = BinaryHeap::new();
    for i in 1..symbols.len() {
        push_bigram(vocab, text, &symbols, i - 1, i, &mut queue);
    }

    while let Some(bigram) = queue.pop() {
        let (left, right) = (symbols[bigram.left], symbols[bigram.right]);
        if left.len == 0 || right.len == 0 || left.len + right.len != bigram.len {
            continue;
        }

        symbols[bigram.left].len += right.len;
        symbols[bigram.right].len = 0;
        symbols[bigram.left].next = right.next;
        if let Some(next) = right.next {
            symbols[next].prev = Some(bigram.left);
        }

        if let Some(prev) = left.prev {
            push_bigram(vocab, text, &symbols, prev, bigram.left, &mut queue);
        }
        if let Some(next) = right.next {
            push_bigram(vocab, text, &symbols, bigram.left, next, &mut queue);
        }
    }

    let mut index = if symbols.is_empty() { None } else { Some(0) };
    while let Some(i) = index {
        let symbol = symbols[i];
        emit_symbol(vocab, &text[symbol.start..symbol.start + symbol.len], out);
        index = symbol.next;
    }
}

/// Splits `text` into one symbol per UTF-8 character.
fn split_chars(text: &str) -> Vec<Symbol> {
    let n_chars = text.chars().count();
    text.char_indices()
        .enumerate()
        .map(|(i, (start, c))| Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: if i + 1 < n_chars { Some(i + 1) } else { None },
        })
        .collect()
}

fn push_bigram(
    vocab: &LoadedVocab,
    text: &str,
    symbols: &[Symbol],
    left: usize,
    right: usize,
    queue: &mut BinaryHeap<Bigram>,
) {
    let start = symbols[left].start;
    let len = symbols[left].len + symbols[right].len;
    if let Some(id) = vocab.text_to_token(&text[start..start + len]) {
        let score = vocab.tokens[id as usize].score;
        queue.push(Bigram { left, right, score, len });
    }
}

/// Emits the token of a final symbol, or its bytes as byte tokens.
///
/// llama.cpp would re-split a symbol that is not a token along its merge
/// history, but merges only ever produce tokens, so such a symbol is always
/// a single character and byte fallback is what that path does.
fn emit_symbol(vocab: &LoadedVocab, piece: &str, out: &mut Vec<u32>) {
    if let Some(id) = vocab.text_to_token(piece) {
        out.push(id);
        return;
    }
    for &byte in piece.as_bytes() {
        // NOTE: llama.cpp throws when a byte has no token; the unknown token
        // stands in here, and the byte is dropped when there is none.
        match vocab.byte_tokens[byte as usize].or(vocab.ids.unknown) {
            Some(id) => out.push(id),
            None => log::warn!("byte 0x{byte:02X} has no token and the vocabulary has no unknown token"),
        }
    }
}
