//! Special-token partitioning: before a model tokenizer runs, the text is
//! cut at every occurrence of a special token's text, as llama.cpp's
//! `tokenizer_st_partition` does.

use super::vocab::{attr, LoadedVocab};

/// A piece of the input: text still to tokenize, or a special token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

/// Splits `text` at special tokens, longest token first. USER_DEFINED
/// tokens always match; CONTROL and UNKNOWN tokens only with
/// `parse_special`.
pub fn partition<'t>(vocab: &LoadedVocab, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut fragments = vec![Fragment::Text(text)];

    for &id in &vocab.special_cache {
        let token = &vocab.tokens[id as usize];
        if !parse_special && token.attr & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        let needle = vocab.text(id);
        let found = fragments.iter().any(|f| matches!(f, Fragment::Text(t) if t.contains(needle)));
        if !found {
            continue;
        }

        let mut next = Vec::with_capacity(fragments.len() + 2);
        for fragment in fragments {
            match fragment {
                Fragment::Text(t) => split_at_token(t, needle, id, token.attr, &mut next),
                Fragment::Token(_) => next.push(fragment),
            }
        }
        fragments = next;
    }
    fragments
}

/// Cuts `text` at every non-overlapping occurrence of `needle`, left to
/// right. LSTRIP and RSTRIP tokens also swallow the ASCII whitespace
/// before or after them.
fn split_at_token<'t>(text: &'t str, needle: &str, id: u32, token_attr: u32, out: &mut Vec<Fragment<'t>>) {
    let mut rest = text;
    while let Some(pos) = rest.find(needle) {
        let mut left = &rest[..pos];
        if token_attr & attr::LSTRIP != 0 {
            left = left.trim_end_matches(is_c_space);
        }
        if !left.is_empty() {
            out.push(Fragment::Text(left));
        }
        out.push(Fragment::Token(id));

        rest = &rest[pos + needle.len()..];
        if token_attr & attr::RSTRIP != 0 {
            rest = rest.trim_start_matches(is_c_space);
        }
    }
    if !rest.is_empty() {
        out.push(Fragment::Text(rest));
    }
}

/// C's `isspace` in the "C" locale.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r')
}
