//! AVX2 batch kernels for Q4_K and Q6_K over packed 8-row weight panels
//! (see `avx2_panels.rs` for the panel layout of the quants).
//!
//! A panel block contains each row's super-block as 8 chunks of 32
//! elements, each chunk as 8 transposed vectors: vector `k` contains quants
//! `4k..4k + 4` of every row. The rows' scales are widened to i16 pairs, so
//! `_mm256_madd_epi16` applies them lane by lane.
//!
//! The one-token kernels `tile_q4_k` and `tile_q6_k` of `avx2_tiles.rs` keep
//! 8 f32 accumulators per output, lane `j` collecting the products of
//! quants `4j..4j + 4` of every chunk, and add them up at the end. These
//! kernels keep the same 8 accumulators per output, one per `k`, and update
//! them with the same integers and f32 operations in the same order. So a
//! token's results do not depend on its batch, and the model's outputs match
//! those of the tile kernels bit for bit.

use std::arch::x86_64::*;

use super::avx2_panels::{quad, row_halves, store_rows, transpose_dwords, PANEL_ROWS};
use super::avx2_tiles::{q6_k_values, Q8K_BSUMS, Q8K_BYTES, Q8K_QS};
use super::{k4_scales_mins, GgmlType, Operands};

/// 32-element chunks per super-block.
const CHUNKS: usize = 8;

/// Vectors of transposed quants per super-block.
const QUANT_VECTORS: usize = CHUNKS * 8;

/// Q4_K panel block: quants, the scale of each chunk (as i16 pairs), the
/// mins of chunks `2j` and `2j + 1` side by side for `j` in 0..4, then `d`
/// and `dmin`.
const Q4K_VECTORS: usize = QUANT_VECTORS + CHUNKS + 4 + 2;

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

/// Multiplies a panel with one token (a pointer to its Q8_K row) and
/// returns one vector of rows.
type Kernel = unsafe fn(n_blocks: usize, panel: &[__m256i], act: *const u8) -> __m256;

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

        for t in 0..ops.n_tokens {
            let sums = kernel(ops.n_blocks, &panel, ops.acts.add(t * ops.act_row_bytes));
            store_rows(ops.out.add(t * ops.out_stride + r0), sums, rows);
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

/// Adds the 8 accumulators as `hsum_ps` in `avx2_tiles.rs` adds the lanes
/// of one: `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn sum_accumulators(acc: &[__m256; 8]) -> __m256 {
    let even = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
    let odd = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
    _mm256_add_ps(even, odd)
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
        }
        for j in 0..4 {
            packed[QUANT_VECTORS + CHUNKS + j] = i16_lanes(mins[2 * j], mins[2 * j + 1]);
        }
        packed[QUANT_VECTORS + CHUNKS + 4] = _mm256_castps_si256(row_halves(&blocks, 0));
        packed[QUANT_VECTORS + CHUNKS + 5] = _mm256_castps_si256(row_halves(&blocks, 2));
    }
}

/// Multiplies Q4_K rows with a Q8_K token, with the integers and f32
/// operations of `tile_q4_k`. Accumulator `k` adds `d_w * d_a` times
/// `sum_c scale_c * sum(q_w * q_a)` over quants `4k..4k + 4` of every chunk
/// `c`, then subtracts `dmin_w * d_a` times `min_2k * bsum_pair_2k +
/// min_2k+1 * bsum_pair_2k+1` for `k` below 4, and 0 for the others. A
/// chunk's bsum pair is the sum of its two 16-element Q8_K group sums.
#[target_feature(enable = "avx2,fma")]
unsafe fn panel_q4_k(n_blocks: usize, panel: &[__m256i], act: *const u8) -> __m256 {
    let mut acc = [_mm256_setzero_ps(); 8];
    for (b, packed) in panel.chunks_exact(Q4K_VECTORS).enumerate().take(n_blocks) {
        let y = act.add(b * Q8K_BYTES);
        let bsums = _mm256_loadu_si256(y.add(Q8K_BSUMS) as *const __m256i);
        let mut bsum_pairs = [0i32; 4];
        let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
        _mm_storeu_si128(bsum_pairs.as_mut_ptr() as *mut __m128i, pairs);
        let dy = _mm256_set1_ps(std::ptr::read_unaligned(y as *const f32));
        let scale = _mm256_mul_ps(_mm256_castsi256_ps(packed[QUANT_VECTORS + CHUNKS + 4]), dy);
        let min_scale = _mm256_mul_ps(_mm256_castsi256_ps(packed[QUANT_VECTORS + CHUNKS + 5]), dy);

        for k in 0..8 {
            let mut sums = _mm256_setzero_si256();
            for c in 0..CHUNKS {
                let products = _mm256_maddubs_epi16(packed[8 * c + k], quad(y.add(Q8K_QS + 32 * c + 4 * k)));
                sums = _mm256_add_epi32(sums, _mm256_madd_epi16(products, packed[QUANT_VECTORS + c]));
            }
            let min_sums = if k < 4 {
                _mm256_madd_epi16(packed[QUANT_VECTORS + CHUNKS + k], _mm256_set1_epi32(bsum_pairs[k]))
            } else {
                _mm256_setzero_si256()
            };
            acc[k] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sums), acc[k]);
            acc[k] = _mm256_fnmadd_ps(min_scale, _mm256_cvtepi32_ps(min_sums), acc[k]);
        }
    }
    sum_accumulators(&acc)
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

/// Multiplies Q6_K rows with a Q8_K token, using the unsigned 6-bit quants
/// and the integers and f32 operations of `tile_q6_k`. Accumulator `k` adds
/// `d_w * d_a` times `sum_c scale_g * sum(q_w * q_a)` over quants `4k..4k +
/// 4` of every chunk `c`, minus `32 * (scale_2k * bsum_2k + scale_2k+1 *
/// bsum_2k+1)`. Here `g` is the chunk's first 16-element group for `k`
/// below 4, else its second.
#[target_feature(enable = "avx2,fma")]
unsafe fn panel_q6_k(n_blocks: usize, panel: &[__m256i], act: *const u8) -> __m256 {
    let mut acc = [_mm256_setzero_ps(); 8];
    for (b, packed) in panel.chunks_exact(Q6K_VECTORS).enumerate().take(n_blocks) {
        let y = act.add(b * Q8K_BYTES);
        let dy = _mm256_set1_ps(std::ptr::read_unaligned(y as *const f32));
        let scale = _mm256_mul_ps(_mm256_castsi256_ps(packed[QUANT_VECTORS + 24]), dy);

        for k in 0..8 {
            let bsum_pair = quad(y.add(Q8K_BSUMS + 4 * k));
            let offset = _mm256_madd_epi16(packed[QUANT_VECTORS + 16 + k], bsum_pair);
            let mut sums = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offset, 5));
            for c in 0..CHUNKS {
                let group = 2 * c + k / 4;
                let products = _mm256_maddubs_epi16(packed[8 * c + k], quad(y.add(Q8K_QS + 32 * c + 4 * k)));
                sums = _mm256_add_epi32(sums, _mm256_madd_epi16(products, packed[QUANT_VECTORS + group]));
            }
            acc[k] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(sums), acc[k]);
        }
    }
    sum_accumulators(&acc)
}
