//! A compact array of strings for metadata arrays and vocabularies.

use std::ops::Index;

/// Strings stored back to back in one UTF-8 buffer with the end offset of
/// each, so that a vocabulary of 262144 tokens takes two allocations
/// instead of one per token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StringArray {
    /// All strings concatenated.
    text: String,
    /// `ends[i]` is the byte offset in `text` just past string `i`.
    ends: Vec<usize>,
}

impl StringArray {
    pub fn new() -> StringArray {
        StringArray::default()
    }

    /// Creates an empty array with room for `n_strings` strings of `n_bytes` bytes
    /// in all.
    pub fn with_capacity(n_strings: usize, n_bytes: usize) -> StringArray {
        StringArray { text: String::with_capacity(n_bytes), ends: Vec::with_capacity(n_strings) }
    }

    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Total bytes of all strings.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// String `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.text[start..end])
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(move |i| &self[i])
    }

    /// Copies the strings out, one `String` each.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }
}

impl Index<usize> for StringArray {
    type Output = str;

    /// Returns string `i`. Panics past the end, as slice indexing does.
    fn index(&self, i: usize) -> &str {
        match self.get(i) {
            Some(s) => s,
            None => panic!("string index {i} is out of range for an array of {} strings", self.len()),
        }
    }
}

impl<S: AsRef<str>> FromIterator<S> for StringArray {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> StringArray {
        let mut array = StringArray::new();
        for s in iter {
            array.push(s.as_ref());
        }
        array
    }
}

impl From<Vec<String>> for StringArray {
    fn from(strings: Vec<String>) -> StringArray {
        let n_bytes = strings.iter().map(String::len).sum();
        let mut array = StringArray::with_capacity(strings.len(), n_bytes);
        for s in &strings {
            array.push(s);
        }
        array
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_array_keeps_each_string() {
        let strings = ["<s>", "", "Ġthe", "ü"];
        let array = StringArray::from_iter(strings);
        assert_eq!(array.len(), 4);
        assert_eq!(array.text_len(), 3 + 5 + 2);
        for (i, s) in strings.iter().enumerate() {
            assert_eq!(&array[i], *s, "string {i}");
        }
        assert_eq!(array.get(4), None);
        assert_eq!(array.iter().collect::<Vec<_>>(), strings);
        assert_eq!(array.to_vec(), strings.map(String::from).to_vec());
    }

    #[test]
    fn string_array_from_vec_equals_pushes() {
        let from_vec = StringArray::from(vec!["a".to_string(), String::new()]);
        let mut pushed = StringArray::new();
        pushed.push("a");
        pushed.push("");
        assert_eq!(from_vec, pushed);
        assert!(StringArray::new().is_empty());
    }
}
