//! Pre-tokenizers of byte-level BPE vocabularies: they split text into
//! words before merges run, selected by `tokenizer.ggml.pre`.
//!
//! llama.cpp applies a list of regexes in turn, each one splitting the
//! pieces the previous one left (matches and the text between them both
//! become pieces). llama.cpp runs the GPT-2 and Llama 3 regexes as
//! hand-written splitters, which are mirrored here step for step, quirks
//! included. The simple class regexes (`\p{N}`, `[0-9][0-9][0-9]`, ...) run
//! through [`split_class_runs`].

use super::unicode::{cpt_flags, to_lower, CptFlags};
use crate::error::{Error, Result};

/// The pre-tokenizer families turbokv supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// llama.cpp's fallback list (`default`, or no `tokenizer.ggml.pre`).
    Default,
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`.
    Gpt2,
    /// Every digit alone, then the GPT-2 regex (StarCoder, SmolLM).
    Starcoder,
    /// The Llama 3 regex with numbers in groups of up to 3 digits.
    Llama3,
    /// The Llama 3 regex with single digits (Qwen 2).
    Qwen2,
}

/// Pre-tokenizer settings that llama.cpp's vocabulary loader derives from
/// the `pre` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreConfig {
    pub pre: PreTokenizer,
    /// A word that is already a token skips the merges.
    pub ignore_merges: bool,
    /// Default of `add_bos` before `tokenizer.ggml.add_bos_token` overrides it.
    pub add_bos: bool,
}

impl PreConfig {
    /// Maps a `tokenizer.ggml.pre` value to its splitter and flags.
    pub fn from_name(name: Option<&str>) -> Result<PreConfig> {
        let plain = |pre| PreConfig { pre, ignore_merges: false, add_bos: false };
        let config = match name.unwrap_or("") {
            "" | "default" => {
                if name.is_none() {
                    log::warn!("tokenizer.ggml.pre is missing; using the default pre-tokenizer");
                }
                plain(PreTokenizer::Default)
            }
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
            | "lfm2" | "jina-v5-nano" => {
                PreConfig { pre: PreTokenizer::Llama3, ignore_merges: true, add_bos: true }
            }
            "dbrx" | "smaug-bpe" => plain(PreTokenizer::Llama3),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
            | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" | "trillion"
            | "granite-docling" | "exaone4" => plain(PreTokenizer::Gpt2),
            "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => plain(PreTokenizer::Starcoder),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "stablelm2" => {
                plain(PreTokenizer::Qwen2)
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "tokenizer.ggml.pre = {other:?} is not supported; supported BPE pre-tokenizers: \
                     default, gpt-2, smollm/starcoder, llama-bpe/llama3, qwen2 and their aliases"
                )))
            }
        };
        Ok(config)
    }
}

/// Splits `text` into the words that BPE merges run on.
pub fn split<'t>(text: &'t str, pre: PreTokenizer) -> Vec<&'t str> {
    let cpts: Vec<char> = text.chars().collect();
    let mut lengths = vec![cpts.len()];

    match pre {
        PreTokenizer::Default => {
            let punct = |c: char| cpt_flags(c as u32).is_punctuation() || "$+<=>^~|".contains(c);
            lengths = split_class_runs(&cpts, &lengths, punct, 1, usize::MAX);
            lengths = split_gpt2(&cpts, &lengths);
            lengths = split_class_runs(&cpts, &lengths, is_number, 1, usize::MAX);
            lengths = split_class_runs(&cpts, &lengths, |c| c.is_ascii_digit(), 3, 3);
        }
        PreTokenizer::Gpt2 => lengths = split_gpt2(&cpts, &lengths),
        PreTokenizer::Starcoder => {
            lengths = split_class_runs(&cpts, &lengths, is_number, 1, 1);
            lengths = split_gpt2(&cpts, &lengths);
        }
        PreTokenizer::Llama3 => lengths = split_llama3(&cpts, &lengths, 3),
        // llama.cpp runs Qwen 2's regex through std::regex. The Llama 3
        // splitter with single digits matches it on the qwen2 fixture.
        PreTokenizer::Qwen2 => lengths = split_llama3(&cpts, &lengths, 1),
    }

    lengths_to_words(text, &cpts, &lengths)
}

fn is_number(c: char) -> bool {
    cpt_flags(c as u32).is_number()
}

/// Turns word lengths in code points back into slices of `text`.
fn lengths_to_words<'t>(text: &'t str, cpts: &[char], lengths: &[usize]) -> Vec<&'t str> {
    let mut words = Vec::with_capacity(lengths.len());
    let mut byte_start = 0;
    let mut cpt_start = 0;
    for &len in lengths {
        let n_bytes: usize = cpts[cpt_start..cpt_start + len].iter().map(|c| c.len_utf8()).sum();
        words.push(&text[byte_start..byte_start + n_bytes]);
        byte_start += n_bytes;
        cpt_start += len;
    }
    words
}

/// Splits every piece at the matches of a regex made of one character
/// class repeated `min..=max` times (greedy, leftmost, non-overlapping), as
/// std::regex_iterator does: matches and the gaps between them are pieces.
fn split_class_runs(
    cpts: &[char],
    lengths: &[usize],
    in_class: impl Fn(char) -> bool,
    min: usize,
    max: usize,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(lengths.len());
    let mut start = 0;
    for &len in lengths {
        let end = start + len;
        let mut gap_start = start;
        let mut pos = start;
        while pos < end {
            let mut run = 0;
            while pos + run < end && run < max && in_class(cpts[pos + run]) {
                run += 1;
            }
            if run >= min && run > 0 {
                if pos > gap_start {
                    out.push(pos - gap_start);
                }
                out.push(run);
                pos += run;
                gap_start = pos;
            } else {
                pos += 1;
            }
        }
        if end > gap_start {
            out.push(end - gap_start);
        }
        start = end;
    }
    out
}

/// A cursor over one piece: positions outside the piece read as the
/// out-of-range code point and empty flags, as in llama.cpp.
struct Piece<'a> {
    cpts: &'a [char],
    start: usize,
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

const OUT_OF_RANGE: u32 = u32::MAX;

impl Piece<'_> {
    fn cpt(&self, pos: usize) -> u32 {
        if self.start <= pos && pos < self.end {
            self.cpts[pos] as u32
        } else {
            OUT_OF_RANGE
        }
    }

    fn flags(&self, pos: usize) -> CptFlags {
        if self.start <= pos && pos < self.end {
            cpt_flags(self.cpts[pos] as u32)
        } else {
            CptFlags::default()
        }
    }

    /// Closes the word that ends at `end` and returns its length.
    fn add_word(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }

    /// Matches `'s|'t|'re|'ve|'m|'ll|'d` at `pos` (lowercased first when
    /// `fold_case`) and returns the match length.
    fn contraction(&self, pos: usize, fold_case: bool) -> usize {
        if self.cpt(pos) != '\'' as u32 || pos + 1 >= self.end {
            return 0;
        }
        let fold = |c: u32| if fold_case { to_lower(c) } else { c };
        let next = fold(self.cpt(pos + 1));
        if [b's', b't', b'm', b'd'].iter().any(|&b| next == b as u32) {
            return 2;
        }
        if pos + 2 < self.end {
            let next_next = fold(self.cpt(pos + 2));
            let pair = |a: u8, b: u8| next == a as u32 && next_next == b as u32;
            if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
                return 3;
            }
        }
        0
    }

    /// Counts the whitespace run at `pos` and the end of its last `\r`/`\n`
    /// (0 when it has none).
    fn whitespace_run(&self, pos: usize) -> (usize, usize) {
        let mut count = 0;
        let mut last_newline_end = 0;
        while self.flags(pos + count).is_whitespace() {
            let c = self.cpt(pos + count);
            if c == '\r' as u32 || c == '\n' as u32 {
                last_newline_end = pos + count + 1;
            }
            count += 1;
        }
        (count, last_newline_end)
    }
}

fn not_word_class(flags: CptFlags) -> bool {
    !(flags.is_whitespace() || flags.is_letter() || flags.is_number()) && flags.is_defined()
}

/// llama.cpp's hand-written GPT-2 regex:
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
fn split_gpt2(cpts: &[char], lengths: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(lengths.len());
    let mut start = 0;
    for &len in lengths {
        let end = start + len;
        let mut p = Piece { cpts, start, end, prev_end: start, out: &mut out };
        let mut pos = start;
        while pos < end {
            let cpt = p.cpt(pos);
            let flags = p.flags(pos);

            let n = p.contraction(pos, false);
            if n > 0 {
                pos += p.add_word(pos + n);
                continue;
            }

            // <space>?\p{L}+, <space>?\p{N}+, <space>?[^\s\p{L}\p{N}]+
            let space = cpt == ' ' as u32;
            let flags2 = if space { p.flags(pos + 1) } else { flags };
            let class: Option<fn(CptFlags) -> bool> = if flags2.is_letter() {
                Some(CptFlags::is_letter)
            } else if flags2.is_number() {
                Some(CptFlags::is_number)
            } else if not_word_class(flags2) {
                Some(not_word_class)
            } else {
                None
            };
            if let Some(in_class) = class {
                pos += space as usize + 1;
                while in_class(p.flags(pos)) {
                    pos += 1;
                }
                p.add_word(pos);
                continue;
            }

            let (n_spaces, _) = p.whitespace_run(pos);
            if n_spaces > 1 && p.cpt(pos + n_spaces) != OUT_OF_RANGE {
                pos += n_spaces - 1;
                p.add_word(pos);
                continue;
            }
            if n_spaces > 0 {
                pos += n_spaces;
                p.add_word(pos);
                continue;
            }

            pos += 1;
            p.add_word(pos);
        }
        start = end;
    }
    out
}

/// llama.cpp's hand-written Llama 3 regex: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|
/// [^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|
/// \s+(?!\S)|\s+`, with `max_digits` in place of 3.
fn split_llama3(cpts: &[char], lengths: &[usize], max_digits: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(lengths.len());
    let mut start = 0;
    for &len in lengths {
        let end = start + len;
        let mut p = Piece { cpts, start, end, prev_end: start, out: &mut out };
        let mut pos = start;
        while pos < end {
            let cpt = p.cpt(pos);
            let flags = p.flags(pos);
            let is_newline = |c: u32| c == '\r' as u32 || c == '\n' as u32;

            let n = p.contraction(pos, true);
            if n > 0 {
                pos += p.add_word(pos + n);
                continue;
            }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(is_newline(cpt) || flags.is_number())
                && (flags.is_letter() || p.flags(pos + 1).is_letter())
            {
                pos += 1;
                while p.flags(pos).is_letter() {
                    pos += 1;
                }
                p.add_word(pos);
                continue;
            }

            // \p{N}{1,max_digits}
            if flags.is_number() {
                let mut group_start = pos;
                while p.flags(pos).is_number() {
                    pos += 1;
                    if pos - group_start >= max_digits {
                        p.add_word(pos);
                        group_start = pos;
                    }
                }
                p.add_word(pos);
                continue;
            }

            // " ?[^\s\p{L}\p{N}]+[\r\n]*"; llama.cpp tests the first
            // code point's own flags for being in range, kept as is.
            let mut flags2 = if cpt == ' ' as u32 { p.flags(pos + 1) } else { flags };
            if !(flags2.is_whitespace() || flags2.is_letter() || flags2.is_number())
                && flags.is_defined()
            {
                pos += (cpt == ' ' as u32) as usize;
                while not_word_class(flags2) {
                    pos += 1;
                    flags2 = p.flags(pos);
                }
                while is_newline(p.cpt(pos)) {
                    pos += 1;
                }
                p.add_word(pos);
                continue;
            }

            let (n_spaces, last_newline_end) = p.whitespace_run(pos);
            if last_newline_end > 0 {
                pos = last_newline_end;
                p.add_word(pos);
                continue;
            }
            if n_spaces > 1 && p.cpt(pos + n_spaces) != OUT_OF_RANGE {
                pos += n_spaces - 1;
                p.add_word(pos);
                continue;
            }
            if n_spaces > 0 {
                pos += n_spaces;
                p.add_word(pos);
                continue;
            }

            pos += 1;
            p.add_word(pos);
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_words() {
        let words = split("Hello world's  end 123!!", PreTokenizer::Gpt2);
        assert_eq!(words, ["Hello", " world", "'s", " ", " end", " 123", "!!"]);
    }

    #[test]
    fn gpt2_trailing_whitespace() {
        assert_eq!(split("a   ", PreTokenizer::Gpt2), ["a", "   "]);
        assert_eq!(split("a\n\nb", PreTokenizer::Gpt2), ["a", "\n", "\n", "b"]);
    }

    #[test]
    fn starcoder_digits_alone() {
        assert_eq!(split("x 3333+777", PreTokenizer::Starcoder), ["x", " ", "3", "3", "3", "3", "+", "7", "7", "7"]);
    }

    #[test]
    fn llama3_digit_groups() {
        assert_eq!(split("1234567 I'M", PreTokenizer::Llama3), ["123", "456", "7", " I", "'M"]);
        assert_eq!(split("a\n\n  b", PreTokenizer::Llama3), ["a", "\n\n", " ", " b"]);
    }

    #[test]
    fn class_runs_exact_three() {
        let cpts: Vec<char> = "12345a".chars().collect();
        let lengths = split_class_runs(&cpts, &[6], |c| c.is_ascii_digit(), 3, 3);
        assert_eq!(lengths, [3, 3]);
    }

    #[test]
    fn unknown_pre_is_unsupported() {
        assert!(matches!(PreConfig::from_name(Some("no-such-pre")), Err(Error::Unsupported(_))));
    }
}
