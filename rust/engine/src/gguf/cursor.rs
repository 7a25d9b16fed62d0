//! A bounds-checked little-endian reader over the file's bytes.
//!
//! Every read checks the remaining length first and reports a shortfall as
//! [`Error::Format`] naming the field, so no read can index past the end.

use crate::error::{Error, Result};

pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, pos: 0 }
    }

    /// Byte offset of the next read from the start of the file.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Takes the next `n` bytes; `field` names what they encode, for the error.
    pub(crate) fn take(&mut self, n: u64, field: impl FnOnce() -> String) -> Result<&'a [u8]> {
        let available = self.remaining();
        let n = match usize::try_from(n) {
            Ok(n) if n <= available => n,
            _ => {
                return Err(Error::Format(format!(
                    "{}: needs {} bytes at offset {}, but the file ends at byte {}; \
                     the file is truncated or corrupt",
                    field(),
                    n,
                    self.pos,
                    self.bytes.len()
                )))
            }
        };
        let start = self.pos;
        self.pos += n;
        Ok(&self.bytes[start..start + n])
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: impl FnOnce() -> String,
    ) -> Result<[u8; N]> {
        let bytes = self.take(N as u64, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u32(&mut self, field: impl FnOnce() -> String) -> Result<u32> {
        self.array(field).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, field: impl FnOnce() -> String) -> Result<u64> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// Reads a GGUF string: a u64 byte length, then that many UTF-8 bytes.
    pub(crate) fn string(&mut self, field: impl Fn() -> String) -> Result<String> {
        self.str(field).map(str::to_owned)
    }

    /// [`Cursor::string`] that borrows the text from the file's bytes.
    pub(crate) fn str(&mut self, field: impl Fn() -> String) -> Result<&'a str> {
        let len = self.u64(|| format!("{} (string length)", field()))?;
        let start = self.pos;
        let bytes = self.take(len, || format!("{} (string of {len} bytes)", field()))?;

        // NOTE: invalid UTF-8 is rejected, not replaced, because a silently
        // altered token or tensor name would be worse than a clear error.
        // llama.cpp itself does not check, so a file it loads may fail here.
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text),
            Err(err) => Err(Error::Format(format!(
                "{}: the string at offset {start} is not valid UTF-8 (invalid byte at index {})",
                field(),
                err.valid_up_to()
            ))),
        }
    }
}
