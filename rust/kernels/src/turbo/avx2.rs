//! AVX2+FMA TurboQuant kernels for blocks whose length is a multiple of 8.
//!
//! The codes of 8 consecutive coordinates lie in one 32-bit word of each
//! packed stream (24 bits for 3 bits, 32 for 4 bits, 32 + 8 for 5 bits).
//! One broadcast load and a per-lane variable shift (`vpsrlvd`) therefore
//! unpack them into 8 i32 lanes without shuffles. Centroids are then gathered from
//! registers with `vpermps` (`_mm256_permutevar8x32_ps`, 8 entries per
//! register), blending on the code's upper bits for 16 and 32 entries.

use std::arch::x86_64::*;
use std::ptr;

use super::codebook::{codebook, Codebook};
use super::rotation::{inv_sqrt_len, SIGN_MASKS};
use super::scalar::write_scale;
use super::{code_bytes, ScaleRule, TurboBits, SCALE_RULE};
use crate::f16::f16_to_f32;
use crate::ops::avx2::hsum;

/// The codebook in registers: entries 8k..8k+7 in `t[k]`.
type Tables = [__m256; 4];

#[inline(always)]
unsafe fn read_u32(p: *const u8) -> u32 {
    u32::from_le(ptr::read_unaligned(p as *const u32))
}

unsafe fn block_scale(block: *const u8, scale_at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([
        *block.add(scale_at),
        *block.add(scale_at + 1),
    ]))
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load_tables(bits: TurboBits) -> Tables {
    let c = codebook(bits).centroids.as_ptr();
    [
        _mm256_loadu_ps(c),
        _mm256_loadu_ps(c.add(8)),
        _mm256_loadu_ps(c.add(16)),
        _mm256_loadu_ps(c.add(24)),
    ]
}

/// Unpacks the codes of coordinates `8g..8g+8` of a block of `len`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn codes8<const BITS: u32>(block: *const u8, len: usize, g: usize) -> __m256i {
    let nibble_shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    match BITS {
        3 => {
            let w = _mm256_set1_epi32(read_u32(block.add(3 * g)) as i32);
            let shifts = _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21);
            _mm256_and_si256(_mm256_srlv_epi32(w, shifts), _mm256_set1_epi32(7))
        }
        4 => {
            let w = _mm256_set1_epi32(read_u32(block.add(4 * g)) as i32);
            _mm256_and_si256(_mm256_srlv_epi32(w, nibble_shifts), _mm256_set1_epi32(15))
        }
        _ => {
            let h = _mm256_set1_epi32(read_u32(block.add(g)) as i32);
            let bit_shifts = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let high = _mm256_and_si256(_mm256_srlv_epi32(h, bit_shifts), _mm256_set1_epi32(1));
            let w = _mm256_set1_epi32(read_u32(block.add(len / 8 + 4 * g)) as i32);
            let low = _mm256_and_si256(_mm256_srlv_epi32(w, nibble_shifts), _mm256_set1_epi32(15));
            _mm256_or_si256(low, _mm256_slli_epi32(high, 4))
        }
    }
}

/// Gathers `centroids[code]` for 8 codes. `vpermps` reads the low 3 bits of
/// each lane. `vblendvps` selects on the sign bit, so a shift first moves
/// code bit 3 (or bit 4) there.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn lookup<const BITS: u32>(t: &Tables, c: __m256i) -> __m256 {
    if BITS == 3 {
        return _mm256_permutevar8x32_ps(t[0], c);
    }
    let bit3 = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28));
    let low = _mm256_blendv_ps(
        _mm256_permutevar8x32_ps(t[0], c),
        _mm256_permutevar8x32_ps(t[1], c),
        bit3,
    );
    if BITS == 4 {
        return low;
    }
    let high = _mm256_blendv_ps(
        _mm256_permutevar8x32_ps(t[2], c),
        _mm256_permutevar8x32_ps(t[3], c),
        bit3,
    );
    _mm256_blendv_ps(low, high, _mm256_castsi256_ps(_mm256_slli_epi32(c, 27)))
}

/// ORs the 8 lanes together.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn or_lanes(v: __m256i) -> u32 {
    let x = _mm_or_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let x = _mm_or_si128(x, _mm_shuffle_epi32(x, 0b01_00_11_10));
    let x = _mm_or_si128(x, _mm_shuffle_epi32(x, 0b10_11_00_01));
    _mm_cvtsi128_si32(x) as u32
}

/// Sum of 8 lanes in the order of `scalar::sum8`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn reduce8(v: __m256) -> f32 {
    // hsum adds the halves, then lanes (0,2) and (1,3), then the two results.
    hsum(v)
}

/// Applies the FWHT butterflies to `v` (8 lanes per register, groups in
/// order), in the stage order of `rotation::fwht`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn fwht(v: &mut [__m256]) {
    for x in v.iter_mut() {
        let p = _mm256_permute_ps(*x, 0b10_11_00_01);
        let s = _mm256_blend_ps(_mm256_add_ps(*x, p), _mm256_sub_ps(p, *x), 0b1010_1010);
        let p = _mm256_permute_ps(s, 0b01_00_11_10);
        let s = _mm256_blend_ps(_mm256_add_ps(s, p), _mm256_sub_ps(p, s), 0b1100_1100);
        let p = _mm256_permute2f128_ps(s, s, 0x01);
        *x = _mm256_blend_ps(_mm256_add_ps(s, p), _mm256_sub_ps(p, s), 0b1111_0000);
    }
    let n = v.len();
    let mut h = 1;
    while h < n {
        let mut i = 0;
        while i < n {
            for j in i..i + h {
                let a = v[j];
                let b = v[j + h];
                v[j] = _mm256_add_ps(a, b);
                v[j + h] = _mm256_sub_ps(a, b);
            }
            i += 2 * h;
        }
        h *= 2;
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn sign_mask(g: usize) -> __m256 {
    _mm256_loadu_ps(SIGN_MASKS.as_ptr().add(8 * g) as *const f32)
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn scale_all(v: &mut [__m256], s: f32) {
    let vs = _mm256_set1_ps(s);
    for x in v.iter_mut() {
        *x = _mm256_mul_ps(*x, vs);
    }
}

/// Calls `$f::<G>($args)` with `G = $groups`, a power of two up to
/// 16 (blocks of 8 to 128), so that each block length gets a fully unrolled copy.
macro_rules! with_groups {
    ($groups:expr, $f:ident $(::<$($p:tt),*>)?, ($($arg:expr),*)) => {
        match $groups {
            1 => $f::<$($($p,)*)? 1>($($arg),*),
            2 => $f::<$($($p,)*)? 2>($($arg),*),
            4 => $f::<$($($p,)*)? 4>($($arg),*),
            8 => $f::<$($($p,)*)? 8>($($arg),*),
            16 => $f::<$($($p,)*)? 16>($($arg),*),
            groups => unreachable!("a block of {} groups of 8", groups),
        }
    };
}

/// # Safety
/// AVX2 and FMA are available; `x.len()` is a power of two in 8..=128.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn rotate(x: &mut [f32]) {
    with_groups!(x.len() / 8, rotate_groups::<false>, (x))
}

/// # Safety
/// As for [`rotate`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn rotate_inverse(x: &mut [f32]) {
    with_groups!(x.len() / 8, rotate_groups::<true>, (x))
}

/// Applies the sign diagonal and the scaled FWHT to the `G` groups of 8 in
/// `x`: the signs first for the forward rotation, last for the inverse.
#[target_feature(enable = "avx2,fma")]
unsafe fn rotate_groups<const INVERSE: bool, const G: usize>(x: &mut [f32]) {
    let mut v = [_mm256_setzero_ps(); G];
    for (g, r) in v.iter_mut().enumerate() {
        let x8 = _mm256_loadu_ps(x.as_ptr().add(8 * g));
        *r = if INVERSE { x8 } else { _mm256_xor_ps(x8, sign_mask(g)) };
    }
    fwht(&mut v);
    scale_all(&mut v, inv_sqrt_len(x.len()));
    for (g, r) in v.iter().enumerate() {
        let y = if INVERSE { _mm256_xor_ps(*r, sign_mask(g)) } else { *r };
        _mm256_storeu_ps(x.as_mut_ptr().add(8 * g), y);
    }
}

/// # Safety
/// AVX2 and FMA are available; `x.len()` is a power of two in 8..=128 and
/// `out` has at least `block_bytes(bits, x.len())` bytes.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn quantize_block(bits: TurboBits, x: &[f32], out: &mut [u8]) {
    let groups = x.len() / 8;
    match bits {
        TurboBits::B3 => with_groups!(groups, quantize_impl::<3>, (bits, x, out)),
        TurboBits::B4 => with_groups!(groups, quantize_impl::<4>, (bits, x, out)),
        TurboBits::B5 => with_groups!(groups, quantize_impl::<5>, (bits, x, out)),
    }
}

/// Mirrors `scalar::quantize_block` operation for operation (no FMA, sums
/// in the `sum8` order), so the bytes are identical.
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_impl<const BITS: u32, const G: usize>(bits: TurboBits, x: &[f32], out: &mut [u8]) {
    let len = x.len();
    let mut v = [_mm256_setzero_ps(); G];
    for (g, r) in v.iter_mut().enumerate() {
        *r = _mm256_xor_ps(_mm256_loadu_ps(x.as_ptr().add(8 * g)), sign_mask(g));
    }
    fwht(&mut v);
    scale_all(&mut v, inv_sqrt_len(len));

    let mut squares = _mm256_setzero_ps();
    for r in &v {
        squares = _mm256_add_ps(squares, _mm256_mul_ps(*r, *r));
    }
    let norm = reduce8(squares).sqrt();
    let inv = if norm > 0.0 {
        (len as f32).sqrt() / norm
    } else {
        0.0
    };
    let vinv = _mm256_set1_ps(inv);

    let search = search_tables::<BITS>(codebook(bits));
    let tables = load_tables(bits);
    let mut yc = _mm256_setzero_ps();
    let mut cc = _mm256_setzero_ps();
    for (g, r) in v.iter().enumerate() {
        let code = search_codes::<BITS>(&search, _mm256_mul_ps(*r, vinv));
        let c = lookup::<BITS>(&tables, code);
        yc = _mm256_add_ps(yc, _mm256_mul_ps(*r, c));
        cc = _mm256_add_ps(cc, _mm256_mul_ps(c, c));
        store_codes8::<BITS>(out, len, g, code);
    }

    let scale = match SCALE_RULE {
        ScaleRule::Norm => norm / (len as f32).sqrt(),
        ScaleRule::LeastSquares => reduce8(yc) / reduce8(cc),
        ScaleRule::Unbiased => norm * norm / reduce8(yc),
    };
    write_scale(bits, out, len, scale);
}

/// Boundaries for each step of [`search_codes`], 8 per register: entry `j`
/// of step `s` is the boundary in the middle of the codes whose top `s`
/// bits are `j`.
type SearchTables = [[__m256; 2]; 5];

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn search_tables<const BITS: u32>(book: &Codebook) -> SearchTables {
    let mut tables = [[_mm256_setzero_ps(); 2]; 5];
    for (s, table) in tables.iter_mut().enumerate().take(BITS as usize) {
        let span = 1usize << (BITS as usize - s);
        let mut entries = [0f32; 16];
        for (j, e) in entries.iter_mut().enumerate().take(1 << s) {
            *e = book.boundaries[j * span + span / 2 - 1];
        }
        *table = [_mm256_loadu_ps(entries.as_ptr()), _mm256_loadu_ps(entries.as_ptr().add(8))];
    }
    tables
}

/// Returns the code of each lane of `z`, the number of boundaries below
/// it, by a branchless binary search (one code bit per step, highest
/// first) instead of `2^BITS - 1` comparisons. The boundaries are sorted
/// and compared with the same strict `<`, so the codes equal the scalar
/// reference's count.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn search_codes<const BITS: u32>(tables: &SearchTables, z: __m256) -> __m256i {
    let mut prefix = _mm256_setzero_si256();
    for (s, table) in tables.iter().enumerate().take(BITS as usize) {
        // Prefixes of up to 3 bits index one register; the 5-bit codebook's
        // last step picks between two on the prefix's bit 3.
        let boundary = if s < 4 {
            _mm256_permutevar8x32_ps(table[0], prefix)
        } else {
            let upper = _mm256_castsi256_ps(_mm256_slli_epi32(prefix, 28));
            _mm256_blendv_ps(
                _mm256_permutevar8x32_ps(table[0], prefix),
                _mm256_permutevar8x32_ps(table[1], prefix),
                upper,
            )
        };
        let above = _mm256_castps_si256(_mm256_cmp_ps(boundary, z, _CMP_LT_OQ));
        prefix = _mm256_sub_epi32(_mm256_add_epi32(prefix, prefix), above);
    }
    prefix
}

/// Runs [`search_codes`] on 8 values, for tests.
#[cfg(test)]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn codes_of(bits: TurboBits, z: [f32; 8]) -> [i32; 8] {
    let book = codebook(bits);
    let z = _mm256_loadu_ps(z.as_ptr());
    let code = match bits {
        TurboBits::B3 => search_codes::<3>(&search_tables::<3>(book), z),
        TurboBits::B4 => search_codes::<4>(&search_tables::<4>(book), z),
        TurboBits::B5 => search_codes::<5>(&search_tables::<5>(book), z),
    };
    let mut out = [0i32; 8];
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, code);
    out
}

/// Packs 8 codes (coordinates `8g..8g+8`) into their bytes of the block.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store_codes8<const BITS: u32>(out: &mut [u8], len: usize, g: usize, code: __m256i) {
    let nibble_shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    match BITS {
        3 => {
            let shifts = _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21);
            let w = or_lanes(_mm256_sllv_epi32(code, shifts)).to_le_bytes();
            out[3 * g..3 * g + 3].copy_from_slice(&w[..3]);
        }
        4 => {
            let w = or_lanes(_mm256_sllv_epi32(code, nibble_shifts)).to_le_bytes();
            out[4 * g..4 * g + 4].copy_from_slice(&w);
        }
        _ => {
            let bit_shifts = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            out[g] = or_lanes(_mm256_sllv_epi32(_mm256_srli_epi32(code, 4), bit_shifts)) as u8;
            let low = _mm256_and_si256(code, _mm256_set1_epi32(15));
            let w = or_lanes(_mm256_sllv_epi32(low, nibble_shifts)).to_le_bytes();
            let at = len / 8 + 4 * g;
            out[at..at + 4].copy_from_slice(&w);
        }
    }
}

/// Query heads one kernel call scores or accumulates at once; more heads
/// are done in calls of this many.
const MAX_HEADS: usize = 4;

/// # Safety
/// AVX2 and FMA are available; `len` is a multiple of 8 up to 128,
/// `q.len()` a multiple of `len` (one query per head), and `out` has
/// room for `out_stride` scores per head. The caller checked that
/// `blocks` contains `n` blocks at `stride`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn score_heads(
    bits: TurboBits,
    q: &[f32],
    len: usize,
    blocks: &[u8],
    stride: usize,
    n: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    let heads = q.len() / len;
    let mut h0 = 0;
    while h0 < heads {
        let h = (heads - h0).min(MAX_HEADS);
        let q = &q[h0 * len..(h0 + h) * len];
        let out = &mut out[h0 * out_stride..];
        match bits {
            TurboBits::B3 => score_bits::<3>(bits, q, len, h, blocks, stride, n, out, out_stride),
            TurboBits::B4 => score_bits::<4>(bits, q, len, h, blocks, stride, n, out, out_stride),
            TurboBits::B5 => score_bits::<5>(bits, q, len, h, blocks, stride, n, out, out_stride),
        }
        h0 += h;
    }
}

#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn score_bits<const BITS: u32>(
    bits: TurboBits,
    q: &[f32],
    len: usize,
    heads: usize,
    blocks: &[u8],
    stride: usize,
    n: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    match heads {
        1 => score_impl::<BITS, 1>(bits, q, len, blocks, stride, n, out, out_stride),
        2 => score_impl::<BITS, 2>(bits, q, len, blocks, stride, n, out, out_stride),
        3 => score_impl::<BITS, 3>(bits, q, len, blocks, stride, n, out, out_stride),
        _ => score_impl::<BITS, 4>(bits, q, len, blocks, stride, n, out, out_stride),
    }
}

/// Scores `n` blocks against `H` queries: each group of 8 codes is
/// unpacked and looked up once and multiplied into every query. Each
/// query's sum runs in the same order as with `H = 1`, so the grouping
/// does not change any score.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn score_impl<const BITS: u32, const H: usize>(
    bits: TurboBits,
    q: &[f32],
    len: usize,
    blocks: &[u8],
    stride: usize,
    n: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    let groups = len / 8;
    let scale_at = code_bytes(bits, len);
    let tables = load_tables(bits);
    let qp = q.as_ptr();
    let op = out.as_mut_ptr();
    for i in 0..n {
        let block = blocks.as_ptr().add(i * stride);
        let mut acc = [[_mm256_setzero_ps(); 2]; H];
        let mut g = 0;
        while g + 2 <= groups {
            let c0 = lookup::<BITS>(&tables, codes8::<BITS>(block, len, g));
            let c1 = lookup::<BITS>(&tables, codes8::<BITS>(block, len, g + 1));
            for (h, a) in acc.iter_mut().enumerate() {
                let qh = qp.add(h * len + 8 * g);
                a[0] = _mm256_fmadd_ps(_mm256_loadu_ps(qh), c0, a[0]);
                a[1] = _mm256_fmadd_ps(_mm256_loadu_ps(qh.add(8)), c1, a[1]);
            }
            g += 2;
        }
        if g < groups {
            let c0 = lookup::<BITS>(&tables, codes8::<BITS>(block, len, g));
            for (h, a) in acc.iter_mut().enumerate() {
                a[0] = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(h * len + 8 * g)), c0, a[0]);
            }
        }
        let scale = block_scale(block, scale_at);
        for (h, a) in acc.iter().enumerate() {
            *op.add(h * out_stride + i) = hsum(_mm256_add_ps(a[0], a[1])) * scale;
        }
    }
}

/// # Safety
/// AVX2 and FMA are available; `len` is a multiple of 8 up to 128,
/// `acc.len()` a multiple of `len` (one accumulator per head), and
/// `weights` has `w_stride` weights per head. The caller checked that
/// `blocks` contains `n` blocks at `stride`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn accumulate_heads(
    bits: TurboBits,
    acc: &mut [f32],
    len: usize,
    weights: &[f32],
    w_stride: usize,
    n: usize,
    blocks: &[u8],
    stride: usize,
) {
    let heads = acc.len() / len;
    let mut h0 = 0;
    while h0 < heads {
        let h = (heads - h0).min(MAX_HEADS);
        let acc = &mut acc[h0 * len..(h0 + h) * len];
        let w = Weights { ptr: weights.as_ptr().add(h0 * w_stride), stride: w_stride };
        let job = Job { bits, len, n, blocks, stride };
        match bits {
            TurboBits::B3 => accumulate_bits::<3>(&job, acc, h, w),
            TurboBits::B4 => accumulate_bits::<4>(&job, acc, h, w),
            TurboBits::B5 => accumulate_bits::<5>(&job, acc, h, w),
        }
        h0 += h;
    }
}

/// The blocks an accumulation reads.
struct Job<'a> {
    bits: TurboBits,
    len: usize,
    n: usize,
    blocks: &'a [u8],
    stride: usize,
}

/// Per-head weight rows: weight `i` of head `h` is at `ptr + h * stride + i`.
#[derive(Clone, Copy)]
struct Weights {
    ptr: *const f32,
    stride: usize,
}

/// Picks how many groups of 8 accumulator lanes per head stay in
/// registers: `H * K` accumulators plus `H` weights fit in 16 registers.
#[target_feature(enable = "avx2,fma")]
unsafe fn accumulate_bits<const BITS: u32>(job: &Job, acc: &mut [f32], heads: usize, w: Weights) {
    match heads {
        1 => accumulate_impl::<BITS, 1, 8>(job, acc, w),
        2 => accumulate_impl::<BITS, 2, 4>(job, acc, w),
        3 => accumulate_impl::<BITS, 3, 2>(job, acc, w),
        _ => accumulate_impl::<BITS, 4, 2>(job, acc, w),
    }
}

/// Positions per tile: a tile of 4-bit blocks of 128 stays within 8 KiB, so
/// the later passes over a tile hit L1.
const TILE: usize = 128;

/// Streams tiles of positions past `K` groups of each of the `H`
/// accumulators, which stay in registers. When `K` does not divide the
/// group count, the leftover groups are done one at a time.
#[target_feature(enable = "avx2,fma")]
unsafe fn accumulate_impl<const BITS: u32, const H: usize, const K: usize>(
    job: &Job,
    acc: &mut [f32],
    w: Weights,
) {
    let groups = job.len / 8;
    let tables = load_tables(job.bits);
    let mut start = 0;
    while start < job.n {
        let end = (start + TILE).min(job.n);
        let mut g0 = 0;
        while g0 + K <= groups {
            accumulate_pass::<BITS, H, K>(job, &tables, acc, g0, w, start, end);
            g0 += K;
        }
        while g0 < groups {
            accumulate_pass::<BITS, H, 1>(job, &tables, acc, g0, w, start, end);
            g0 += 1;
        }
        start = end;
    }
}

/// Adds positions `first..end` to groups `g0..g0 + K` of every head. Each
/// lane sums its positions in order, as with one head.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn accumulate_pass<const BITS: u32, const H: usize, const K: usize>(
    job: &Job,
    tables: &Tables,
    acc: &mut [f32],
    g0: usize,
    w: Weights,
    first: usize,
    end: usize,
) {
    let len = job.len;
    let scale_at = code_bytes(job.bits, len);
    let ap = acc.as_mut_ptr().add(8 * g0);
    let mut regs = [[_mm256_setzero_ps(); K]; H];
    for (h, r) in regs.iter_mut().enumerate() {
        for (k, v) in r.iter_mut().enumerate() {
            *v = _mm256_loadu_ps(ap.add(h * len + 8 * k));
        }
    }
    for i in first..end {
        let block = job.blocks.as_ptr().add(i * job.stride);
        let scale = block_scale(block, scale_at);
        let mut wv = [_mm256_setzero_ps(); H];
        for (h, v) in wv.iter_mut().enumerate() {
            *v = _mm256_set1_ps(*w.ptr.add(h * w.stride + i) * scale);
        }
        for k in 0..K {
            let c = lookup::<BITS>(tables, codes8::<BITS>(block, len, g0 + k));
            for h in 0..H {
                regs[h][k] = _mm256_fmadd_ps(wv[h], c, regs[h][k]);
            }
        }
    }
    for (h, r) in regs.iter().enumerate() {
        for (k, v) in r.iter().enumerate() {
            _mm256_storeu_ps(ap.add(h * len + 8 * k), *v);
        }
    }
}
