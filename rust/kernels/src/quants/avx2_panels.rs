//! AVX2 batch kernels for the unsigned 4- and 5-bit formats (Q4_0, Q4_1,
//! Q5_0, Q5_1) over packed weight panels, and for Q8_0 where VNNI exists.
//!
//! A panel is 8 weight rows, unpacked once to bytes and transposed so that
//! 32-bit lane `r` of vector `k` contains quants `4k..4k + 4` of row `r`'s
//! block. Every token of the batch then streams past the panel: one
//! `_mm256_maddubs_epi16` multiplies 4 quants of all 8 rows with the same 4
//! activation quants, broadcast. The results land in the lane of their row,
//! so no horizontal sums are needed, and the panel's binary16 scales are
//! converted once for all tokens. Where the CPU has AVX-VNNI or AVX-512 VNNI
//! and the compiler is Rust 1.89 or newer, one `vpdpbusd` per quad
//! replaces `vpmaddubsw` and its widening (see `Dot`).
//!
//! Every output goes through the f32 operations of the one-token kernel in
//! `avx2_tiles.rs` in the same order: per block, the integer sums of
//! elements 0..16 and 16..32 are scaled and added to two accumulators,
//! which are added at the end. A token's results therefore do not depend
//! on the batch it is part of.

use std::arch::x86_64::*;

use super::avx2_tiles::{act_terms, unsigned_q4_0, unsigned_q4_1, unsigned_q5_0, unsigned_q5_1, ActSums};
use super::Operands;
use crate::f16::x86::cvtph_ps;

/// Weight rows per panel, one per 32-bit lane.
pub(super) const PANEL_ROWS: usize = 8;

/// Vectors per packed block: 8 of quants, the rows' `d` and their `m`.
const PACKED_VECTORS: usize = 10;

/// Tokens per pass over a panel, each with three f32 accumulators. 2 and 4
/// ran at the same speed with `bench_quants` on one Xeon core (rows of
/// 2048, with and without VNNI).
pub(super) const TOKENS: usize = 2;

/// One weight format as the panel kernels see it.
#[derive(Clone, Copy)]
struct Format {
    block_bytes: usize,
    /// Unpacks a block's quants to 32 unsigned bytes in element order.
    unpack: unsafe fn(*const u8) -> __m256i,
    /// Whether the block stores an offset `m` after `d` (and the
    /// activations are Q8_1 blocks).
    has_m: bool,
    /// Whether the quants are signed bytes, packed with 128 added (Q8_0).
    signed: bool,
    /// Factor of the offset term in the result (see `batch_kernel` in
    /// `avx2_tiles.rs`).
    coef: f32,
}

const Q4_0: Format = Format { block_bytes: 18, unpack: unsigned_q4_0, has_m: false, signed: false, coef: -8.0 };
const Q5_0: Format = Format { block_bytes: 22, unpack: unsigned_q5_0, has_m: false, signed: false, coef: -16.0 };
const Q4_1: Format = Format { block_bytes: 20, unpack: unsigned_q4_1, has_m: true, signed: false, coef: 1.0 };
const Q5_1: Format = Format { block_bytes: 24, unpack: unsigned_q5_1, has_m: true, signed: false, coef: 1.0 };
const Q8_0: Format = Format { block_bytes: 34, unpack: offset_q8_0, has_m: false, signed: true, coef: 0.0 };

/// Unpacks a Q8_0 block's quants with 128 added, as unsigned bytes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn offset_q8_0(block: *const u8) -> __m256i {
    let quants = _mm256_loadu_si256(block.add(2) as *const __m256i);
    _mm256_xor_si256(quants, _mm256_set1_epi8(-128))
}

/// The instruction that multiplies 4 unsigned weight quants with 4 signed
/// activation quants and adds them up, per 32-bit lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dot {
    /// AVX2 `vpmaddubsw`: pair sums in i16, widened once per 4 quads.
    Maddubs,
    /// AVX-VNNI `vpdpbusd` (VEX encoding).
    #[cfg(turbokv_vnni)]
    AvxVnni,
    /// AVX-512 VNNI `vpdpbusd` on 256-bit registers (EVEX encoding).
    #[cfg(turbokv_vnni)]
    Avx512Vnni,
}

impl Dot {
    /// Every variant this build has, `Maddubs` first.
    const ALL: &'static [Dot] = &[
        Dot::Maddubs,
        #[cfg(turbokv_vnni)]
        Dot::AvxVnni,
        #[cfg(turbokv_vnni)]
        Dot::Avx512Vnni,
    ];

    fn is_supported(self) -> bool {
        match self {
            Dot::Maddubs => true,
            #[cfg(turbokv_vnni)]
            Dot::AvxVnni => is_x86_feature_detected!("avxvnni"),
            #[cfg(turbokv_vnni)]
            Dot::Avx512Vnni => is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl"),
        }
    }

    /// Lists the variants this CPU runs, `Maddubs` first.
    #[cfg(test)]
    pub(super) fn available() -> Vec<Dot> {
        Dot::ALL.iter().copied().filter(|dot| dot.is_supported()).collect()
    }

    /// Returns the first VNNI variant this CPU runs, else `Maddubs`. All
    /// give the same bits, because the integer sums are exact.
    fn best() -> Dot {
        Dot::ALL[1..].iter().copied().find(|dot| dot.is_supported()).unwrap_or(Dot::Maddubs)
    }
}

/// Computes the batch products of the formats with panel kernels, and
/// returns false for the others.
///
/// # Safety
/// As `avx2_tiles::gemm`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn gemm(ty: super::GgmlType, ops: Operands) -> bool {
    gemm_with(ty, ops, Dot::best())
}

/// Runs [`gemm`] with a chosen [`Dot`], for tests.
///
/// # Safety
/// As `avx2_tiles::gemm`, and the CPU must run `dot` (see `Dot::available`).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn gemm_with(ty: super::GgmlType, ops: Operands, dot: Dot) -> bool {
    use super::GgmlType;
    let format = match ty {
        GgmlType::Q4_0 => Q4_0,
        GgmlType::Q5_0 => Q5_0,
        GgmlType::Q4_1 => Q4_1,
        GgmlType::Q5_1 => Q5_1,
        // Quants up to 255 would overflow the 16-bit pair sums of
        // `vpmaddubsw`, so Q8_0 needs `vpdpbusd`.
        GgmlType::Q8_0 if dot != Dot::Maddubs => Q8_0,
        _ => return false,
    };
    run(format, &ops, kernel_for(dot, format));
    true
}

/// A panel kernel: `(coef, n_blocks, panel, acts, terms)` to one vector of
/// rows per token (see `panel_kernel!`).
type Kernel = unsafe fn(f32, usize, &[__m256i], [*const u8; TOKENS], [*const f32; TOKENS]) -> [__m256; TOKENS];

fn kernel_for(dot: Dot, format: Format) -> Kernel {
    match (dot, format.has_m, format.signed) {
        (Dot::Maddubs, true, _) => panel_maddubs::<true, false>,
        (Dot::Maddubs, false, _) => panel_maddubs::<false, false>,
        #[cfg(turbokv_vnni)]
        (Dot::AvxVnni, true, _) => panel_avx_vnni::<true, false>,
        #[cfg(turbokv_vnni)]
        (Dot::AvxVnni, false, false) => panel_avx_vnni::<false, false>,
        #[cfg(turbokv_vnni)]
        (Dot::AvxVnni, false, true) => panel_avx_vnni::<false, true>,
        #[cfg(turbokv_vnni)]
        (Dot::Avx512Vnni, true, _) => panel_avx512_vnni::<true, false>,
        #[cfg(turbokv_vnni)]
        (Dot::Avx512Vnni, false, false) => panel_avx512_vnni::<false, false>,
        #[cfg(turbokv_vnni)]
        (Dot::Avx512Vnni, false, true) => panel_avx512_vnni::<false, true>,
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn run(format: Format, ops: &Operands, kernel: Kernel) {
    let terms = token_terms(format, ops);
    let mut panel = vec![_mm256_setzero_si256(); ops.n_blocks * PACKED_VECTORS];
    let mut r0 = 0;
    while r0 < ops.n_rows {
        let (row_ptrs, rows) = panel_rows(ops, r0);
        pack_panel(format, &row_ptrs, &mut panel);

        let mut t0 = 0;
        while t0 < ops.n_tokens {
            let tokens = (ops.n_tokens - t0).min(TOKENS);
            let mut acts = [ops.acts; TOKENS];
            let mut token_terms = [terms.as_ptr(); TOKENS];
            for t in 0..TOKENS {
                // Past the last token, repeat it.
                let token = t0 + t.min(tokens - 1);
                acts[t] = ops.acts.add(token * ops.act_row_bytes);
                token_terms[t] = terms.as_ptr().add(token * 2 * ops.n_blocks);
            }
            let sums = kernel(format.coef, ops.n_blocks, &panel, acts, token_terms);
            for (t, row_sums) in sums.iter().enumerate().take(tokens) {
                store_rows(ops.out.add((t0 + t) * ops.out_stride + r0), *row_sums, rows);
            }
            t0 += TOKENS;
        }
        r0 += PANEL_ROWS;
    }
}

/// Computes `[d, offset]` of every activation block of every token with
/// `act_terms`, as the one-token kernels do. For signed formats the second
/// value instead carries the bits of [`half_sums_i8`].
#[target_feature(enable = "avx2,fma")]
unsafe fn token_terms(format: Format, ops: &Operands) -> Vec<f32> {
    let sums = match (format.has_m, format.signed) {
        (true, _) => ActSums::Q8_1,
        (false, true) => ActSums::None,
        (false, false) => ActSums::Q8_0,
    };
    let block_bytes = if format.has_m { 36 } else { 34 };
    let mut terms = vec![0.0f32; ops.n_tokens * ops.n_blocks * 2];
    for (t, token) in terms.chunks_exact_mut(2 * ops.n_blocks).enumerate() {
        let act = ops.acts.add(t * ops.act_row_bytes);
        for (b, block) in token.chunks_exact_mut(2).enumerate() {
            let (d, offset) = act_terms(act.add(b * block_bytes), sums);
            block[0] = d;
            block[1] = if format.signed { f32::from_bits(half_sums_i8(act.add(b * block_bytes + 2))) } else { offset };
        }
    }
    terms
}

/// Sums the 32 signed bytes at `p` in two halves, elements 0..16 and
/// 16..32, and returns them as the low and high i16 of a u32 (each is at
/// most 16 * 128 = 2048 in magnitude).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn half_sums_i8(p: *const u8) -> u32 {
    let pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(1), _mm256_loadu_si256(p as *const __m256i));
    let quads = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    let mut lanes = [0i32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, quads);
    let low = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    let high = lanes[4] + lanes[5] + lanes[6] + lanes[7];
    (low as u16 as u32) | (high as u16 as u32) << 16
}

/// Returns pointers to rows `r0..r0 + 8` of the weights, the missing ones
/// repeating the last row, and how many of them exist.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn panel_rows(ops: &Operands, r0: usize) -> ([*const u8; PANEL_ROWS], usize) {
    let rows = (ops.n_rows - r0).min(PANEL_ROWS);
    let mut row_ptrs = [ops.weights; PANEL_ROWS];
    for (r, ptr) in row_ptrs.iter_mut().enumerate() {
        *ptr = ops.weights.add((r0 + r.min(rows - 1)) * ops.row_bytes);
    }
    (row_ptrs, rows)
}

/// Stores the first `rows` lanes of `sums` at `out`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn store_rows(out: *mut f32, sums: __m256, rows: usize) {
    if rows == PANEL_ROWS {
        _mm256_storeu_ps(out, sums);
    } else {
        let mut lanes = [0.0f32; PANEL_ROWS];
        _mm256_storeu_ps(lanes.as_mut_ptr(), sums);
        std::ptr::copy_nonoverlapping(lanes.as_ptr(), out, rows);
    }
}

/// Packs the rows at `rows` into `panel`: per block, 8 vectors of
/// transposed quants, then `d` and `m` of each row as f32. Blocks without
/// `m` give their first quant bytes there, which the kernels ignore.
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_panel(format: Format, rows: &[*const u8; PANEL_ROWS], panel: &mut [__m256i]) {
    for (b, packed) in panel.chunks_exact_mut(PACKED_VECTORS).enumerate() {
        let mut blocks = [rows[0]; PANEL_ROWS];
        let mut quants = [_mm256_setzero_si256(); PANEL_ROWS];
        for r in 0..PANEL_ROWS {
            blocks[r] = rows[r].add(b * format.block_bytes);
            quants[r] = (format.unpack)(blocks[r]);
        }
        packed[..PANEL_ROWS].copy_from_slice(&transpose_dwords(quants));
        packed[8] = _mm256_castps_si256(row_halves(&blocks, 0));
        packed[9] = _mm256_castps_si256(row_halves(&blocks, 2));
    }
}

/// Transposes 8 vectors of 8 dwords: lane `r` of result `k` is lane `k`
/// of input `r`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn transpose_dwords(x: [__m256i; 8]) -> [__m256i; 8] {
    // Pairs of rows: [r0 k0, r1 k0, r0 k1, r1 k1 | the same for k4, k5].
    let a0 = _mm256_unpacklo_epi32(x[0], x[1]);
    let a1 = _mm256_unpackhi_epi32(x[0], x[1]);
    let a2 = _mm256_unpacklo_epi32(x[2], x[3]);
    let a3 = _mm256_unpackhi_epi32(x[2], x[3]);
    let a4 = _mm256_unpacklo_epi32(x[4], x[5]);
    let a5 = _mm256_unpackhi_epi32(x[4], x[5]);
    let a6 = _mm256_unpacklo_epi32(x[6], x[7]);
    let a7 = _mm256_unpackhi_epi32(x[6], x[7]);
    // Quads of rows: [r0..r3 of one k | r0..r3 of k + 4].
    let b0 = _mm256_unpacklo_epi64(a0, a2);
    let b1 = _mm256_unpackhi_epi64(a0, a2);
    let b2 = _mm256_unpacklo_epi64(a1, a3);
    let b3 = _mm256_unpackhi_epi64(a1, a3);
    let b4 = _mm256_unpacklo_epi64(a4, a6);
    let b5 = _mm256_unpackhi_epi64(a4, a6);
    let b6 = _mm256_unpacklo_epi64(a5, a7);
    let b7 = _mm256_unpackhi_epi64(a5, a7);
    [
        _mm256_permute2x128_si256(b0, b4, 0x20),
        _mm256_permute2x128_si256(b1, b5, 0x20),
        _mm256_permute2x128_si256(b2, b6, 0x20),
        _mm256_permute2x128_si256(b3, b7, 0x20),
        _mm256_permute2x128_si256(b0, b4, 0x31),
        _mm256_permute2x128_si256(b1, b5, 0x31),
        _mm256_permute2x128_si256(b2, b6, 0x31),
        _mm256_permute2x128_si256(b3, b7, 0x31),
    ]
}

/// Converts the binary16 at offset `at` of each of 8 blocks to f32, one
/// lane per block.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn row_halves(blocks: &[*const u8; PANEL_ROWS], at: usize) -> __m256 {
    let mut halves = [0u16; PANEL_ROWS];
    for (half, block) in halves.iter_mut().zip(blocks) {
        *half = std::ptr::read_unaligned(block.add(at) as *const u16);
    }
    cvtph_ps(_mm_loadu_si128(halves.as_ptr() as *const __m128i))
}

/// Broadcasts the 4 bytes at `p` to every 32-bit lane.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn quad(p: *const u8) -> __m256i {
    _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
}

/// Returns, per token, the i32 sums of quads `first..first + 4` of the
/// panel vectors `x` times the same quads of the token's activation quants
/// at `y[t]`, with `vpmaddubsw`. Each i16 lane adds 4 pair sums of
/// unsigned quants up to 31 times any i8 activation, at most 4 * 2 * 31 *
/// 128 = 31744 in magnitude, before one `vpmaddwd` widens them.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn half_sums_maddubs(x: &[__m256i], y: [*const u8; TOKENS], first: usize) -> [__m256i; TOKENS] {
    let mut sums = [_mm256_setzero_si256(); TOKENS];
    for k in first..first + 4 {
        for t in 0..TOKENS {
            sums[t] = _mm256_add_epi16(sums[t], _mm256_maddubs_epi16(x[k], quad(y[t].add(4 * k))));
        }
    }
    let ones = _mm256_set1_epi16(1);
    for sum in sums.iter_mut() {
        *sum = _mm256_madd_epi16(*sum, ones);
    }
    sums
}

/// Defines `$name`, [`half_sums_maddubs`] with the `vpdpbusd` intrinsic
/// `$dot` under the target features `$features`, which sums in i32
/// directly.
#[cfg(turbokv_vnni)]
macro_rules! vnni_half_sums {
    ($name:ident, $features:tt, $dot:ident) => {
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn $name(x: &[__m256i], y: [*const u8; TOKENS], first: usize) -> [__m256i; TOKENS] {
            let mut sums = [_mm256_setzero_si256(); TOKENS];
            for k in first..first + 4 {
                for t in 0..TOKENS {
                    sums[t] = $dot(sums[t], x[k], quad(y[t].add(4 * k)));
                }
            }
            sums
        }
    };
}

#[cfg(turbokv_vnni)]
vnni_half_sums!(half_sums_avx_vnni, "avx2,fma,avxvnni", _mm256_dpbusd_avx_epi32);
#[cfg(turbokv_vnni)]
vnni_half_sums!(half_sums_avx512_vnni, "avx2,fma,avx512vnni,avx512vl", _mm256_dpbusd_epi32);

/// Defines `$name::<HAS_M, SIGNED>`, which multiplies the panel's 8 rows
/// with `TOKENS` tokens and returns one vector of rows per token, summing
/// quads with `$half_sums` under the target features `$features`.
/// `terms[t]` points at token `t`'s `[d, offset]` pairs. `HAS_M` selects
/// the formats with an offset `m` and Q8_1 activations. `SIGNED` selects
/// Q8_0, whose packed quants carry 128 extra: each half sum loses 128 times
/// the activation quants' half sum, which leaves the signed products' exact
/// integer sum, as the one-token kernel computes it.
macro_rules! panel_kernel {
    ($name:ident, $features:tt, $half_sums:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name<const HAS_M: bool, const SIGNED: bool>(
            coef: f32,
            n_blocks: usize,
            panel: &[__m256i],
            acts: [*const u8; TOKENS],
            terms: [*const f32; TOKENS],
        ) -> [__m256; TOKENS] {
            let (act_bytes, quants_at) = if HAS_M { (36, 4) } else { (34, 2) };
            let mut low = [_mm256_setzero_ps(); TOKENS];
            let mut high = [_mm256_setzero_ps(); TOKENS];
            let mut offsets = [_mm256_setzero_ps(); TOKENS];
            for (b, packed) in panel.chunks_exact(PACKED_VECTORS).enumerate().take(n_blocks) {
                let mut y = [acts[0]; TOKENS];
                for t in 0..TOKENS {
                    y[t] = acts[t].add(b * act_bytes + quants_at);
                }
                let mut low_sums = $half_sums(packed, y, 0);
                let mut high_sums = $half_sums(packed, y, 4);
                if SIGNED {
                    for t in 0..TOKENS {
                        let act_sums = std::ptr::read(terms[t].add(2 * b + 1) as *const i32);
                        let low_offset = _mm256_set1_epi32(128 * ((act_sums << 16) >> 16));
                        let high_offset = _mm256_set1_epi32(128 * (act_sums >> 16));
                        low_sums[t] = _mm256_sub_epi32(low_sums[t], low_offset);
                        high_sums[t] = _mm256_sub_epi32(high_sums[t], high_offset);
                    }
                }

                let d = _mm256_castsi256_ps(packed[8]);
                let offset_scale = if HAS_M { _mm256_castsi256_ps(packed[9]) } else { d };
                for t in 0..TOKENS {
                    let dy = _mm256_broadcast_ss(&*terms[t].add(2 * b));
                    let scale = _mm256_mul_ps(d, dy);
                    low[t] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(low_sums[t]), low[t]);
                    high[t] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(high_sums[t]), high[t]);
                    if !SIGNED {
                        let offset_term = _mm256_broadcast_ss(&*terms[t].add(2 * b + 1));
                        offsets[t] = _mm256_fmadd_ps(offset_scale, offset_term, offsets[t]);
                    }
                }
            }
            let coef = _mm256_set1_ps(coef);
            let mut sums = [_mm256_setzero_ps(); TOKENS];
            for t in 0..TOKENS {
                sums[t] = _mm256_fmadd_ps(coef, offsets[t], _mm256_add_ps(low[t], high[t]));
            }
            sums
        }
    };
}

panel_kernel!(panel_maddubs, "avx2,fma", half_sums_maddubs);
#[cfg(turbokv_vnni)]
panel_kernel!(panel_avx_vnni, "avx2,fma,avxvnni", half_sums_avx_vnni);
#[cfg(turbokv_vnni)]
panel_kernel!(panel_avx512_vnni, "avx2,fma,avx512vnni,avx512vl", half_sums_avx512_vnni);
