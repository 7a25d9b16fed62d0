//! Unicode code point classes and the GPT-2 byte-to-unicode mapping.
//!
//! llama.cpp classifies code points with a table generated from Python's
//! `regex` module (`\p{N}`, `\p{L}`, `\p{Z}`, `\p{M}`, `\p{P}`, `\p{S}`,
//! `\p{C}` and `\s`). This module derives the same classes from the Unicode
//! tables of the `regex` crate (through fancy-regex), once per process, so
//! no generated table is kept in the source.

use std::sync::OnceLock;

use fancy_regex::Regex;

pub const NUMBER: u8 = 1 << 0;
pub const LETTER: u8 = 1 << 1;
pub const SEPARATOR: u8 = 1 << 2;
pub const ACCENT_MARK: u8 = 1 << 3;
pub const PUNCTUATION: u8 = 1 << 4;
pub const SYMBOL: u8 = 1 << 5;
pub const CONTROL: u8 = 1 << 6;
pub const WHITESPACE: u8 = 1 << 7;

const MAX_CODEPOINTS: usize = 0x110000;

/// Class flags of one code point, or 0 for a position outside the text
/// (llama.cpp's splitters use the empty flags as their end marker).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CptFlags(pub u8);

impl CptFlags {
    pub fn is_number(self) -> bool {
        self.0 & NUMBER != 0
    }
    pub fn is_letter(self) -> bool {
        self.0 & LETTER != 0
    }
    pub fn is_punctuation(self) -> bool {
        self.0 & PUNCTUATION != 0
    }
    pub fn is_whitespace(self) -> bool {
        self.0 & WHITESPACE != 0
    }
    /// Whether the position is inside the text: every code point has a
    /// general category, so in-range flags are never 0.
    pub fn is_defined(self) -> bool {
        self.0 != 0
    }
}

/// Flags of every code point, indexed by code point (1.1 MB).
fn flags_table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(build_flags_table)
}

/// Builds the table by running each category regex over one string that
/// contains every scalar value, because find_iter is far faster than one
/// match call per code point.
fn build_flags_table() -> Vec<u8> {
    let all: String = (0..MAX_CODEPOINTS as u32).filter_map(char::from_u32).collect();
    let mut table = vec![0u8; MAX_CODEPOINTS];

    let classes = [
        (r"\p{N}+", NUMBER),
        (r"\p{L}+", LETTER),
        (r"\p{Z}+", SEPARATOR),
        (r"\p{M}+", ACCENT_MARK),
        (r"\p{P}+", PUNCTUATION),
        (r"\p{S}+", SYMBOL),
        (r"\p{C}+", CONTROL),
    ];
    for (pattern, flag) in classes {
        let re = Regex::new(pattern).expect("Unicode category regex compiles");
        for m in re.find_iter(&all) {
            let m = m.expect("a plain character class cannot hit the backtrack limit");
            for c in m.as_str().chars() {
                table[c as usize] |= flag;
            }
        }
    }

    // Surrogates are no `char`; the regex crate cannot see them, but they
    // are category Cs.
    for cpt in 0xD800..0xE000 {
        table[cpt] |= CONTROL;
    }

    // White_Space property, which is what Python's `regex` `\s` and Rust's
    // `char::is_whitespace` both use.
    for (cpt, slot) in table.iter_mut().enumerate() {
        if char::from_u32(cpt as u32).map_or(false, char::is_whitespace) {
            *slot |= WHITESPACE;
        }
    }
    table
}

pub fn cpt_flags(cpt: u32) -> CptFlags {
    let table = flags_table();
    CptFlags(table.get(cpt as usize).copied().unwrap_or(0))
}

/// Lowercase of `cpt` as llama.cpp's `unicode_tolower`: the first code point
/// of the full lowercase mapping.
pub fn to_lower(cpt: u32) -> u32 {
    match char::from_u32(cpt) {
        Some(c) => c.to_lowercase().next().map_or(cpt, |l| l as u32),
        None => cpt,
    }
}

/// GPT-2's reversible byte-to-unicode mapping: printable Latin-1 bytes map
/// to themselves, the other 68 bytes to U+0100.. in byte order.
fn byte_to_char_table() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = ['\0'; 256];
        let mut next_extra = 256u32;
        for byte in 0..256u32 {
            let printable = (0x21..=0x7E).contains(&byte)
                || (0xA1..=0xAC).contains(&byte)
                || (0xAE..=0xFF).contains(&byte);
            let cpt = if printable {
                byte
            } else {
                next_extra += 1;
                next_extra - 1
            };
            table[byte as usize] = char::from_u32(cpt).expect("below U+0200");
        }
        table
    })
}

pub fn byte_to_char(byte: u8) -> char {
    byte_to_char_table()[byte as usize]
}

/// Returns the bytes that U+0100..=U+0143 encode, in code point order.
fn extra_chars_to_bytes() -> &'static [u8; 68] {
    static TABLE: OnceLock<[u8; 68]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [0u8; 68];
        for byte in 0..=255u8 {
            let cpt = byte_to_char(byte) as u32;
            if cpt >= 0x100 {
                table[(cpt - 0x100) as usize] = byte;
            }
        }
        table
    })
}

/// Returns the byte that `c` encodes in GPT-2's mapping, if any.
pub fn char_to_byte(c: char) -> Option<u8> {
    let cpt = c as u32;
    match cpt {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => Some(cpt as u8),
        0x100..=0x143 => Some(extra_chars_to_bytes()[(cpt - 0x100) as usize]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_classes() {
        assert!(cpt_flags('a' as u32).is_letter());
        assert!(cpt_flags('7' as u32).is_number());
        assert!(cpt_flags('!' as u32).is_punctuation());
        assert!(cpt_flags(' ' as u32).is_whitespace());
        assert!(cpt_flags('\n' as u32).is_whitespace());
        assert_eq!(cpt_flags('$' as u32).0, SYMBOL);
        assert_eq!(cpt_flags(0x110000).0, 0);
    }

    #[test]
    fn non_ascii_classes() {
        assert!(cpt_flags('é' as u32).is_letter());
        assert!(cpt_flags('中' as u32).is_letter());
        assert!(cpt_flags('²' as u32).is_number());
        assert!(cpt_flags(0x3000).is_whitespace());
        assert!(cpt_flags(0xA0).is_whitespace());
        assert!(!cpt_flags(0x200B).is_whitespace());
        assert_eq!(cpt_flags(0x0301).0, ACCENT_MARK);
        assert_eq!(cpt_flags(0x1F600).0, SYMBOL);
    }

    #[test]
    fn byte_mapping_round_trip() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b), "byte {b}");
        }
        assert_eq!(char_to_byte('€'), None);
    }
}
