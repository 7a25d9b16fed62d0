//! AVX2+FMA+F16C tile kernels: `R` weight rows times `T` activation rows
//! per call, for the formats of the models we run (Q4_0, Q4_1, Q5_0, Q5_1,
//! Q8_0, Q4_K, Q6_K).
//!
//! A tile unpacks each weight block once and multiplies it with the `T`
//! activation blocks, and converts each binary16 scale once, with
//! `vcvtph2ps`. Batches run the panel kernels of `avx2_panels.rs` and
//! `avx2_panels_k.rs` instead, except Q8_0 on CPUs without VNNI. Integer parts are
//! exact as in `avx2.rs`, so results differ from the scalar reference only
//! in the order of the f32 additions.
//!
//! Tiles at the edges of the matrix repeat the last valid row or token
//! pointer and drop the duplicate results, so every kernel runs on full
//! `R x T` tiles.

use std::arch::x86_64::*;

use super::{GgmlType, Operands};
use crate::f16::x86::cvtph_ps;

/// Runs the batch kernel `kernel::<R, G>` over every tile of `R` rows by
/// `4 * G` tokens, with the activation scales and offset terms of each group
/// of 4 tokens prepared once (see [`prepare_batch`]).
macro_rules! run_batch {
    ($kernel:ident, $r:expr, $g:expr, $ops:expr, $sums:expr) => {{
        const R: usize = $r;
        const G: usize = $g;
        let ops: Operands = $ops;
        let prepared = prepare_batch(&ops, $sums);
        let n_groups = (ops.n_tokens + 3) / 4;
        let mut r0 = 0;
        while r0 < ops.n_rows {
            let rows = (ops.n_rows - r0).min(R);
            let mut w = [ops.weights; R];
            for (r, ptr) in w.iter_mut().enumerate() {
                *ptr = ops.weights.add((r0 + r.min(rows - 1)) * ops.row_bytes);
            }
            let mut group0 = 0;
            while group0 < n_groups {
                let mut a = [[ops.acts; 4]; G];
                let mut terms = [prepared.as_ptr(); G];
                for g in 0..G {
                    // Past the last group, repeat it.
                    let group = (group0 + g).min(n_groups - 1);
                    a[g] = token_tile(&ops, 4 * group);
                    terms[g] = prepared.as_ptr().add(group * ops.n_blocks * 16);
                }
                let sums: [[[f32; 4]; G]; R] = $kernel::<R, G>(ops.n_blocks, w, a, terms);
                let t0 = 4 * group0;
                let tokens = (ops.n_tokens - t0).min(4 * G);
                for (r, row_sums) in sums.iter().enumerate().take(rows) {
                    for t in 0..tokens {
                        *ops.out.add((t0 + t) * ops.out_stride + r0 + r) = row_sums[t / 4][t % 4];
                    }
                }
                group0 += G;
            }
            r0 += R;
        }
    }};
}

/// Weight rows per batch tile.
const BATCH_ROWS: usize = 2;
/// Groups of 4 tokens per batch tile.
const BATCH_GROUPS: usize = 2;

/// Runs the one-token kernel `kernel::<G>` over tiles of `4 * G` rows,
/// with the activation terms of every block prepared once (see
/// [`prepare_decode`]).
macro_rules! run_decode {
    ($kernel:ident, $g:expr, $ops:expr, $sums:expr) => {{
        const G: usize = $g;
        const R: usize = 4 * G;
        let ops: Operands = $ops;
        // Decode runs a task per few rows, so the terms of a typical row
        // length go on the stack instead of the heap.
        let mut stack_terms = [0.0f32; 2 * STACK_DECODE_BLOCKS];
        let mut heap_terms = Vec::new();
        let terms: &mut [f32] = if ops.n_blocks <= STACK_DECODE_BLOCKS {
            &mut stack_terms[..2 * ops.n_blocks]
        } else {
            heap_terms.resize(2 * ops.n_blocks, 0.0);
            &mut heap_terms
        };
        prepare_decode(&ops, $sums, terms);
        let ahead = super::prefetch_distance(R * ops.row_bytes);
        let mut r0 = 0;
        while r0 < ops.n_rows {
            let rows = (ops.n_rows - r0).min(R);
            let mut w = [[ops.weights; 4]; G];
            for (g, group) in w.iter_mut().enumerate() {
                for (r, ptr) in group.iter_mut().enumerate() {
                    *ptr = ops.weights.add((r0 + (4 * g + r).min(rows - 1)) * ops.row_bytes);
                }
            }
            $kernel::<G>(ops.n_blocks, w, ops.acts, terms.as_ptr(), ahead, ops.out.add(r0), rows);
            r0 += R;
        }
    }};
}

/// Runs the one-token K-quant kernel `$kernel` over tiles of 4 rows.
macro_rules! run_k_decode {
    ($kernel:ident, $ops:expr) => {{
        let ops: Operands = $ops;
        let ahead = super::prefetch_distance(4 * ops.row_bytes);
        let mut r0 = 0;
        while r0 < ops.n_rows {
            let rows = (ops.n_rows - r0).min(4);
            let mut w = [ops.weights; 4];
            for (r, ptr) in w.iter_mut().enumerate() {
                *ptr = ops.weights.add((r0 + r.min(rows - 1)) * ops.row_bytes);
            }
            let mut sums = [0.0f32; 4];
            _mm_storeu_ps(sums.as_mut_ptr(), $kernel(ops.n_blocks, w, ops.acts, ahead));
            std::ptr::copy_nonoverlapping(sums.as_ptr(), ops.out.add(r0), rows);
            r0 += 4;
        }
    }};
}

/// Blocks per row whose decode terms fit in a stack buffer: rows of up to
/// 2048 elements. Longer rows allocate.
const STACK_DECODE_BLOCKS: usize = 64;

/// Groups of 4 rows per one-token tile: 1, 2 and 4 decoded at about the
/// same speed with `bench_quants` on one AMD EPYC core.
const DECODE_GROUPS: usize = 1;

/// Pointers to tokens `t0..t0 + 4`, repeating the last token past the end.
unsafe fn token_tile(ops: &Operands, t0: usize) -> [*const u8; 4] {
    let last = ops.n_tokens - 1;
    let mut a = [ops.acts; 4];
    for (t, ptr) in a.iter_mut().enumerate() {
        *ptr = ops.acts.add((t0 + t).min(last) * ops.act_row_bytes);
    }
    a
}

/// The offset term a batch kernel needs from each activation block.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ActSums {
    /// None (Q8_0 weights).
    None,
    /// `d * sum(q)` of a Q8_0 block, for weights stored with a +8 or +16
    /// bias (Q4_0, Q5_0).
    Q8_0,
    /// The stored `s` of a Q8_1 block, for weights with an offset `m`.
    Q8_1,
}

/// For every tile of 4 tokens and every block: 8 floats `[d_0, d_1, d_2,
/// d_3]` twice, then 8 floats of the offset terms in the same order, where
/// `d_t` is token `t`'s block scale.
#[target_feature(enable = "avx2,fma")]
unsafe fn prepare_batch(ops: &Operands, sums: ActSums) -> Vec<f32> {
    let block_bytes = act_block_bytes(sums);
    let n_tiles = (ops.n_tokens + 3) / 4;
    let mut prepared = vec![0.0f32; n_tiles * ops.n_blocks * 16];
    for (tile, terms) in prepared.chunks_exact_mut(ops.n_blocks * 16).enumerate() {
        let a = token_tile(ops, 4 * tile);
        for (b, block_terms) in terms.chunks_exact_mut(16).enumerate() {
            for t in 0..4 {
                let (d, offset) = act_terms(a[t].add(b * block_bytes), sums);
                block_terms[t] = d;
                block_terms[t + 4] = d;
                block_terms[t + 8] = offset;
                block_terms[t + 12] = offset;
            }
        }
    }
    prepared
}

/// Writes `[d, offset]` of every block of the first token to `prepared`,
/// computed as [`prepare_batch`] does, so one-token and batch results agree
/// bit for bit.
#[target_feature(enable = "avx2,fma")]
unsafe fn prepare_decode(ops: &Operands, sums: ActSums, prepared: &mut [f32]) {
    let block_bytes = act_block_bytes(sums);
    for (b, block_terms) in prepared.chunks_exact_mut(2).enumerate().take(ops.n_blocks) {
        let (d, offset) = act_terms(ops.acts.add(b * block_bytes), sums);
        block_terms[0] = d;
        block_terms[1] = offset;
    }
}

/// Bytes of a Q8_0 or Q8_1 activation block.
fn act_block_bytes(sums: ActSums) -> usize {
    if sums == ActSums::Q8_1 {
        36
    } else {
        34
    }
}

/// Reads the scale `d` and computes the offset term (see [`ActSums`]) of
/// the activation block at `block`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn act_terms(block: *const u8, sums: ActSums) -> (f32, f32) {
    let halves = std::ptr::read_unaligned(block as *const u32);
    let pair = _mm256_castps256_ps128(cvtph_ps(_mm_cvtsi32_si128(halves as i32)));
    let d = _mm_cvtss_f32(pair);
    let offset = match sums {
        ActSums::None => 0.0,
        ActSums::Q8_0 => d * sum_i8(block.add(2)) as f32,
        ActSums::Q8_1 => _mm_cvtss_f32(_mm_movehdup_ps(pair)),
    };
    (d, offset)
}

/// Sum of 32 signed bytes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn sum_i8(p: *const u8) -> i32 {
    let pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(1), load(p));
    hsum_epi32(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum_epi32(v: __m256i) -> i32 {
    let sum4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let sum2 = _mm_add_epi32(sum4, _mm_unpackhi_epi64(sum4, sum4));
    let sum1 = _mm_add_epi32(sum2, _mm_shuffle_epi32(sum2, 0b01));
    _mm_cvtsi128_si32(sum1)
}

/// Computes every product of `ops` if `ty` has a tile kernel, and returns
/// whether it had one.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C, and `ops` must describe valid
/// buffers of `ty` weights and `ty.vec_dot_type()` activations.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn gemm(ty: GgmlType, ops: Operands) -> bool {
    // One token (decode) shares each activation block between the rows of
    // a tile, and a batch reuses each unpacked weight block for 4 tokens
    // (Q8_0 tiles) or for all of them (panels). Both give every output the same
    // f32 operations in the same order.
    let single = ops.n_tokens == 1;
    match ty {
        GgmlType::Q8_0 if single => run_decode!(decode_q8_0, DECODE_GROUPS, ops, ActSums::None),
        GgmlType::Q8_0 => {
            if !super::avx2_panels::gemm(ty, ops) {
                run_batch!(batch_q8_0, BATCH_ROWS, BATCH_GROUPS, ops, ActSums::None)
            }
        }
        GgmlType::Q4_0 if single => run_decode!(decode_q4_0, DECODE_GROUPS, ops, ActSums::Q8_0),
        GgmlType::Q5_0 if single => run_decode!(decode_q5_0, DECODE_GROUPS, ops, ActSums::Q8_0),
        GgmlType::Q4_1 if single => run_decode!(decode_q4_1, DECODE_GROUPS, ops, ActSums::Q8_1),
        GgmlType::Q5_1 if single => run_decode!(decode_q5_1, DECODE_GROUPS, ops, ActSums::Q8_1),
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q4_1 | GgmlType::Q5_1 => return super::avx2_panels::gemm(ty, ops),
        GgmlType::Q4K if single => run_k_decode!(decode_q4_k, ops),
        GgmlType::Q6K if single => run_k_decode!(decode_q6_k, ops),
        GgmlType::Q4K | GgmlType::Q6K => return super::avx2_panels_k::gemm(ty, ops),
        _ => return false,
    }
    true
}

// ------------------------------------------------------------------ helpers

/// Prefetches what a one-token tile reads at block `b`, `ahead` bytes
/// further on, which is the same block of the rows some tiles down (see
/// `super::prefetch_distance`). A tile's rows are adjacent, so they form
/// one range that the tile reads `step_bytes` (one block of each row) per
/// step. The step's share of that range is prefetched as one stream, a
/// line per 64 bytes, which touches each line once or twice instead of once
/// per row and block. One core then streamed Q8_0 rows of 640 elements at
/// 29 GB/s instead of 10 (`bench_quants 640`, AMD EPYC Zen 4). Batch kernels
/// reuse each row for many tokens, so they skip it. The addresses may lie
/// past the matrix, because prefetches never fault.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn prefetch_tile<const T: usize>(rows: *const u8, ahead: usize, b: usize, step_bytes: usize) {
    if T == 1 {
        let step = rows.wrapping_add(ahead + b * step_bytes);
        let mut line = 0;
        while line < step_bytes {
            _mm_prefetch(step.wrapping_add(line) as *const i8, _MM_HINT_T0);
            line += 64;
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// Loads the two consecutive binary16 values at `p` (a scale and an
/// offset): the first into all 8 lanes, the second as a scalar.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn f16_pair(p: *const u8) -> (__m256, f32) {
    let bits = std::ptr::read_unaligned(p as *const u32);
    let wide = _mm256_castps256_ps128(cvtph_ps(_mm_cvtsi32_si128(bits as i32)));
    let second = _mm_cvtss_f32(_mm_movehdup_ps(wide));
    (_mm256_broadcastss_ps(wide), second)
}

/// 16 packed bytes to 32 nibbles: lanes 0..16 are the low nibbles, lanes
/// 16..32 the high ones (the Q4_0 element order).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn unpack_nibbles(p: *const u8) -> __m256i {
    let bytes = _mm_loadu_si128(p as *const __m128i);
    let both = _mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// All-ones bytes in lane `j` where bit `j` of the little-endian u32 at `p`
/// is set, else 0.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn bit_mask(p: *const u8) -> __m256i {
    let bits = std::ptr::read_unaligned(p as *const u32);
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0),
    );
    let select = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select)
}

// ------------------------------------------------------------ legacy quants

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn signed_q8_0(block: *const u8) -> __m256i {
    load(block.add(2))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn unsigned_q4_1(block: *const u8) -> __m256i {
    unpack_nibbles(block.add(4))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn unsigned_q5_1(block: *const u8) -> __m256i {
    let high = _mm256_and_si256(bit_mask(block.add(4)), _mm256_set1_epi8(0x10));
    _mm256_or_si256(unpack_nibbles(block.add(8)), high)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn unsigned_q4_0(block: *const u8) -> __m256i {
    unpack_nibbles(block.add(2))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn unsigned_q5_0(block: *const u8) -> __m256i {
    let high = _mm256_and_si256(bit_mask(block.add(2)), _mm256_set1_epi8(0x10));
    _mm256_or_si256(unpack_nibbles(block.add(6)), high)
}

/// Sums of the 16 byte products of each 128-bit half for 4 tokens:
/// `[t0, t1, t2, t3]` of elements 0..16, then of elements 16..32, for
/// signed quants of any size: the signs move onto the activations and the
/// pair sums widen to i32 before any addition.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn token_sums_signed(x: __m256i, y: &[__m256i; 4]) -> __m256i {
    let ones = _mm256_set1_epi16(1);
    let abs_x = _mm256_sign_epi8(x, x);
    let mut sums = [_mm256_setzero_si256(); 4];
    for t in 0..4 {
        sums[t] = _mm256_madd_epi16(_mm256_maddubs_epi16(abs_x, _mm256_sign_epi8(y[t], x)), ones);
    }
    _mm256_hadd_epi32(_mm256_hadd_epi32(sums[0], sums[1]), _mm256_hadd_epi32(sums[2], sums[3]))
}

/// Adds the two 128-bit halves of each accumulator and scales the offset
/// terms: `sums[r][g][t] = acc[r][g][t] + acc[r][g][t + 4] + coef *
/// offsets[r][g][t]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn finish_batch<const R: usize, const G: usize>(
    acc: &[[__m256; G]; R],
    offsets: &[[__m256; G]; R],
    coef: f32,
) -> [[[f32; 4]; G]; R] {
    let mut sums = [[[0.0f32; 4]; G]; R];
    for r in 0..R {
        for g in 0..G {
            _mm_storeu_ps(sums[r][g].as_mut_ptr(), finish_lanes(acc[r][g], offsets[r][g], coef));
        }
    }
    sums
}

/// Returns `acc[t] + acc[t + 4] + coef * offsets[t]` for `t` in 0..4, the
/// four results of one accumulator pair.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn finish_lanes(acc: __m256, offsets: __m256, coef: f32) -> __m128 {
    let halves = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    _mm_fmadd_ps(_mm_set1_ps(coef), _mm256_castps256_ps128(offsets), halves)
}

/// Batch kernel over `R` rows and `G` groups of 4 tokens for weights with
/// one binary16 scale `d` at offset 0 (and an offset `m` at 2 when
/// `$has_m`). `terms[g]` points at group `g`'s prepared activation terms
/// (see `prepare_batch`). The result is `sum_b d_w * d_a * dot(q_w, q_a) +
/// coef * sum_b w_b * offset_b`, where `w_b` is `m` if present, else `d`.
macro_rules! batch_kernel {
    ($name:ident, $block_bytes:expr, $act_bytes:expr, $qs:expr, $unpack:ident, $sums:ident, $has_m:expr, $coef:expr) => {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name<const R: usize, const G: usize>(
            n_blocks: usize,
            w: [*const u8; R],
            a: [[*const u8; 4]; G],
            terms: [*const f32; G],
        ) -> [[[f32; 4]; G]; R] {
            let mut acc = [[_mm256_setzero_ps(); G]; R];
            let mut offsets = [[_mm256_setzero_ps(); G]; R];
            for b in 0..n_blocks {
                for r in 0..R {
                    let block = w[r].add(b * $block_bytes);
                    let x = $unpack(block);
                    let (dx, m) = f16_pair(block);
                    for g in 0..G {
                        let mut y = [_mm256_setzero_si256(); 4];
                        for t in 0..4 {
                            y[t] = load(a[g][t].add(b * $act_bytes + $qs));
                        }
                        let sums = $sums(x, &y);
                        let dy = _mm256_loadu_ps(terms[g].add(16 * b));
                        acc[r][g] = _mm256_fmadd_ps(_mm256_mul_ps(dx, dy), _mm256_cvtepi32_ps(sums), acc[r][g]);
                        let offset_terms = _mm256_loadu_ps(terms[g].add(16 * b + 8));
                        if $has_m {
                            offsets[r][g] = _mm256_fmadd_ps(_mm256_set1_ps(m), offset_terms, offsets[r][g]);
                        } else if $coef != 0.0 {
                            offsets[r][g] = _mm256_fmadd_ps(dx, offset_terms, offsets[r][g]);
                        }
                    }
                }
            }
            finish_batch(&acc, &offsets, $coef)
        }
    };
}

batch_kernel!(batch_q8_0, 34, 34, 2, signed_q8_0, token_sums_signed, false, 0.0);

/// [`token_sums_signed`] with 4 weight rows against one token.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_sums_signed(x: &[__m256i; 4], y: __m256i) -> __m256i {
    let ones = _mm256_set1_epi16(1);
    let mut sums = [_mm256_setzero_si256(); 4];
    for r in 0..4 {
        let abs_x = _mm256_sign_epi8(x[r], x[r]);
        sums[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(abs_x, _mm256_sign_epi8(y, x[r])), ones);
    }
    _mm256_hadd_epi32(_mm256_hadd_epi32(sums[0], sums[1]), _mm256_hadd_epi32(sums[2], sums[3]))
}

/// Converts the binary16 scales `d` (offset 0) and offsets `m` (offset 2)
/// of 4 blocks to `[d_0, d_1, d_2, d_3]` and `[m_0, m_1, m_2, m_3]`, each twice.
/// Blocks without an `m` get their first two quant bytes read instead,
/// which the caller ignores.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_scales(blocks: &[*const u8; 4]) -> (__m256, __m256) {
    let word = |r: usize| std::ptr::read_unaligned(blocks[r] as *const u32) as i32;
    let pairs = cvtph_ps(_mm_set_epi32(word(3), word(2), word(1), word(0)));
    let d = _mm256_permutevar8x32_ps(pairs, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
    let m = _mm256_permutevar8x32_ps(pairs, _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7));
    (d, m)
}

/// One-token kernel over `G` groups of 4 rows, the transpose of
/// `batch_kernel`: rows take the lanes that tokens take there, so every
/// output goes through the same f32 operations, in the same order, as in a
/// batch (the product requires bit-identical results for a token evaluated
/// alone and inside a prompt). `terms` holds the activation's `[d, offset]`
/// per block (see [`prepare_decode`]). The first `n_rows` results go to
/// `out`.
///
/// `$sums(blocks, y)` returns the i32 sums of the 4 rows' blocks against
/// the activation quants at `y`. `$scales` converts the rows' `d` and `m`
/// to the same lanes, and `$finish` adds each row's two halves and its
/// offset term. Q8_0 ([`sums_q8_0`], [`row_scales`], [`finish_lanes`]) keeps
/// the lanes of the batch kernels, while the unsigned formats use the lanes
/// of [`pair_row_sums`].
macro_rules! decode_kernel {
    ($name:ident, $block_bytes:expr, $act_bytes:expr, $qs:expr, $sums:ident, $scales:ident, $finish:ident, $has_m:expr, $coef:expr) => {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name<const G: usize>(
            n_blocks: usize,
            w: [[*const u8; 4]; G],
            a: *const u8,
            terms: *const f32,
            ahead: usize,
            out: *mut f32,
            n_rows: usize,
        ) {
            let mut acc = [_mm256_setzero_ps(); G];
            let mut offsets = [_mm256_setzero_ps(); G];
            for b in 0..n_blocks {
                prefetch_tile::<1>(w[0][0], ahead, b, 4 * G * $block_bytes);
                let y = a.add(b * $act_bytes + $qs);
                let dy = _mm256_broadcast_ss(&*terms.add(2 * b));
                let offset_term = _mm256_broadcast_ss(&*terms.add(2 * b + 1));
                for g in 0..G {
                    let mut blocks = [w[g][0]; 4];
                    for r in 0..4 {
                        blocks[r] = w[g][r].add(b * $block_bytes);
                    }
                    let sums = $sums(&blocks, y);
                    let (dx, m) = $scales(&blocks);
                    acc[g] = _mm256_fmadd_ps(_mm256_mul_ps(dx, dy), _mm256_cvtepi32_ps(sums), acc[g]);
                    if $has_m {
                        offsets[g] = _mm256_fmadd_ps(m, offset_term, offsets[g]);
                    } else if $coef != 0.0 {
                        offsets[g] = _mm256_fmadd_ps(dx, offset_term, offsets[g]);
                    }
                }
            }
            // Results go straight to `out`: returning them as an array cost a
            // `memcpy` call per tile.
            for g in 0..G {
                let total = $finish(acc[g], offsets[g], $coef);
                if 4 * g + 4 <= n_rows {
                    _mm_storeu_ps(out.add(4 * g), total);
                } else {
                    let mut partial = [0.0f32; 4];
                    _mm_storeu_ps(partial.as_mut_ptr(), total);
                    for r in 4 * g..n_rows {
                        *out.add(r) = partial[r - 4 * g];
                    }
                }
            }
        }
    };
}

/// Sums 4 Q8_0 blocks against the activation quants at `y` with
/// [`row_sums_signed`].
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn sums_q8_0(blocks: &[*const u8; 4], y: *const u8) -> __m256i {
    let x = [signed_q8_0(blocks[0]), signed_q8_0(blocks[1]), signed_q8_0(blocks[2]), signed_q8_0(blocks[3])];
    row_sums_signed(&x, load(y))
}

decode_kernel!(decode_q8_0, 34, 34, 2, sums_q8_0, row_scales, finish_lanes, false, 0.0);

// -------------------------------------------- one token, unsigned 4-5 bits

/// Unpacks the nibbles of two blocks' 16 quant bytes (`a` and `b`) into
/// `[a 0..16 | b 0..16]` (low nibbles, elements 0..16) and `[a 16..32 | b
/// 16..32]` (high nibbles), one register each.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pair_nibbles(a: *const u8, b: *const u8) -> (__m256i, __m256i) {
    let bytes = _mm256_set_m128i(_mm_loadu_si128(b as *const __m128i), _mm_loadu_si128(a as *const __m128i));
    let low_nibbles = _mm256_set1_epi8(0x0f);
    (_mm256_and_si256(bytes, low_nibbles), _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low_nibbles))
}

/// Spreads the fifth bits of two blocks (the little-endian u32 at `a` and
/// at `b`) to 0x10 bytes in the lanes of [`pair_nibbles`]. The first
/// register contains bits 0..16 of each block, the second bits 16..32.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pair_high_bits(a: *const u8, b: *const u8) -> (__m256i, __m256i) {
    let word = |p: *const u8| std::ptr::read_unaligned(p as *const u32) as i32;
    let bits = _mm256_set_m128i(_mm_set1_epi32(word(b)), _mm_set1_epi32(word(a)));
    let select = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
    let fifth = _mm256_set1_epi8(0x10);
    let spread = |bytes: __m256i| {
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(bits, bytes), select), select);
        _mm256_and_si256(set, fifth)
    };
    let low = spread(_mm256_set_epi64x(0x0101010101010101, 0, 0x0101010101010101, 0));
    let high = spread(_mm256_set_epi64x(
        0x0303030303030303,
        0x0202020202020202,
        0x0303030303030303,
        0x0202020202020202,
    ));
    (low, high)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pair_q4_0(a: *const u8, b: *const u8) -> (__m256i, __m256i) {
    pair_nibbles(a.add(2), b.add(2))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pair_q4_1(a: *const u8, b: *const u8) -> (__m256i, __m256i) {
    pair_nibbles(a.add(4), b.add(4))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pair_q5_0(a: *const u8, b: *const u8) -> (__m256i, __m256i) {
    pair_q5(a, b, 2, 6)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pair_q5_1(a: *const u8, b: *const u8) -> (__m256i, __m256i) {
    pair_q5(a, b, 4, 8)
}

/// Unpacks two 5-bit blocks whose fifth bits start at byte `bits_at` and
/// whose nibbles start at byte `nibbles_at` of each block.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pair_q5(a: *const u8, b: *const u8, bits_at: usize, nibbles_at: usize) -> (__m256i, __m256i) {
    let (low, high) = pair_nibbles(a.add(nibbles_at), b.add(nibbles_at));
    let (low_bits, high_bits) = pair_high_bits(a.add(bits_at), b.add(bits_at));
    (_mm256_or_si256(low, low_bits), _mm256_or_si256(high, high_bits))
}

/// Sums of 16 byte products per row and half for 4 rows against the
/// activation quants at `y`, from the [`pair_nibbles`] layout of rows 0
/// and 1 (`x01`) and of rows 2 and 3 (`x23`). Each half of the activation
/// is broadcast to both 128-bit lanes. Returns `[r0 low, r0 high, r2 low,
/// r2 high | r1 low, r1 high, r3 low, r3 high]`: the same i32 half sums
/// that the panel kernels of `avx2_panels.rs` compute per row and token. The
/// `_mm256_maddubs_epi16` pair sums stay within +-8191 (unsigned quants up
/// to 31 times activations in -127..=127 give at most 7874), so the 16-bit
/// horizontal add cannot overflow.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pair_row_sums(x01: (__m256i, __m256i), x23: (__m256i, __m256i), y: *const u8) -> __m256i {
    let y_low = _mm256_broadcastsi128_si256(_mm_loadu_si128(y as *const __m128i));
    let y_high = _mm256_broadcastsi128_si256(_mm_loadu_si128(y.add(16) as *const __m128i));
    let ones = _mm256_set1_epi16(1);
    let t01 = _mm256_hadd_epi16(_mm256_maddubs_epi16(x01.0, y_low), _mm256_maddubs_epi16(x01.1, y_high));
    let t23 = _mm256_hadd_epi16(_mm256_maddubs_epi16(x23.0, y_low), _mm256_maddubs_epi16(x23.1, y_high));
    _mm256_hadd_epi32(_mm256_madd_epi16(t01, ones), _mm256_madd_epi16(t23, ones))
}

/// Converts the scales like [`row_scales`], but to the lanes of
/// [`pair_row_sums`]: `[d0, d0, d2, d2 | d1, d1, d3, d3]` and the same
/// for `m`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn pair_row_scales(blocks: &[*const u8; 4]) -> (__m256, __m256) {
    let word = |r: usize| std::ptr::read_unaligned(blocks[r] as *const u32) as i32;
    let pairs = cvtph_ps(_mm_set_epi32(word(3), word(2), word(1), word(0)));
    let d = _mm256_permutevar8x32_ps(pairs, _mm256_setr_epi32(0, 0, 4, 4, 2, 2, 6, 6));
    let m = _mm256_permutevar8x32_ps(pairs, _mm256_setr_epi32(1, 1, 5, 5, 3, 3, 7, 7));
    (d, m)
}

/// Returns `acc[r low] + acc[r high] + coef * offsets[r]` for rows 0..4
/// from the lanes of [`pair_row_sums`], with the f32 operations of
/// [`finish_lanes`] in the same order.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn finish_pair_lanes(acc: __m256, offsets: __m256, coef: f32) -> __m128 {
    let low = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(acc, _mm256_setr_epi32(0, 4, 2, 6, 0, 4, 2, 6)));
    let high = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(acc, _mm256_setr_epi32(1, 5, 3, 7, 1, 5, 3, 7)));
    let offsets = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(offsets, _mm256_setr_epi32(0, 4, 2, 6, 0, 4, 2, 6)));
    _mm_fmadd_ps(_mm_set1_ps(coef), offsets, _mm_add_ps(low, high))
}

/// Defines `$name`, which sums 4 blocks of an unsigned format, unpacked two
/// at a time by `$pair`, with [`pair_row_sums`]. Two rows share each unpacking register, and each half
/// of the activation is broadcast once, which saves about 6 of 53
/// operations per 4-row step against unpacking row by row (an estimate from
/// counting them). One core decoded rows of 1024 in L2 4% (Q4_0) and 9%
/// (Q4_1) faster, Q5_0 and Q5_1 1% (`bench_quants`, AMD EPYC Zen 4).
macro_rules! pair_sums {
    ($name:ident, $pair:ident) => {
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name(blocks: &[*const u8; 4], y: *const u8) -> __m256i {
            pair_row_sums($pair(blocks[0], blocks[1]), $pair(blocks[2], blocks[3]), y)
        }
    };
}

pair_sums!(sums_q4_0, pair_q4_0);
pair_sums!(sums_q5_0, pair_q5_0);
pair_sums!(sums_q4_1, pair_q4_1);
pair_sums!(sums_q5_1, pair_q5_1);

decode_kernel!(decode_q4_0, 18, 34, 2, sums_q4_0, pair_row_scales, finish_pair_lanes, false, -8.0);
decode_kernel!(decode_q5_0, 22, 34, 2, sums_q5_0, pair_row_scales, finish_pair_lanes, false, -16.0);
decode_kernel!(decode_q4_1, 20, 36, 4, sums_q4_1, pair_row_scales, finish_pair_lanes, true, 1.0);
decode_kernel!(decode_q5_1, 24, 36, 4, sums_q5_1, pair_row_scales, finish_pair_lanes, true, 1.0);

// ---------------------------------------------------------------- K-quants

/// Q8_K block layout: f32 `d`, 256 quants, 16 i16 group sums.
pub(super) const Q8K_BYTES: usize = 292;
pub(super) const Q8K_QS: usize = 4;
pub(super) const Q8K_BSUMS: usize = 260;

/// `_mm256_shuffle_epi8` masks: `WORD_SPLAT[g]` broadcasts i16 word `g` of
/// each 128-bit lane to the whole lane.
static WORD_SPLAT: [[u8; 32]; 8] = word_splat_masks();

/// `PAIR_SPLAT[k]` broadcasts word `2k` in the low 128-bit lane and word
/// `2k + 1` in the high lane: the scales of the two 16-element groups of a
/// 32-byte Q6_K vector after `_mm256_maddubs_epi16`.
static PAIR_SPLAT: [[u8; 32]; 4] = pair_splat_masks();

const fn word_splat_masks() -> [[u8; 32]; 8] {
    let mut masks = [[0u8; 32]; 8];
    let mut g = 0;
    while g < 8 {
        let mut i = 0;
        while i < 32 {
            masks[g][i] = (2 * g + i % 2) as u8;
            i += 1;
        }
        g += 1;
    }
    masks
}

const fn pair_splat_masks() -> [[u8; 32]; 4] {
    let mut masks = [[0u8; 32]; 4];
    let mut k = 0;
    while k < 4 {
        let mut i = 0;
        while i < 32 {
            let word = 2 * k + i / 16;
            masks[k][i] = (2 * word + i % 2) as u8;
            i += 1;
        }
        k += 1;
    }
    masks
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn mask(bytes: &[u8; 32]) -> __m256i {
    load(bytes.as_ptr())
}

/// Unpacks the 12 packed 6-bit scales and mins of a Q4_K block into 8
/// bytes each (see `k4_scales_mins`), with 32-bit word operations.
#[inline]
fn k4_scales_mins_u64(p: *const u8) -> (u64, u64) {
    // SAFETY: the caller passes a pointer to the 12 scale bytes of a block.
    let word = |i: usize| unsafe { std::ptr::read_unaligned(p.add(4 * i) as *const u32) };
    let (u0, u1, u2) = (word(0), word(1), word(2));
    let low6 = 0x3f3f_3f3f;
    let scales_high = (u2 & 0x0f0f_0f0f) | (((u0 >> 6) & 0x0303_0303) << 4);
    let mins_high = ((u2 >> 4) & 0x0f0f_0f0f) | (((u1 >> 6) & 0x0303_0303) << 4);
    let scales = (u0 & low6) as u64 | (scales_high as u64) << 32;
    let mins = (u1 & low6) as u64 | (mins_high as u64) << 32;
    (scales, mins)
}

/// Adds the 8 i32 lanes of each of 4 vectors: lane `r` of the result is
/// the sum of `v[r]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn sum_rows(v: [__m256i; 4]) -> __m128i {
    let quads = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    _mm_add_epi32(_mm256_castsi256_si128(quads), _mm256_extracti128_si256(quads, 1))
}

/// Converts the binary16 at offset `at` of each of 4 blocks to f32.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn k_scale(blocks: &[*const u8; 4], at: usize) -> __m128 {
    // Q6_K's scale is the last 2 bytes of its block, so a read wider than
    // 16 bits would pass the end of the last row.
    let half = |r: usize| std::ptr::read_unaligned(blocks[r].add(at) as *const u16) as i32;
    let halves = cvtph_ps(_mm_set_epi32(0, 0, half(2) | half(3) << 16, half(0) | half(1) << 16));
    _mm256_castps256_ps128(halves)
}

/// Converts the binary16 pairs at offset `at` of 4 blocks to f32: the
/// first of each pair in the first result, the second in the other.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn k_scales(blocks: &[*const u8; 4], at: usize) -> (__m128, __m128) {
    let word = |r: usize| std::ptr::read_unaligned(blocks[r].add(at) as *const u32) as i32;
    let pairs = cvtph_ps(_mm_set_epi32(word(3), word(2), word(1), word(0)));
    let first = _mm256_permutevar8x32_ps(pairs, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
    let second = _mm256_permutevar8x32_ps(pairs, _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7));
    (_mm256_castps256_ps128(first), _mm256_castps256_ps128(second))
}

/// Multiplies 4 Q4_K rows with one Q8_K token. Per block and row, the
/// exact integer sums `sum_g scale_g * sum(q_w * q_a)` and `sum_g min_g *
/// bsum_pair_g` (a 32-element group's bsum pair is the sum of its two
/// 16-element Q8_K group sums) are scaled by `d_w * d_a` and `dmin_w *
/// d_a`, as in the batch panels of `avx2_panels_k.rs`.
#[target_feature(enable = "avx2,fma")]
unsafe fn decode_q4_k(n_blocks: usize, w: [*const u8; 4], a: *const u8, ahead: usize) -> __m128 {
    const BLOCK_BYTES: usize = 144;
    let low_nibbles = _mm256_set1_epi8(0x0f);
    let mut acc = _mm_setzero_ps();
    for b in 0..n_blocks {
        let y_block = a.add(b * Q8K_BYTES);
        let dy = _mm_set1_ps(std::ptr::read_unaligned(y_block as *const f32));
        let bsums = load(y_block.add(Q8K_BSUMS));
        let bsum_pairs =
            _mm256_castsi128_si256(_mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1)));
        prefetch_tile::<1>(w[0], ahead, b, 4 * BLOCK_BYTES);

        let mut blocks = [w[0]; 4];
        let mut sums = [_mm256_setzero_si256(); 4];
        let mut min_sums = [_mm256_setzero_si256(); 4];
        for r in 0..4 {
            let block = w[r].add(b * BLOCK_BYTES);
            blocks[r] = block;
            let (scales, mins) = k4_scales_mins_u64(block.add(4));
            let scales16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(scales as i64));
            let scales16 = _mm256_broadcastsi128_si256(scales16);
            // Upper 8 words are zero, so the upper half of each madd is too.
            let mins16 = _mm256_cvtepu8_epi16(_mm_cvtsi64_si128(mins as i64));
            min_sums[r] = _mm256_madd_epi16(mins16, bsum_pairs);
            for chunk in 0..4 {
                let q = load(block.add(16 + 32 * chunk));
                let low = _mm256_and_si256(q, low_nibbles);
                let high = _mm256_and_si256(_mm256_srli_epi16(q, 4), low_nibbles);
                let scale_low = _mm256_shuffle_epi8(scales16, mask(&WORD_SPLAT[2 * chunk]));
                let scale_high = _mm256_shuffle_epi8(scales16, mask(&WORD_SPLAT[2 * chunk + 1]));
                let y = y_block.add(Q8K_QS + 64 * chunk);
                let p_low = _mm256_maddubs_epi16(low, load(y));
                let p_high = _mm256_maddubs_epi16(high, load(y.add(32)));
                let s = _mm256_add_epi32(_mm256_madd_epi16(p_low, scale_low), _mm256_madd_epi16(p_high, scale_high));
                sums[r] = _mm256_add_epi32(sums[r], s);
            }
        }

        let (dx, dmin) = k_scales(&blocks, 0);
        acc = _mm_fmadd_ps(_mm_mul_ps(dx, dy), _mm_cvtepi32_ps(sum_rows(sums)), acc);
        acc = _mm_fnmadd_ps(_mm_mul_ps(dmin, dy), _mm_cvtepi32_ps(sum_rows(min_sums)), acc);
    }
    acc
}

/// Multiplies 4 Q6_K rows with one Q8_K token, using the unsigned 6-bit
/// quants. Per block and row, the exact integer sum `sum_g scale_g *
/// sum(q_w * q_a) - 32 * sum_g scale_g * bsum_g` is scaled by `d_w * d_a`,
/// as in the batch panels of `avx2_panels_k.rs`.
#[target_feature(enable = "avx2,fma")]
unsafe fn decode_q6_k(n_blocks: usize, w: [*const u8; 4], a: *const u8, ahead: usize) -> __m128 {
    const BLOCK_BYTES: usize = 210;
    const SCALES: usize = 192;
    const D: usize = 208;
    let mut acc = _mm_setzero_ps();
    for b in 0..n_blocks {
        let y_block = a.add(b * Q8K_BYTES);
        let dy = _mm_set1_ps(std::ptr::read_unaligned(y_block as *const f32));
        let bsums = load(y_block.add(Q8K_BSUMS));
        prefetch_tile::<1>(w[0], ahead, b, 4 * BLOCK_BYTES);

        let mut blocks = [w[0]; 4];
        let mut sums = [_mm256_setzero_si256(); 4];
        for r in 0..4 {
            let block = w[r].add(b * BLOCK_BYTES);
            blocks[r] = block;
            let scales8 = _mm_loadu_si128(block.add(SCALES) as *const __m128i);
            let scales16 = _mm256_cvtepi8_epi16(scales8);
            sums[r] = _mm256_sub_epi32(sums[r], _mm256_slli_epi32(_mm256_madd_epi16(scales16, bsums), 5));
            for half in 0..2 {
                let half_scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(if half == 0 {
                    scales16
                } else {
                    _mm256_permute2x128_si256(scales16, scales16, 0x11)
                }));
                let values = q6_k_values(block, half);
                for (k, &value) in values.iter().enumerate() {
                    let scale = _mm256_shuffle_epi8(half_scales, mask(&PAIR_SPLAT[k]));
                    let y = y_block.add(Q8K_QS + 128 * half + 32 * k);
                    let products = _mm256_maddubs_epi16(value, load(y));
                    sums[r] = _mm256_add_epi32(sums[r], _mm256_madd_epi16(products, scale));
                }
            }
        }

        let dx = k_scale(&blocks, D);
        acc = _mm_fmadd_ps(_mm_mul_ps(dx, dy), _mm_cvtepi32_ps(sum_rows(sums)), acc);
    }
    acc
}

/// Unpacks half `half` (elements `128 * half..128 * half + 128`) of a Q6_K
/// block to unsigned 6-bit quants, 32 consecutive elements per vector.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn q6_k_values(block: *const u8, half: usize) -> [__m256i; 4] {
    const QH: usize = 128;
    let low_nibbles = _mm256_set1_epi8(0x0f);
    let high_bits = _mm256_set1_epi8(0x30);
    let ql0 = load(block.add(64 * half));
    let ql1 = load(block.add(64 * half + 32));
    let qh = load(block.add(QH + 32 * half));
    [
        _mm256_or_si256(_mm256_and_si256(ql0, low_nibbles), _mm256_and_si256(_mm256_slli_epi16(qh, 4), high_bits)),
        _mm256_or_si256(_mm256_and_si256(ql1, low_nibbles), _mm256_and_si256(_mm256_slli_epi16(qh, 2), high_bits)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low_nibbles), _mm256_and_si256(qh, high_bits)),
        _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low_nibbles),
            _mm256_and_si256(_mm256_srli_epi16(qh, 2), high_bits),
        ),
    ]
}
