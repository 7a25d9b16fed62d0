//! NEON TurboQuant kernels for blocks whose length is a multiple of 8.
//!
//! A group of 8 coordinates is two 4-lane vectors. Codes are unpacked like
//! on AVX2: one 32-bit load broadcast to the lanes and a per-lane variable
//! shift (`ushl` with negative counts). Centroids are gathered with table
//! lookups on bytes (`tbl`): each code `c` becomes the byte indices
//! `4c..4c+3` of the f32 codebook, which `vqtbl2q_u8` (8 entries),
//! `vqtbl4q_u8` (16) or `vqtbl4q_u8` plus `vqtbx4q_u8` (32) read.

use std::arch::aarch64::*;
use std::ptr;

use super::codebook::codebook;
use super::rotation::{inv_sqrt_len, SIGN_MASKS};
use super::scalar::write_scale;
use super::{code_bytes, ScaleRule, TurboBits, MAX_BLOCK, SCALE_RULE};
use crate::f16::f16_to_f32;

const MAX_QUADS: usize = MAX_BLOCK / 4;

/// The f32 codebook as bytes: entries 16k..16k+15 of the byte view in `t[k]`.
struct Tables {
    low: uint8x16x4_t,
    high: uint8x16x4_t,
}

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

#[inline(always)]
unsafe fn load_tables(bits: TurboBits) -> Tables {
    let c = codebook(bits).centroids.as_ptr() as *const u8;
    Tables {
        low: uint8x16x4_t(
            vld1q_u8(c),
            vld1q_u8(c.add(16)),
            vld1q_u8(c.add(32)),
            vld1q_u8(c.add(48)),
        ),
        high: uint8x16x4_t(
            vld1q_u8(c.add(64)),
            vld1q_u8(c.add(80)),
            vld1q_u8(c.add(96)),
            vld1q_u8(c.add(112)),
        ),
    }
}

#[inline(always)]
unsafe fn shifts(s: [i32; 4]) -> int32x4_t {
    vld1q_s32(s.as_ptr())
}

/// Unpacks the codes of coordinates `8g..8g+8` as (first 4, last 4).
#[inline(always)]
unsafe fn codes8<const BITS: u32>(
    block: *const u8,
    len: usize,
    g: usize,
) -> (uint32x4_t, uint32x4_t) {
    match BITS {
        3 => {
            let w = vdupq_n_u32(read_u32(block.add(3 * g)));
            let m = vdupq_n_u32(7);
            (
                vandq_u32(vshlq_u32(w, shifts([0, -3, -6, -9])), m),
                vandq_u32(vshlq_u32(w, shifts([-12, -15, -18, -21])), m),
            )
        }
        4 => nibbles8(block.add(4 * g)),
        _ => {
            let h = vdupq_n_u32(read_u32(block.add(g)));
            let one = vdupq_n_u32(1);
            let high0 = vandq_u32(vshlq_u32(h, shifts([0, -1, -2, -3])), one);
            let high1 = vandq_u32(vshlq_u32(h, shifts([-4, -5, -6, -7])), one);
            let (low0, low1) = nibbles8(block.add(len / 8 + 4 * g));
            (
                vorrq_u32(low0, vshlq_n_u32::<4>(high0)),
                vorrq_u32(low1, vshlq_n_u32::<4>(high1)),
            )
        }
    }
}

#[inline(always)]
unsafe fn nibbles8(p: *const u8) -> (uint32x4_t, uint32x4_t) {
    let w = vdupq_n_u32(read_u32(p));
    let m = vdupq_n_u32(15);
    (
        vandq_u32(vshlq_u32(w, shifts([0, -4, -8, -12])), m),
        vandq_u32(vshlq_u32(w, shifts([-16, -20, -24, -28])), m),
    )
}

/// Gathers `centroids[code]` for 4 codes.
#[inline(always)]
unsafe fn lookup<const BITS: u32>(t: &Tables, c: uint32x4_t) -> float32x4_t {
    // Byte indices 4c, 4c+1, 4c+2, 4c+3 in each 32-bit lane (little-endian):
    // the multiply puts 4c in every byte.
    let idx = vreinterpretq_u8_u32(vorrq_u32(
        vmulq_n_u32(c, 0x0404_0404),
        vdupq_n_u32(0x0302_0100),
    ));
    let bytes = match BITS {
        3 => vqtbl2q_u8(uint8x16x2_t(t.low.0, t.low.1), idx),
        4 => vqtbl4q_u8(t.low, idx),
        // Indices 64..127 miss the first table (giving 0) and, after
        // subtracting 64, hit the second; lower ones wrap past 191 and miss.
        _ => vqtbx4q_u8(
            vqtbl4q_u8(t.low, idx),
            t.high,
            vsubq_u8(idx, vdupq_n_u8(64)),
        ),
    };
    vreinterpretq_f32_u8(bytes)
}

/// Sum of 8 lanes (`lo` = lanes 0..3) in the order of `scalar::sum8`.
#[inline(always)]
unsafe fn reduce8(lo: float32x4_t, hi: float32x4_t) -> f32 {
    let t = vaddq_f32(lo, hi);
    let u = vadd_f32(vget_low_f32(t), vget_high_f32(t));
    vget_lane_f32::<0>(u) + vget_lane_f32::<1>(u)
}

/// Applies the FWHT butterflies to 4-lane vectors, in the stage order of
/// `rotation::fwht`.
#[inline(always)]
unsafe fn fwht(v: &mut [float32x4_t]) {
    let odd = vld1q_u32([0, u32::MAX, 0, u32::MAX].as_ptr());
    let upper = vld1q_u32([0, 0, u32::MAX, u32::MAX].as_ptr());
    for x in v.iter_mut() {
        let p = vrev64q_f32(*x);
        let s = vbslq_f32(odd, vsubq_f32(p, *x), vaddq_f32(*x, p));
        let p = vextq_f32::<2>(s, s);
        *x = vbslq_f32(upper, vsubq_f32(p, s), vaddq_f32(s, p));
    }
    let n = v.len();
    let mut h = 1;
    while h < n {
        let mut i = 0;
        while i < n {
            for j in i..i + h {
                let a = v[j];
                let b = v[j + h];
                v[j] = vaddq_f32(a, b);
                v[j + h] = vsubq_f32(a, b);
            }
            i += 2 * h;
        }
        h *= 2;
    }
}

#[inline(always)]
unsafe fn flip_signs(x: float32x4_t, q: usize) -> float32x4_t {
    let m = vld1q_u32(SIGN_MASKS.as_ptr().add(4 * q));
    vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(x), m))
}

#[inline(always)]
unsafe fn scale_all(v: &mut [float32x4_t], s: f32) {
    for x in v.iter_mut() {
        *x = vmulq_n_f32(*x, s);
    }
}

/// # Safety
/// `x.len()` is a power of two in 8..=128.
pub unsafe fn rotate(x: &mut [f32]) {
    let quads = x.len() / 4;
    let mut v = [vdupq_n_f32(0.0); MAX_QUADS];
    for (q, r) in v[..quads].iter_mut().enumerate() {
        *r = flip_signs(vld1q_f32(x.as_ptr().add(4 * q)), q);
    }
    fwht(&mut v[..quads]);
    scale_all(&mut v[..quads], inv_sqrt_len(x.len()));
    for (q, r) in v[..quads].iter().enumerate() {
        vst1q_f32(x.as_mut_ptr().add(4 * q), *r);
    }
}

/// # Safety
/// As for [`rotate`].
pub unsafe fn rotate_inverse(x: &mut [f32]) {
    let quads = x.len() / 4;
    let mut v = [vdupq_n_f32(0.0); MAX_QUADS];
    for (q, r) in v[..quads].iter_mut().enumerate() {
        *r = vld1q_f32(x.as_ptr().add(4 * q));
    }
    fwht(&mut v[..quads]);
    scale_all(&mut v[..quads], inv_sqrt_len(x.len()));
    for (q, r) in v[..quads].iter().enumerate() {
        vst1q_f32(x.as_mut_ptr().add(4 * q), flip_signs(*r, q));
    }
}

/// # Safety
/// `x.len()` is a power of two in 8..=128 and `out` has at least
/// `block_bytes(bits, x.len())` bytes.
pub unsafe fn quantize_block(bits: TurboBits, x: &[f32], out: &mut [u8]) {
    match bits {
        TurboBits::B3 => quantize_impl::<3>(bits, x, out),
        TurboBits::B4 => quantize_impl::<4>(bits, x, out),
        TurboBits::B5 => quantize_impl::<5>(bits, x, out),
    }
}

/// Mirrors `scalar::quantize_block` operation for operation (no FMA, sums
/// in the `sum8` order), so the bytes are identical.
unsafe fn quantize_impl<const BITS: u32>(bits: TurboBits, x: &[f32], out: &mut [u8]) {
    let len = x.len();
    let quads = len / 4;
    let mut v = [vdupq_n_f32(0.0); MAX_QUADS];
    for (q, r) in v[..quads].iter_mut().enumerate() {
        *r = flip_signs(vld1q_f32(x.as_ptr().add(4 * q)), q);
    }
    fwht(&mut v[..quads]);
    scale_all(&mut v[..quads], inv_sqrt_len(len));

    let mut squares = [vdupq_n_f32(0.0); 2];
    for (q, r) in v[..quads].iter().enumerate() {
        squares[q % 2] = vaddq_f32(squares[q % 2], vmulq_f32(*r, *r));
    }
    let norm = reduce8(squares[0], squares[1]).sqrt();
    let inv = if norm > 0.0 {
        (len as f32).sqrt() / norm
    } else {
        0.0
    };

    let book = codebook(bits);
    let tables = load_tables(bits);
    let mut yc = [vdupq_n_f32(0.0); 2];
    let mut cc = [vdupq_n_f32(0.0); 2];
    let mut codes = [vdupq_n_u32(0); 2];
    for (q, r) in v[..quads].iter().enumerate() {
        let z = vmulq_n_f32(*r, inv);
        let mut code = vdupq_n_u32(0);
        for &b in &book.boundaries[..book.levels - 1] {
            code = vsubq_u32(code, vcltq_f32(vdupq_n_f32(b), z));
        }
        let c = lookup::<BITS>(&tables, code);
        yc[q % 2] = vaddq_f32(yc[q % 2], vmulq_f32(*r, c));
        cc[q % 2] = vaddq_f32(cc[q % 2], vmulq_f32(c, c));
        codes[q % 2] = code;
        if q % 2 == 1 {
            store_codes8::<BITS>(out, len, q / 2, codes[0], codes[1]);
        }
    }

    let scale = match SCALE_RULE {
        ScaleRule::Norm => norm / (len as f32).sqrt(),
        ScaleRule::LeastSquares => reduce8(yc[0], yc[1]) / reduce8(cc[0], cc[1]),
        ScaleRule::Unbiased => norm * norm / reduce8(yc[0], yc[1]),
    };
    write_scale(bits, out, len, scale);
}

/// Packs 8 codes (coordinates `8g..8g+8`) into their bytes of the block.
/// The shifted fields do not overlap, so an add across lanes is an OR.
#[inline(always)]
unsafe fn store_codes8<const BITS: u32>(
    out: &mut [u8],
    len: usize,
    g: usize,
    lo: uint32x4_t,
    hi: uint32x4_t,
) {
    let fields = |lo: uint32x4_t, hi: uint32x4_t, s0: [i32; 4], s1: [i32; 4]| {
        vaddvq_u32(vshlq_u32(lo, shifts(s0))) + vaddvq_u32(vshlq_u32(hi, shifts(s1)))
    };
    match BITS {
        3 => {
            let w = fields(lo, hi, [0, 3, 6, 9], [12, 15, 18, 21]).to_le_bytes();
            out[3 * g..3 * g + 3].copy_from_slice(&w[..3]);
        }
        4 => {
            let w = fields(lo, hi, [0, 4, 8, 12], [16, 20, 24, 28]).to_le_bytes();
            out[4 * g..4 * g + 4].copy_from_slice(&w);
        }
        _ => {
            let high = fields(
                vshrq_n_u32::<4>(lo),
                vshrq_n_u32::<4>(hi),
                [0, 1, 2, 3],
                [4, 5, 6, 7],
            );
            out[g] = high as u8;
            let m = vdupq_n_u32(15);
            let w = fields(
                vandq_u32(lo, m),
                vandq_u32(hi, m),
                [0, 4, 8, 12],
                [16, 20, 24, 28],
            )
            .to_le_bytes();
            let at = len / 8 + 4 * g;
            out[at..at + 4].copy_from_slice(&w);
        }
    }
}

/// Query heads one kernel call scores or accumulates at once; more heads
/// are done in calls of this many.
const MAX_HEADS: usize = 4;

/// # Safety
/// `len` is a multiple of 8 up to 128, `q.len()` a multiple of `len` (one
/// query per head), and `out` has room for `out_stride` scores per head.
/// The caller checked that `blocks` contains `n` blocks at `stride`.
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

/// Scores `n` blocks against `H` queries, unpacking and looking up each
/// group of codes once. Each query's sum runs in the same order as with
/// `H = 1`.
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
        let mut acc = [[vdupq_n_f32(0.0); 2]; H];
        for g in 0..groups {
            let (c0, c1) = codes8::<BITS>(block, len, g);
            let v0 = lookup::<BITS>(&tables, c0);
            let v1 = lookup::<BITS>(&tables, c1);
            for (h, a) in acc.iter_mut().enumerate() {
                let qh = qp.add(h * len + 8 * g);
                a[0] = vfmaq_f32(a[0], vld1q_f32(qh), v0);
                a[1] = vfmaq_f32(a[1], vld1q_f32(qh.add(4)), v1);
            }
        }
        let scale = block_scale(block, scale_at);
        for (h, a) in acc.iter().enumerate() {
            *op.add(h * out_stride + i) = vaddvq_f32(vaddq_f32(a[0], a[1])) * scale;
        }
    }
}

/// # Safety
/// `len` is a multiple of 8 up to 128, `acc.len()` a multiple of `len` (one
/// accumulator per head), and `weights` has `w_stride` weights per head.
/// The caller checked that `blocks` contains `n` blocks at `stride`.
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

/// Picks how many groups of 8 accumulator lanes (2 registers each) per
/// head stay in registers.
unsafe fn accumulate_bits<const BITS: u32>(job: &Job, acc: &mut [f32], heads: usize, w: Weights) {
    match heads {
        1 => accumulate_impl::<BITS, 1, 4>(job, acc, w),
        2 => accumulate_impl::<BITS, 2, 2>(job, acc, w),
        3 => accumulate_impl::<BITS, 3, 1>(job, acc, w),
        _ => accumulate_impl::<BITS, 4, 1>(job, acc, w),
    }
}

/// Positions per tile, as on AVX2.
const TILE: usize = 128;

/// Streams tiles of positions past `K` groups of each of the `H`
/// accumulators; leftover groups are done one at a time.
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
#[inline(always)]
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
    let mut regs = [[[vdupq_n_f32(0.0); 2]; K]; H];
    for (h, r) in regs.iter_mut().enumerate() {
        for (k, v) in r.iter_mut().enumerate() {
            v[0] = vld1q_f32(ap.add(h * len + 8 * k));
            v[1] = vld1q_f32(ap.add(h * len + 8 * k + 4));
        }
    }
    for i in first..end {
        let block = job.blocks.as_ptr().add(i * job.stride);
        let scale = block_scale(block, scale_at);
        let mut wv = [vdupq_n_f32(0.0); H];
        for (h, v) in wv.iter_mut().enumerate() {
            *v = vdupq_n_f32(*w.ptr.add(h * w.stride + i) * scale);
        }
        for k in 0..K {
            let (c0, c1) = codes8::<BITS>(block, len, g0 + k);
            let v0 = lookup::<BITS>(tables, c0);
            let v1 = lookup::<BITS>(tables, c1);
            for h in 0..H {
                regs[h][k][0] = vfmaq_f32(regs[h][k][0], wv[h], v0);
                regs[h][k][1] = vfmaq_f32(regs[h][k][1], wv[h], v1);
            }
        }
    }
    for (h, r) in regs.iter().enumerate() {
        for (k, v) in r.iter().enumerate() {
            vst1q_f32(ap.add(h * len + 8 * k), v[0]);
            vst1q_f32(ap.add(h * len + 8 * k + 4), v[1]);
        }
    }
}
