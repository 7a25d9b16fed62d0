//! GGML weight formats: block layouts, dequantization, activation
//! quantization and the dot products of the matrix-vector path.
//!
//! Quantized weights are multiplied with activations that were themselves
//! quantized to 8-bit blocks ([`GgmlType::vec_dot_type`]), as llama.cpp's
//! CPU backend does, so integer dot products can be used.

/// A GGML tensor type, numbered as in the GGUF file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    BF16,
}

impl GgmlType {
    /// Maps a GGUF type id to a type this crate supports.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        todo!()
    }

    /// The GGUF type id.
    pub fn id(self) -> u32 {
        todo!()
    }

    /// The GGML name, for example `"Q4_K"`.
    pub fn name(self) -> &'static str {
        todo!()
    }

    /// Elements per block (1 for F32, F16 and BF16).
    pub fn block_size(self) -> usize {
        todo!()
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        todo!()
    }

    /// Bytes of a row of `n` elements, or `None` if `n` is not a multiple of
    /// the block size or the size overflows.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        let bs = self.block_size();
        if n % bs != 0 {
            return None;
        }
        (n / bs).checked_mul(self.type_size())
    }

    /// The encoding activations are converted to before a dot product with a
    /// weight row of this type: F32 for float weights, Q8_0/Q8_1/Q8_K for
    /// quantized weights, matching llama.cpp's CPU backend.
    pub fn vec_dot_type(self) -> GgmlType {
        todo!()
    }
}

/// Dequantizes one row: `src` holds `dst.len() / block_size` whole blocks.
///
/// Panics if the lengths do not match; callers validate shapes first.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    todo!()
}

/// Quantizes activations `src` into `dst` in the 8-bit encoding `ty`
/// (Q8_0, Q8_1 or Q8_K). `dst.len()` must be `ty.row_bytes(src.len())`.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) {
    todo!()
}

/// Dot product of one weight row of type `ty` with `n` activations.
///
/// `act` is the activation row encoded as `ty.vec_dot_type()`; for float
/// weights it is the f32 activations' little-endian bytes.
pub fn vec_dot(ty: GgmlType, n: usize, weight: &[u8], act: &[u8]) -> f32 {
    todo!()
}
