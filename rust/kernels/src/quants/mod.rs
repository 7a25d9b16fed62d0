//! GGML weight formats: block layouts, dequantization, activation
//! quantization and the dot products of the matrix-vector path.
//!
//! Quantized weights are multiplied with activations that were themselves
//! quantized to 8-bit blocks ([`GgmlType::vec_dot_type`]), as llama.cpp's
//! CPU backend does, so integer dot products can be used.

mod blocks;
mod scalar;

/// Pointers and strides of one product, valid for the lengths that
/// `check_gemm_lengths` enforces.
#[derive(Clone, Copy)]
struct Operands {
    n_blocks: usize,
    weights: *const u8,
    row_bytes: usize,
    n_rows: usize,
    acts: *const u8,
    act_row_bytes: usize,
    n_tokens: usize,
    out: *mut f32,
    out_stride: usize,
}

impl Operands {
    /// Pointers into buffers that `check_gemm_lengths` accepted for `ty`
    /// and `shape`.
    fn new(ty: GgmlType, shape: GemmShape, weights: &[u8], acts: &[u8], out: &mut [f32]) -> Operands {
        Operands {
            n_blocks: shape.n / ty.block_size(),
            weights: weights.as_ptr(),
            row_bytes: shape.row_bytes,
            n_rows: shape.n_rows,
            acts: acts.as_ptr(),
            act_row_bytes: shape.act_row_bytes,
            n_tokens: shape.n_tokens,
            out: out.as_mut_ptr(),
            out_stride: shape.out_stride,
        }
    }
}

/// Runs `kernel::<R, T>` over every tile: rows outside, tokens inside, so the
/// `R` weight rows of a tile stay in L1 while the activations stream past.
#[cfg(target_arch = "aarch64")]
macro_rules! run_tiles {
    ($kernel:ident, $r:expr, $t:expr, $ops:expr) => {{
        const R: usize = $r;
        const T: usize = $t;
        let ops: $crate::quants::Operands = $ops;
        let ahead = $crate::quants::prefetch_distance(R * ops.row_bytes);
        let mut r0 = 0;
        while r0 < ops.n_rows {
            let rows = (ops.n_rows - r0).min(R);
            let mut w = [ops.weights; R];
            for (r, ptr) in w.iter_mut().enumerate() {
                *ptr = ops.weights.add((r0 + r.min(rows - 1)) * ops.row_bytes);
            }
            let mut t0 = 0;
            while t0 < ops.n_tokens {
                let tokens = (ops.n_tokens - t0).min(T);
                let mut a = [ops.acts; T];
                for (t, ptr) in a.iter_mut().enumerate() {
                    *ptr = ops.acts.add((t0 + t.min(tokens - 1)) * ops.act_row_bytes);
                }
                let sums: [[f32; T]; R] = $kernel::<R, T>(ops.n_blocks, w, a, ahead);
                for (r, row_sums) in sums.iter().enumerate().take(rows) {
                    for (t, &sum) in row_sums.iter().enumerate().take(tokens) {
                        *ops.out.add((t0 + t) * ops.out_stride + r0 + r) = sum;
                    }
                }
                t0 += T;
            }
            r0 += R;
        }
    }};
}

/// How far ahead single-token kernels prefetch, in bytes of weights: they
/// read `R` rows side by side, block by block, which hardware prefetchers
/// follow poorly when rows are short (a Gemma 3 270M output row is 680
/// bytes). Tuned with `bench_quants` on one AMD EPYC (Zen 5) core: 4 tiles
/// of 680-byte rows (11 KiB) streamed Q8_0 at 30 GB/s, 2 tiles at 19.
const PREFETCH_BYTES: usize = 10 << 10;

/// Returns the prefetch distance for tiles of `tile_bytes`: about
/// `PREFETCH_BYTES`, rounded to whole tiles so the address is the same
/// block of a later row.
fn prefetch_distance(tile_bytes: usize) -> usize {
    let tiles = (PREFETCH_BYTES + tile_bytes / 2) / tile_bytes.max(1);
    tiles.clamp(1, 16) * tile_bytes
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_panels;
#[cfg(target_arch = "x86_64")]
mod avx2_panels_k;
#[cfg(target_arch = "x86_64")]
mod avx2_quantize;
#[cfg(target_arch = "x86_64")]
mod avx2_tiles;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "aarch64")]
mod neon_quantize;
#[cfg(target_arch = "aarch64")]
mod neon_tiles;
#[cfg(test)]
mod tests;

pub use blocks::*;

use crate::simd::{self, Isa};

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
    /// Every supported type, in GGUF id order.
    pub const ALL: [GgmlType; 15] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Q8K,
        GgmlType::BF16,
    ];

    /// Maps a GGUF type id to a type this crate supports.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.iter().copied().find(|ty| ty.id() == id)
    }

    /// The GGUF type id.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q8_1 => 9,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::Q8K => 15,
            GgmlType::BF16 => 30,
        }
    }

    /// The GGML name, for example `"Q4_K"`.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q8_1 => "Q8_1",
            GgmlType::Q2K => "Q2_K",
            GgmlType::Q3K => "Q3_K",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
            GgmlType::Q8K => "Q8_K",
            GgmlType::BF16 => "BF16",
        }
    }

    /// Maps a GGML name such as `"Q4_K"` (case-insensitive) to its type.
    pub fn from_name(name: &str) -> Option<GgmlType> {
        GgmlType::ALL.iter().copied().find(|ty| ty.name().eq_ignore_ascii_case(name))
    }

    /// Elements per block (1 for F32, F16 and BF16).
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 => QK,
            GgmlType::Q8_0 | GgmlType::Q8_1 => QK,
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K => QK_K,
            GgmlType::Q6K | GgmlType::Q8K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        use std::mem::size_of;
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => size_of::<BlockQ4_0>(),
            GgmlType::Q4_1 => size_of::<BlockQ4_1>(),
            GgmlType::Q5_0 => size_of::<BlockQ5_0>(),
            GgmlType::Q5_1 => size_of::<BlockQ5_1>(),
            GgmlType::Q8_0 => size_of::<BlockQ8_0>(),
            GgmlType::Q8_1 => size_of::<BlockQ8_1>(),
            GgmlType::Q2K => size_of::<BlockQ2K>(),
            GgmlType::Q3K => size_of::<BlockQ3K>(),
            GgmlType::Q4K => size_of::<BlockQ4K>(),
            GgmlType::Q5K => size_of::<BlockQ5K>(),
            GgmlType::Q6K => size_of::<BlockQ6K>(),
            GgmlType::Q8K => size_of::<BlockQ8K>(),
        }
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
    ///
    /// F16 and BF16 weights take F32 activations here, unlike ggml, which
    /// rounds the activations to F16 or BF16 first; our float dots are
    /// therefore slightly more precise than llama.cpp's.
    pub fn vec_dot_type(self) -> GgmlType {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => GgmlType::F32,
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => GgmlType::Q8_0,
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 => GgmlType::Q8_1,
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K => GgmlType::Q8K,
            GgmlType::Q5K | GgmlType::Q6K | GgmlType::Q8K => GgmlType::Q8K,
        }
    }
}

/// Dequantizes one row: `src` holds `dst.len() / block_size` whole blocks.
///
/// Panics if the lengths do not match; callers validate shapes first.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    let expected = ty.row_bytes(dst.len());
    assert!(
        expected == Some(src.len()),
        "dequantize_row: {} elements of {} need {:?} bytes, got {}",
        dst.len(),
        ty.name(),
        expected,
        src.len()
    );

    match ty {
        GgmlType::F32 => scalar::dequantize_f32(src, dst),
        GgmlType::F16 => scalar::dequantize_f16(src, dst),
        GgmlType::BF16 => scalar::dequantize_bf16(src, dst),
        GgmlType::Q4_0 => scalar::dequantize_q4_0(as_blocks(src), dst),
        GgmlType::Q4_1 => scalar::dequantize_q4_1(as_blocks(src), dst),
        GgmlType::Q5_0 => scalar::dequantize_q5_0(as_blocks(src), dst),
        GgmlType::Q5_1 => scalar::dequantize_q5_1(as_blocks(src), dst),
        GgmlType::Q8_0 => scalar::dequantize_q8_0(as_blocks(src), dst),
        GgmlType::Q8_1 => scalar::dequantize_q8_1(as_blocks(src), dst),
        GgmlType::Q2K => scalar::dequantize_q2_k(as_blocks(src), dst),
        GgmlType::Q3K => scalar::dequantize_q3_k(as_blocks(src), dst),
        GgmlType::Q4K => scalar::dequantize_q4_k(as_blocks(src), dst),
        GgmlType::Q5K => scalar::dequantize_q5_k(as_blocks(src), dst),
        GgmlType::Q6K => scalar::dequantize_q6_k(as_blocks(src), dst),
        GgmlType::Q8K => scalar::dequantize_q8_k(as_blocks(src), dst),
    }
}

/// Quantizes activations `src` into `dst` in the 8-bit encoding `ty`
/// (Q8_0, Q8_1 or Q8_K). `dst.len()` must be `ty.row_bytes(src.len())`.
///
/// The results are bit-exact with ggml's `quantize_row_q8_0_ref`,
/// `quantize_row_q8_1_ref` and `quantize_row_q8_K_ref`. Panics on another
/// `ty` or on mismatched lengths.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) {
    quantize_row_with(simd::active(), ty, src, dst);
}

/// [`quantize_row`] on a chosen instruction set, for tests and benchmarks.
/// Every path writes the same bytes for finite inputs.
///
/// Panics if this CPU cannot run `isa`, on another `ty` or on mismatched
/// lengths.
pub fn quantize_row_with(isa: Isa, ty: GgmlType, src: &[f32], dst: &mut [u8]) {
    let expected = ty.row_bytes(src.len());
    assert!(
        expected == Some(dst.len()),
        "quantize_row: {} elements of {} need {:?} bytes, got {}",
        src.len(),
        ty.name(),
        expected,
        dst.len()
    );
    assert!(isa.is_supported(), "quantize_row: the {} instruction set is not available on this CPU", isa.name());

    match (isa, ty) {
        (Isa::Scalar, GgmlType::Q8_0) => scalar::quantize_q8_0(src, as_blocks_mut(dst)),
        (Isa::Scalar, GgmlType::Q8_1) => scalar::quantize_q8_1(src, as_blocks_mut(dst)),
        (Isa::Scalar, GgmlType::Q8K) => scalar::quantize_q8_k(src, as_blocks_mut(dst)),
        // SAFETY (all SIMD arms): `is_supported` checked the instruction
        // set above, and the length check gives `dst` one block per block
        // of `src`.
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, GgmlType::Q8_0) => unsafe { avx2_quantize::quantize_q8_0(src, as_blocks_mut(dst)) },
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, GgmlType::Q8_1) => unsafe { avx2_quantize::quantize_q8_1(src, as_blocks_mut(dst)) },
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, GgmlType::Q8K) => unsafe { avx2_quantize::quantize_q8_k(src, as_blocks_mut(dst)) },
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q8_0) => unsafe { neon_quantize::quantize_q8_0(src, as_blocks_mut(dst)) },
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q8_1) => unsafe { neon_quantize::quantize_q8_1(src, as_blocks_mut(dst)) },
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, GgmlType::Q8K) => unsafe { neon_quantize::quantize_q8_k(src, as_blocks_mut(dst)) },
        (_, GgmlType::Q8_0 | GgmlType::Q8_1 | GgmlType::Q8K) => unreachable!("{} is supported on this CPU", isa.name()),
        _ => panic!("quantize_row: {} is not an activation encoding (use Q8_0, Q8_1 or Q8_K)", ty.name()),
    }
}

/// Dot product of one weight row of type `ty` with `n` activations.
///
/// `act` is the activation row encoded as `ty.vec_dot_type()`; for float
/// weights it is the f32 activations' little-endian bytes.
pub fn vec_dot(ty: GgmlType, n: usize, weight: &[u8], act: &[u8]) -> f32 {
    vec_dot_with(simd::active(), ty, n, weight, act)
}

/// [`vec_dot`] on a chosen instruction set, for tests and benchmarks.
///
/// Quantized activations must come from [`quantize_row`]: the AVX2 path
/// relies on their quants lying in -127..=127. Panics if this CPU cannot run
/// `isa` or if the lengths do not match `n`.
pub fn vec_dot_with(isa: Isa, ty: GgmlType, n: usize, weight: &[u8], act: &[u8]) -> f32 {
    check_dot_lengths(ty, n, weight, act);
    assert!(isa.is_supported(), "vec_dot: the {} instruction set is not available on this CPU", isa.name());

    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `is_supported` checked AVX2 and FMA above.
        Isa::Avx2 => unsafe { avx2::vec_dot(ty, n, weight, act) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::vec_dot(ty, n, weight, act),
        _ => vec_dot_scalar(ty, n, weight, act),
    }
}

fn check_dot_lengths(ty: GgmlType, n: usize, weight: &[u8], act: &[u8]) {
    let weight_bytes = ty.row_bytes(n);
    assert!(
        weight_bytes == Some(weight.len()),
        "vec_dot: {} weights of {} need {:?} bytes, got {}",
        n,
        ty.name(),
        weight_bytes,
        weight.len()
    );
    let act_type = ty.vec_dot_type();
    let act_bytes = act_type.row_bytes(n);
    assert!(
        act_bytes == Some(act.len()),
        "vec_dot: {} activations of {} need {:?} bytes, got {}",
        n,
        act_type.name(),
        act_bytes,
        act.len()
    );
}

fn vec_dot_scalar(ty: GgmlType, n: usize, weight: &[u8], act: &[u8]) -> f32 {
    let w = weight;
    let a = act;
    match ty {
        GgmlType::F32 => scalar::dot_f32(n, w, a),
        GgmlType::F16 => scalar::dot_f16(n, w, a),
        GgmlType::BF16 => scalar::dot_bf16(n, w, a),
        GgmlType::Q4_0 => scalar::dot_q4_0(as_blocks(w), as_blocks(a)),
        GgmlType::Q4_1 => scalar::dot_q4_1(as_blocks(w), as_blocks(a)),
        GgmlType::Q5_0 => scalar::dot_q5_0(as_blocks(w), as_blocks(a)),
        GgmlType::Q5_1 => scalar::dot_q5_1(as_blocks(w), as_blocks(a)),
        GgmlType::Q8_0 => scalar::dot_q8_0(as_blocks(w), as_blocks(a)),
        GgmlType::Q8_1 => scalar::dot_q8_1(as_blocks(w), as_blocks(a)),
        GgmlType::Q2K => scalar::dot_q2_k(as_blocks(w), as_blocks(a)),
        GgmlType::Q3K => scalar::dot_q3_k(as_blocks(w), as_blocks(a)),
        GgmlType::Q4K => scalar::dot_q4_k(as_blocks(w), as_blocks(a)),
        GgmlType::Q5K => scalar::dot_q5_k(as_blocks(w), as_blocks(a)),
        GgmlType::Q6K => scalar::dot_q6_k(as_blocks(w), as_blocks(a)),
        GgmlType::Q8K => scalar::dot_q8_k(as_blocks(w), as_blocks(a)),
    }
}

/// Dot products of consecutive weight rows with one activation row:
/// `out[r] = dot(row r, act)` for `r` in `0..out.len()`, where row `r`
/// starts at byte `r * row_bytes` of `rows`.
///
/// The matrix-vector product of decoding. Same contract as [`vec_dot`].
pub fn vec_dot_rows(ty: GgmlType, n: usize, rows: &[u8], row_bytes: usize, act: &[u8], out: &mut [f32]) {
    vec_dot_rows_with(simd::active(), ty, n, rows, row_bytes, act, out)
}

/// [`vec_dot_rows`] on a chosen instruction set, for tests and benchmarks.
pub fn vec_dot_rows_with(
    isa: Isa,
    ty: GgmlType,
    n: usize,
    rows: &[u8],
    row_bytes: usize,
    act: &[u8],
    out: &mut [f32],
) {
    let n_rows = out.len();
    let act_row_bytes = act.len();
    let shape = GemmShape { n, row_bytes, n_rows, act_row_bytes, n_tokens: 1, out_stride: n_rows };
    gemm_with(isa, ty, shape, rows, act, out)
}

/// Shape of a product of weight rows with activation rows (see [`gemm`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    /// Elements per row.
    pub n: usize,
    /// Bytes from one weight row to the next (at least `ty.row_bytes(n)`).
    pub row_bytes: usize,
    pub n_rows: usize,
    /// Bytes from one activation row to the next (at least the encoded row).
    pub act_row_bytes: usize,
    pub n_tokens: usize,
    /// Floats from one token's outputs to the next (at least `n_rows`
    /// when `n_tokens > 1`).
    pub out_stride: usize,
}

/// Products of `n_rows` weight rows with `n_tokens` activation rows:
/// `out[t * out_stride + r] = dot(weight row r, activation row t)`.
///
/// Activations are encoded as `ty.vec_dot_type()` (see [`vec_dot`]). Each
/// weight block is unpacked once per tile of tokens, which makes this the
/// fast path for prompts. Results equal [`vec_dot`]'s up to the order of
/// f32 additions. Each output's bits depend only on its weight row and
/// activation row, not on `n_tokens` or the other rows. So [`vec_dot_rows`]
/// (one token) and batches of any size agree exactly, and the engine's KV
/// cache does not depend on how a prompt was split. Panics if a buffer is
/// shorter than `shape` requires.
pub fn gemm(ty: GgmlType, shape: GemmShape, weights: &[u8], acts: &[u8], out: &mut [f32]) {
    gemm_with(simd::active(), ty, shape, weights, acts, out)
}

/// [`gemm`] on a chosen instruction set, for tests and benchmarks.
///
/// Panics if this CPU cannot run `isa`.
pub fn gemm_with(isa: Isa, ty: GgmlType, shape: GemmShape, weights: &[u8], acts: &[u8], out: &mut [f32]) {
    check_gemm_lengths(ty, shape, weights, acts, out);
    assert!(isa.is_supported(), "gemm: the {} instruction set is not available on this CPU", isa.name());
    if shape.n_rows == 0 || shape.n_tokens == 0 {
        return;
    }
    if shape.n == 0 {
        // Empty rows: every product is the empty sum.
        for t in 0..shape.n_tokens {
            out[t * shape.out_stride..][..shape.n_rows].fill(0.0);
        }
        return;
    }

    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && crate::f16::x86::has_f16c() {
        let ops = Operands::new(ty, shape, weights, acts, out);
        // SAFETY: `is_supported` checked AVX2 and FMA, `has_f16c` F16C, and
        // `check_gemm_lengths` the buffer sizes behind the pointers.
        if unsafe { avx2_tiles::gemm(ty, ops) } {
            return;
        }
    }

    #[cfg(target_arch = "aarch64")]
    if isa == Isa::Neon {
        let ops = Operands::new(ty, shape, weights, acts, out);
        // SAFETY: NEON is part of the aarch64 baseline, and
        // `check_gemm_lengths` checked the buffer sizes behind the pointers.
        if unsafe { neon_tiles::gemm(ty, ops) } {
            return;
        }
    }

    gemm_by_rows(isa, ty, shape, weights, acts, out);
}

/// Computes [`gemm`] with one [`vec_dot_with`] per output (the reference,
/// and the path of formats without tile kernels).
fn gemm_by_rows(isa: Isa, ty: GgmlType, shape: GemmShape, weights: &[u8], acts: &[u8], out: &mut [f32]) {
    let weight_bytes = ty.row_bytes(shape.n).unwrap_or(0);
    let act_bytes = ty.vec_dot_type().row_bytes(shape.n).unwrap_or(0);
    for t in 0..shape.n_tokens {
        let act = &acts[t * shape.act_row_bytes..][..act_bytes];
        for r in 0..shape.n_rows {
            let row = &weights[r * shape.row_bytes..][..weight_bytes];
            out[t * shape.out_stride + r] = vec_dot_with(isa, ty, shape.n, row, act);
        }
    }
}

/// Bytes a buffer of `count` rows of `used` bytes, `stride` bytes apart,
/// must hold.
fn strided_len(count: usize, stride: usize, used: usize) -> Option<usize> {
    match count {
        0 => Some(0),
        _ => (count - 1).checked_mul(stride)?.checked_add(used),
    }
}

fn check_gemm_lengths(ty: GgmlType, shape: GemmShape, weights: &[u8], acts: &[u8], out: &[f32]) {
    let weight_bytes = ty.row_bytes(shape.n);
    let act_type = ty.vec_dot_type();
    let act_bytes = act_type.row_bytes(shape.n);
    let (weight_bytes, act_bytes) = match (weight_bytes, act_bytes) {
        (Some(w), Some(a)) => (w, a),
        _ => panic!("gemm: {} elements are not a whole number of {} blocks", shape.n, ty.name()),
    };
    assert!(
        shape.row_bytes >= weight_bytes && shape.act_row_bytes >= act_bytes,
        "gemm: row strides {} (weights) and {} (activations) are shorter than the rows, {} and {} bytes",
        shape.row_bytes,
        shape.act_row_bytes,
        weight_bytes,
        act_bytes
    );
    assert!(
        shape.n_tokens <= 1 || shape.out_stride >= shape.n_rows,
        "gemm: output stride {} is shorter than the {} rows",
        shape.out_stride,
        shape.n_rows
    );
    let needed = [
        ("weights", strided_len(shape.n_rows, shape.row_bytes, weight_bytes), weights.len()),
        ("activations", strided_len(shape.n_tokens, shape.act_row_bytes, act_bytes), acts.len()),
        ("outputs", strided_len(shape.n_tokens, shape.out_stride, shape.n_rows), out.len()),
    ];
    for (what, need, have) in needed {
        assert!(
            need.map_or(false, |need| need <= have),
            "gemm: {} {} of {} rows by {} tokens need {:?} elements, got {}",
            what,
            ty.name(),
            shape.n_rows,
            shape.n_tokens,
            need,
            have
        );
    }
}
