//! Block layouts of the GGML formats, byte for byte as ggml stores them.
//!
//! Every field is a byte array, so each block has alignment 1 and can be
//! viewed in place at any offset of a memory-mapped GGUF file. Multi-byte
//! fields are little-endian (`d` is an IEEE binary16 scale unless noted).

use crate::f16::f16_to_f32;

/// Elements per block of the legacy formats (Q4_0 to Q8_1).
pub const QK: usize = 32;
/// Elements per super-block of the K-quants.
pub const QK_K: usize = 256;

/// A block that can be viewed in place inside a byte buffer.
///
/// # Safety
/// Implementors are `#[repr(C)]` structs of byte arrays: alignment 1, no
/// padding, and every bit pattern valid.
pub unsafe trait Block: Copy {
    /// Elements per block.
    const N: usize;
}

/// Views `bytes` as a slice of blocks.
///
/// Panics if `bytes` is not a whole number of blocks.
pub fn as_blocks<T: Block>(bytes: &[u8]) -> &[T] {
    let size = std::mem::size_of::<T>();
    assert!(
        bytes.len() % size == 0,
        "{} bytes are not a whole number of {}-byte blocks",
        bytes.len(),
        size
    );
    // SAFETY: `Block` guarantees alignment 1 and that every bit pattern is
    // valid, and the length was checked above.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, bytes.len() / size) }
}

/// Views `bytes` as a mutable slice of blocks.
///
/// Panics if `bytes` is not a whole number of blocks.
pub fn as_blocks_mut<T: Block>(bytes: &mut [u8]) -> &mut [T] {
    let size = std::mem::size_of::<T>();
    assert!(
        bytes.len() % size == 0,
        "{} bytes are not a whole number of {}-byte blocks",
        bytes.len(),
        size
    );
    // SAFETY: as in `as_blocks`; the borrow is exclusive.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut T, bytes.len() / size) }
}

fn half(bytes: [u8; 2]) -> f32 {
    f16_to_f32(u16::from_le_bytes(bytes))
}

macro_rules! check_layout {
    ($block:ty, $size:expr) => {
        const _: () = assert!(std::mem::size_of::<$block>() == $size);
        const _: () = assert!(std::mem::align_of::<$block>() == 1);
    };
}

/// Q4_0: `x = d * (q - 8)`, `q` in 0..16. Element `j` is the low nibble of
/// `qs[j]`, element `j + 16` its high nibble.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ4_0 {
    pub d: [u8; 2],
    pub qs: [u8; QK / 2],
}
check_layout!(BlockQ4_0, 18);

/// Q4_1: `x = d * q + m`, nibbles packed as in Q4_0.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; QK / 2],
}
check_layout!(BlockQ4_1, 20);

/// Q5_0: `x = d * (q - 16)`; bit `j` of the little-endian `qh` is bit 4 of
/// element `j`, the low 4 bits are packed as in Q4_0.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
check_layout!(BlockQ5_0, 22);

/// Q5_1: `x = d * q + m`, bits packed as in Q5_0.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ5_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
check_layout!(BlockQ5_1, 24);

/// Q8_0: `x = d * q`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; QK],
}
check_layout!(BlockQ8_0, 34);

/// Q8_1: `x = d * q`, and `s = d * sum(q)` (binary16) for the offset term of
/// Q4_1 and Q5_1 dot products.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ8_1 {
    pub d: [u8; 2],
    pub s: [u8; 2],
    pub qs: [i8; QK],
}
check_layout!(BlockQ8_1, 36);

/// Q2_K: 16 groups of 16. `scales[g]` contains a 4-bit scale (low nibble) and a
/// 4-bit min (high nibble): `x = d * scale * q - dmin * min`, `q` in 0..4.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: [u8; 2],
    pub dmin: [u8; 2],
}
check_layout!(BlockQ2K, 84);

/// Q3_K: 16 groups of 16 with 6-bit scales (stored +32) packed into 12
/// bytes. `x = d * (scale - 32) * (q - 4 * !hbit)`, where the 2-bit `q` is
/// in `qs` and its high bit in `hmask`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: [u8; 2],
}
check_layout!(BlockQ3K, 110);

/// Q4_K: 8 groups of 32 with 6-bit scales and mins packed into 12 bytes.
/// `x = d * scale * q - dmin * min`, `q` in 0..16.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}
check_layout!(BlockQ4K, 144);

/// Q5_K: Q4_K with a fifth bit per element in `qh`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
check_layout!(BlockQ5K, 176);

/// Q6_K: 16 groups of 16 with signed 8-bit scales. `x = d * scale * (q - 32)`,
/// where the low 4 bits of `q` are in `ql` and the high 2 bits in `qh`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: [u8; 2],
}
check_layout!(BlockQ6K, 210);

/// Q8_K: `x = d * q` with an f32 scale, and `bsums[g]` = sum of the 16 `q`
/// of group `g` (little-endian i16), used for the offsets of K-quant dots.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BlockQ8K {
    pub d: [u8; 4],
    pub qs: [i8; QK_K],
    pub bsums: [u8; QK_K / 16 * 2],
}
check_layout!(BlockQ8K, 292);

macro_rules! impl_block {
    ($block:ty, $n:expr) => {
        // SAFETY: byte-array fields only, checked by `check_layout!`.
        unsafe impl Block for $block {
            const N: usize = $n;
        }
    };
}
impl_block!(BlockQ4_0, QK);
impl_block!(BlockQ4_1, QK);
impl_block!(BlockQ5_0, QK);
impl_block!(BlockQ5_1, QK);
impl_block!(BlockQ8_0, QK);
impl_block!(BlockQ8_1, QK);
impl_block!(BlockQ2K, QK_K);
impl_block!(BlockQ3K, QK_K);
impl_block!(BlockQ4K, QK_K);
impl_block!(BlockQ5K, QK_K);
impl_block!(BlockQ6K, QK_K);
impl_block!(BlockQ8K, QK_K);

macro_rules! impl_d {
    ($($block:ty),*) => {
        $(impl $block {
            /// The block scale.
            pub fn d(&self) -> f32 {
                half(self.d)
            }
        })*
    };
}
impl_d!(BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1);
impl_d!(BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K);

macro_rules! impl_m {
    ($($block:ty),*) => {
        $(impl $block {
            /// The block offset.
            pub fn m(&self) -> f32 {
                half(self.m)
            }
        })*
    };
}
impl_m!(BlockQ4_1, BlockQ5_1);

macro_rules! impl_dmin {
    ($($block:ty),*) => {
        $(impl $block {
            /// The scale of the group mins.
            pub fn dmin(&self) -> f32 {
                half(self.dmin)
            }
        })*
    };
}
impl_dmin!(BlockQ2K, BlockQ4K, BlockQ5K);

impl BlockQ5_0 {
    /// The fifth bits of the 32 elements.
    pub fn qh(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
}

impl BlockQ5_1 {
    /// The fifth bits of the 32 elements.
    pub fn qh(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
}

impl BlockQ8_1 {
    /// `d * sum(qs)`, rounded to binary16 when the block was written.
    pub fn s(&self) -> f32 {
        half(self.s)
    }
}

impl BlockQ8K {
    /// The block scale (f32, unlike the other formats).
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    /// Sum of the 16 quants of group `g`.
    pub fn bsum(&self, g: usize) -> i16 {
        i16::from_le_bytes([self.bsums[2 * g], self.bsums[2 * g + 1]])
    }
}

impl BlockQ3K {
    /// The 16 group scales, unpacked from 6 bits and with the +32 removed.
    ///
    /// Group `g` takes its low 4 bits from a nibble of `scales[g % 8]` (low
    /// nibble for `g < 8`) and its high 2 bits from `scales[8 + g % 4]` at bit
    /// `2 * (g / 4)`.
    pub fn group_scales(&self) -> [i8; 16] {
        let mut out = [0i8; 16];
        for (g, scale) in out.iter_mut().enumerate() {
            let low = if g < 8 { self.scales[g] & 0x0f } else { self.scales[g - 8] >> 4 };
            let high = (self.scales[8 + g % 4] >> (2 * (g / 4))) & 0x03;
            *scale = (low | (high << 4)) as i8 - 32;
        }
        out
    }
}

/// Unpacks the 8 six-bit scales and the 8 six-bit mins of Q4_K and Q5_K.
///
/// Groups 0..4 use the low 6 bits of bytes 0..4 (scales) and 4..8 (mins).
/// Groups 4..8 take their low 4 bits from a nibble of bytes 8..12 and their
/// high 2 bits from the top of bytes 0..8.
pub fn k4_scales_mins(packed: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut scales = [0u8; 8];
    let mut mins = [0u8; 8];
    for j in 0..8 {
        if j < 4 {
            scales[j] = packed[j] & 63;
            mins[j] = packed[j + 4] & 63;
        } else {
            scales[j] = (packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4);
            mins[j] = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
        }
    }
    (scales, mins)
}
