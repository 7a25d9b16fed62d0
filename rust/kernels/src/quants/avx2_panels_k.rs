//! AVX2 batch kernels for Q4_K and Q6_K over packed 8-row weight panels
//! (see `avx2_panels.rs` for the panel layout of the quants).
//!
//! A panel block contains each row's super-block as 8 chunks of 32
//! elements, each chunk as 8 transposed vectors: vector `k` contains quants
//! `4k..4k + 4` of every row. The rows' scales are widened to i16 pairs, so
//! `_mm256_madd_epi16` applies them lane by lane.
//!
//! Per super-block, row and token, the kernels form the exact integer sums
//! that the one-token kernels `decode_q4_k` and `decode_q6_k` of
//! `avx2_tiles.rs` form, and scale them with the same f32 operations. So a
//! token's results do not depend on its batch.

use std::arch::x86_64::*;

use super::avx2_panels::{quad, row_halves, store_rows, transpose_dwords, PANEL_ROWS, TOKENS};
use super::avx2_tiles::{q6_k_values, Q8K_BSUMS, Q8K_BYTES, Q8K_QS};
use super::{k4_scales_mins, GgmlType, Operands};

/// 32-element chunks per super-block.
const CHUNKS: usize = 8;

/// Vectors of transposed quants per super-block.
const QUANT_VECTORS: usize = CHUNKS * 8;

/// Q4_K panel block: quants, the scale and the min of each chunk (as i16
/// pairs), then `d` and `dmin`.
const Q4K_VECTORS: usize = QUANT_VECTORS + 2 * CHUNKS + 2;

/// Q6_K panel block: quants, the scale of each 16-element group (as i16
/// pairs), the scales of groups `2k` and `2k + 1` side by side, then `d`.
const Q6K_VECTORS: usize = QUANT_VECTORS + 16 + 8 + 1;

/// Computes the batch products of Q4_K and Q6_K weights, and returns false
/// for other formats.
///
/// # Safety
/// As `avx2_tiles::gemm`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn gemm(ty: GgmlType, ops: Operands) -> bool {
    match ty {
        GgmlType::Q4K => run(&ops, Q4K_VECTORS, pack_q4_k, panel_q4_k),
        GgmlType::Q6K => run(&ops, Q6K_VECTORS, pack_q6_k, panel_q6_k),
        _ => return false,
    }
    true
}

/// Packs the rows at `rows` into one panel block per super-block.
type Pack = unsafe fn(n_blocks: usize, rows: &[*const u8; PANEL_ROWS], panel: &mut [__m256i]);

/// Multiplies a panel with `TOKENS` tokens (pointers to their Q8_K rows)
/// and returns one vector of rows per token.
type Kernel = unsafe fn(n_blocks: usize, panel: &[__m256i], acts: [*const u8; TOKENS]) -> [__m256; TOKENS];

#[target_feature(enable = "avx2,fma")]
unsafe fn run(ops: &Operands, block_vectors: usize, pack: Pack, kernel: Kernel) {
    let mut panel = vec![_mm256_setzero_si256(); ops.n_blocks * block_vectors];
    let mut r0 = 0;
    while r0 < ops.n_rows {
        // Calling `avx2_panels::panel_rows` here instead made LLVM
        // inline the kernels into this loop, and Q4_K ran about 20% slower
        // (`bench_quants`, rows of 2048).
        let rows = (ops.n_rows - r0).min(PANEL_ROWS);
        let mut row_ptrs = [ops.weights; PANEL_ROWS];
        for (r, ptr) in row_ptrs.iter_mut().enumerate() {
            *ptr = ops.weights.add((r0 + r.min(rows - 1)) * ops.row_bytes);
        }
        pack(ops.n_blocks, &row_ptrs, &mut panel);

        let mut t0 = 0;
        while t0 < ops.n_tokens {
            let tokens = (ops.n_tokens - t0).min(TOKENS);
            let mut acts = [ops.acts; TOKENS];
            for (t, act) in acts.iter_mut().enumerate() {
                // Past the last token, repeat it.
                *act = ops.acts.add((t0 + t.min(tokens - 1)) * ops.act_row_bytes);
            }
            let sums = kernel(ops.n_blocks, &panel, acts);
            for (t, &token_sums) in sums.iter().enumerate().take(tokens) {
                store_rows(ops.out.add((t0 + t) * ops.out_stride + r0), token_sums, rows);
            }
            t0 += TOKENS;
        }
        r0 += PANEL_ROWS;
    }
}

/// Returns a vector with `values[r]` in both i16 halves of lane `r`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn i16_pairs(values: [i16; PANEL_ROWS]) -> __m256i {
    i16_lanes(values, values)
}

/// Returns a vector with `low[r]` in the low i16 half of lane `r` and
/// `high[r]` in the high half.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn i16_lanes(low: [i16; PANEL_ROWS], high: [i16; PANEL_ROWS]) -> __m256i {
    let mut lanes = [0u32; PANEL_ROWS];
    for r in 0..PANEL_ROWS {
        lanes[r] = (low[r] as u16 as u32) | (high[r] as u16 as u32) << 16;
    }
    _mm256_loadu_si256(lanes.as_ptr() as *const __m256i)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn pack_q4_k(n_blocks: usize, rows: &[*const u8; PANEL_ROWS], panel: &mut [__m256i]) {
    const BLOCK_BYTES: usize = 144;
    let low_nibbles = _mm256_set1_epi8(0x0f);
    for (b, packed) in panel.chunks_exact_mut(Q4K_VECTORS).enumerate().take(n_blocks) {
        let mut blocks = [rows[0]; PANEL_ROWS];
        for r in 0..PANEL_ROWS {
            blocks[r] = rows[r].add(b * BLOCK_BYTES);
        }

        // The low nibbles of bytes 32j..32j + 32 are chunk 2j, the high
        // nibbles chunk 2j + 1.
        for j in 0..4 {
            let mut low = [_mm256_setzero_si256(); PANEL_ROWS];
            let mut high = [_mm256_setzero_si256(); PANEL_ROWS];
            for r in 0..PANEL_ROWS {
                let q = _mm256_loadu_si256(blocks[r].add(16 + 32 * j) as *const __m256i);
                low[r] = _mm256_and_si256(q, low_nibbles);
                high[r] = _mm256_and_si256(_mm256_srli_epi16(q, 4), low_nibbles);
            }
            packed[16 * j..16 * j + 8].copy_from_slice(&transpose_dwords(low));
            packed[16 * j + 8..16 * j + 16].copy_from_slice(&transpose_dwords(high));
        }

        let mut scales = [[0i16; PANEL_ROWS]; CHUNKS];
        let mut mins = [[0i16; PANEL_ROWS]; CHUNKS];
        for r in 0..PANEL_ROWS {
            let (row_scales, row_mins) = k4_scales_mins(&*(blocks[r].add(4) as *const [u8; 12]));
            for c in 0..CHUNKS {
                scales[c][r] = row_scales[c] as i16;
                mins[c][r] = row_mins[c] as i16;
            }
        }
        for c in 0..CHUNKS {
            packed[QUANT_VECTORS + c] = i16_pairs(scales[c]);
            packed[QUANT_VECTORS + CHUNKS + c] = i16_pairs(mins[c]);
        }
        packed[QUANT_VECTORS + 2 * CHUNKS] = _mm256_castps_si256(row_halves(&blocks, 0));
        packed[QUANT_VECTORS + 2 * CHUNKS + 1] = _mm256_castps_si256(row_halves(&blocks, 2));
    }
}

/// Multiplies Q4_K rows with `TOKENS` Q8_K tokens: per super-block,
/// `d_w * d_a` times `sum_c scale_c * sum(q_w * q_a)` minus `dmin_w * d_a`
/// times `sum_c min_c * bsum_pair_c`, both sums in integers. A chunk's bsum
/// pair is the sum of its two 16-element Q8_K group sums.
#[target_feature(enable = "avx2,fma")]
unsafe fn panel_q4_k(n_blocks: usize, panel: &[__m256i], acts: [*const u8; TOKENS]) -> [__m256; TOKENS] {
    let mut acc = [_mm256_setzero_ps(); TOKENS];
    for (b, packed) in panel.chunks_exact(Q4K_VECTORS).enumerate().take(n_blocks) {
        let mut y = [acts[0]; TOKENS];
        for t in 0..TOKENS {
            y[t] = acts[t].add(b * Q8K_BYTES);
        }

        let mut sums = [_mm256_setzero_si256(); TOKENS];
        let mut min_sums = [_mm256_setzero_si256(); TOKENS];
        for c in 0..CHUNKS {
            // Each i16 lane adds 8 pair sums, at most 8 * 2 * 15 * 128 =
            // 30720 in magnitude.
            let mut chunk_sums = [_mm256_setzero_si256(); TOKENS];
            for k in 0..8 {
                let x = packed[8 * c + k];
                for t in 0..TOKENS {
                    let products = _mm256_maddubs_epi16(x, quad(y[t].add(Q8K_QS + 32 * c + 4 * k)));
                    chunk_sums[t] = _mm256_add_epi16(chunk_sums[t], products);
                }
            }
            let scale = packed[QUANT_VECTORS + c];
            let min = packed[QUANT_VECTORS + CHUNKS + c];
            for t in 0..TOKENS {
                sums[t] = _mm256_add_epi32(sums[t], _mm256_madd_epi16(chunk_sums[t], scale));
                // The chunk's two 16-element sums, times its min.
                let bsum_pair = quad(y[t].add(Q8K_BSUMS + 4 * c));
                min_sums[t] = _mm256_add_epi32(min_sums[t], _mm256_madd_epi16(min, bsum_pair));
            }
        }

        let d = _mm256_castsi256_ps(packed[QUANT_VECTORS + 2 * CHUNKS]);
        let dmin = _mm256_castsi256_ps(packed[QUANT_VECTORS + 2 * CHUNKS + 1]);
        for t in 0..TOKENS {
            let dy = _mm256_set1_ps(std::ptr::read_unaligned(y[t] as *const f32));
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, dy), _mm256_cvtepi32_ps(sums[t]), acc[t]);
            acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, dy), _mm256_cvtepi32_ps(min_sums[t]), acc[t]);
        }
    }
    acc
}

#[target_feature(enable = "avx2,fma")]
unsafe fn pack_q6_k(n_blocks: usize, rows: &[*const u8; PANEL_ROWS], panel: &mut [__m256i]) {
    const BLOCK_BYTES: usize = 210;
    const SCALES: usize = 192;
    const D: usize = 208;
    for (b, packed) in panel.chunks_exact_mut(Q6K_VECTORS).enumerate().take(n_blocks) {
        let mut blocks = [rows[0]; PANEL_ROWS];
        for r in 0..PANEL_ROWS {
            blocks[r] = rows[r].add(b * BLOCK_BYTES);
        }

        // Half h unpacks to chunks 4h..4h + 4.
        for half in 0..2 {
            let mut values = [[_mm256_setzero_si256(); PANEL_ROWS]; 4];
            for r in 0..PANEL_ROWS {
                let row_values = q6_k_values(blocks[r], half);
                for v in 0..4 {
                    values[v][r] = row_values[v];
                }
            }
            for (v, chunk) in values.iter().enumerate() {
                let at = 8 * (4 * half + v);
                packed[at..at + 8].copy_from_slice(&transpose_dwords(*chunk));
            }
        }

        let mut scales = [[0i16; PANEL_ROWS]; 16];
        for r in 0..PANEL_ROWS {
            for (g, group_scales) in scales.iter_mut().enumerate() {
                group_scales[r] = *(blocks[r].add(SCALES + g) as *const i8) as i16;
            }
        }
        for g in 0..16 {
            packed[QUANT_VECTORS + g] = i16_pairs(scales[g]);
        }
        for k in 0..8 {
            packed[QUANT_VECTORS + 16 + k] = i16_lanes(scales[2 * k], scales[2 * k + 1]);
        }
        packed[QUANT_VECTORS + 24] = _mm256_castps_si256(row_halves(&blocks, D));
    }
}

/// Multiplies Q6_K rows with `TOKENS` Q8_K tokens, using the unsigned 6-bit
/// quants: per super-block, `d_w * d_a` times `sum_g scale_g * sum(q_w *
/// q_a) - 32 * sum_g scale_g * bsum_g` over the 16-element groups `g`, in
/// integers.
#[target_feature(enable = "avx2,fma")]
unsafe fn panel_q6_k(n_blocks: usize, panel: &[__m256i], acts: [*const u8; TOKENS]) -> [__m256; TOKENS] {
    let mut acc = [_mm256_setzero_ps(); TOKENS];
    for (b, packed) in panel.chunks_exact(Q6K_VECTORS).enumerate().take(n_blocks) {
        let mut y = [acts[0]; TOKENS];
        for t in 0..TOKENS {
            y[t] = acts[t].add(b * Q8K_BYTES);
        }

        // `sum_g scale_g * bsum_g`, subtracted 32 times at the end.
        let mut offsets = [_mm256_setzero_si256(); TOKENS];
        for i in 0..8 {
            let scale_pair = packed[QUANT_VECTORS + 16 + i];
            for t in 0..TOKENS {
                let bsum_pair = quad(y[t].add(Q8K_BSUMS + 4 * i));
                offsets[t] = _mm256_add_epi32(offsets[t], _mm256_madd_epi16(scale_pair, bsum_pair));
            }
        }

        let mut sums = [_mm256_setzero_si256(); TOKENS];
        for group in 0..16 {
            let scale = packed[QUANT_VECTORS + group];
            // Two pair sums per i16 lane, at most 2 * 2 * 63 * 128 = 32256
            // in magnitude.
            for pair in 0..2 {
                let k = 4 * (group % 2) + 2 * pair;
                let first = packed[8 * (group / 2) + k];
                let second = packed[8 * (group / 2) + k + 1];
                for t in 0..TOKENS {
                    let at = Q8K_QS + 16 * group + 4 * (2 * pair);
                    let products = _mm256_add_epi16(
                        _mm256_maddubs_epi16(first, quad(y[t].add(at))),
                        _mm256_maddubs_epi16(second, quad(y[t].add(at + 4))),
                    );
                    sums[t] = _mm256_add_epi32(sums[t], _mm256_madd_epi16(products, scale));
                }
            }
        }

        let d = _mm256_castsi256_ps(packed[QUANT_VECTORS + 24]);
        for t in 0..TOKENS {
            let total = _mm256_sub_epi32(sums[t], _mm256_slli_epi32(offsets[t], 5));
            let dy = _mm256_set1_ps(std::ptr::read_unaligned(y[t] as *const f32));
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, dy), _mm256_cvtepi32_ps(total), acc[t]);
        }
    }
    acc
}
