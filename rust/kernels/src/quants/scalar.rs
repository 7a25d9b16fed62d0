//! Scalar reference: dequantization, activation quantization and dot
//! products, written to give the same results as ggml's reference C code.
//!
//! Dequantization is bit-exact with ggml's `dequantize_row_*`: each value is
//! an exact product of the binary16 scale and small integers followed by at
//! most one rounding, so the order of operations does not change the result.

use super::blocks::*;
use crate::f16::{bf16_to_f32, f16_to_f32, f32_to_f16};

// ---------------------------------------------------------------- dequantize

pub fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    for (bytes, out) in src.chunks_exact(4).zip(dst.iter_mut()) {
        *out = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
}

pub fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    for (bytes, out) in src.chunks_exact(2).zip(dst.iter_mut()) {
        *out = f16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]));
    }
}

pub fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    for (bytes, out) in src.chunks_exact(2).zip(dst.iter_mut()) {
        *out = bf16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]));
    }
}

pub fn dequantize_q4_0(src: &[BlockQ4_0], dst: &mut [f32]) {
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = block.d();
        for j in 0..QK / 2 {
            let low = (block.qs[j] & 0x0f) as i32 - 8;
            let high = (block.qs[j] >> 4) as i32 - 8;
            out[j] = low as f32 * d;
            out[j + QK / 2] = high as f32 * d;
        }
    }
}

pub fn dequantize_q4_1(src: &[BlockQ4_1], dst: &mut [f32]) {
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = block.d();
        let m = block.m();
        for j in 0..QK / 2 {
            out[j] = (block.qs[j] & 0x0f) as f32 * d + m;
            out[j + QK / 2] = (block.qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// Unpacks the 5-bit values of a Q5_0 or Q5_1 block, in element order.
fn unpack_q5(qs: &[u8; QK / 2], qh: u32) -> [u8; QK] {
    let mut q = [0u8; QK];
    for j in 0..QK / 2 {
        let high_low = (((qh >> j) & 1) << 4) as u8;
        let high_high = (((qh >> (j + 16)) & 1) << 4) as u8;
        q[j] = (qs[j] & 0x0f) | high_low;
        q[j + QK / 2] = (qs[j] >> 4) | high_high;
    }
    q
}

pub fn dequantize_q5_0(src: &[BlockQ5_0], dst: &mut [f32]) {
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = block.d();
        let q = unpack_q5(&block.qs, block.qh());
        for j in 0..QK {
            out[j] = (q[j] as i32 - 16) as f32 * d;
        }
    }
}

pub fn dequantize_q5_1(src: &[BlockQ5_1], dst: &mut [f32]) {
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = block.d();
        let m = block.m();
        let q = unpack_q5(&block.qs, block.qh());
        for j in 0..QK {
            out[j] = q[j] as f32 * d + m;
        }
    }
}

pub fn dequantize_q8_0(src: &[BlockQ8_0], dst: &mut [f32]) {
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = block.d();
        for j in 0..QK {
            out[j] = block.qs[j] as f32 * d;
        }
    }
}

pub fn dequantize_q8_1(src: &[BlockQ8_1], dst: &mut [f32]) {
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = block.d();
        for j in 0..QK {
            out[j] = block.qs[j] as f32 * d;
        }
    }
}

/// Q2_K element order: two halves of 128, each reading the 32 bytes of its
/// `qs` four times (bits 0-1, 2-3, 4-5, 6-7). Each pass is two groups of 16.
pub fn dequantize_q2_k(src: &[BlockQ2K], dst: &mut [f32]) {
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = block.d();
        let dmin = block.dmin();
        for group in 0..QK_K / 16 {
            let half = group / 8;
            let shift = 2 * ((group % 8) / 2);
            let offset = 16 * (group % 2);
            let scale = block.scales[group];
            let dl = d * (scale & 0x0f) as f32;
            let ml = dmin * (scale >> 4) as f32;
            for l in 0..16 {
                let q = (block.qs[32 * half + offset + l] >> shift) & 3;
                out[16 * group + l] = dl * q as f32 - ml;
            }
        }
    }
}

/// Q3_K uses the Q2_K order; the high bit of element `l` of pass `p` (0..8
/// over both halves) is bit `p` of `hmask[l]`.
pub fn dequantize_q3_k(src: &[BlockQ3K], dst: &mut [f32]) {
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = block.d();
        let scales = block.group_scales();
        for group in 0..QK_K / 16 {
            let half = group / 8;
            let pass = group / 2;
            let shift = 2 * (pass % 4);
            let offset = 16 * (group % 2);
            let dl = d * scales[group] as f32;
            for l in 0..16 {
                let low = ((block.qs[32 * half + offset + l] >> shift) & 3) as i32;
                let high_set = block.hmask[offset + l] & (1 << pass) != 0;
                let q = if high_set { low } else { low - 4 };
                out[16 * group + l] = dl * q as f32;
            }
        }
    }
}

/// Q4_K element order: four chunks of 64; chunk `c` reads `qs[32c..32c+32]`,
/// low nibbles for group `2c`, high nibbles for group `2c + 1`.
pub fn dequantize_q4_k(src: &[BlockQ4K], dst: &mut [f32]) {
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = block.d();
        let dmin = block.dmin();
        let (scales, mins) = k4_scales_mins(&block.scales);
        for group in 0..QK_K / 32 {
            let chunk = group / 2;
            let shift = 4 * (group % 2);
            let dl = d * scales[group] as f32;
            let ml = dmin * mins[group] as f32;
            for l in 0..32 {
                let q = (block.qs[32 * chunk + l] >> shift) & 0x0f;
                out[32 * group + l] = dl * q as f32 - ml;
            }
        }
    }
}

/// Q5_K uses the Q4_K order; the fifth bit of element `l` of group `g` is
/// bit `g` of `qh[l]`.
pub fn dequantize_q5_k(src: &[BlockQ5K], dst: &mut [f32]) {
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = block.d();
        let dmin = block.dmin();
        let (scales, mins) = k4_scales_mins(&block.scales);
        for group in 0..QK_K / 32 {
            let chunk = group / 2;
            let shift = 4 * (group % 2);
            let dl = d * scales[group] as f32;
            let ml = dmin * mins[group] as f32;
            for l in 0..32 {
                let low = (block.qs[32 * chunk + l] >> shift) & 0x0f;
                let high = ((block.qh[l] >> group) & 1) << 4;
                out[32 * group + l] = dl * (low | high) as f32 - ml;
            }
        }
    }
}

/// Returns the 6-bit value of element `e` (0..256) of a Q6_K block, minus 32.
///
/// Each half of 128 has 64 bytes of `ql` and 32 of `qh`. Within a half,
/// element `32k + l` takes its low nibble from `ql[l + 32 * (k % 2)]` (low
/// nibble for k < 2) and its top 2 bits from `qh[l]` at bit `2k`.
pub fn q6_k_value(block: &BlockQ6K, e: usize) -> i32 {
    let half = e / 128;
    let k = (e % 128) / 32;
    let l = e % 32;
    let ql = block.ql[64 * half + 32 * (k % 2) + l];
    let low = if k < 2 { ql & 0x0f } else { ql >> 4 };
    let high = (block.qh[32 * half + l] >> (2 * k)) & 3;
    (low | (high << 4)) as i32 - 32
}

pub fn dequantize_q6_k(src: &[BlockQ6K], dst: &mut [f32]) {
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = block.d();
        for (e, value) in out.iter_mut().enumerate() {
            let scale = block.scales[e / 16] as f32;
            *value = d * scale * q6_k_value(block, e) as f32;
        }
    }
}

pub fn dequantize_q8_k(src: &[BlockQ8K], dst: &mut [f32]) {
    for (block, out) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = block.d();
        for j in 0..QK_K {
            out[j] = d * block.qs[j] as f32;
        }
    }
}

// ------------------------------------------------------------------ quantize

fn max_abs(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |amax, v| amax.max(v.abs()))
}

/// Rounds to nearest with ties to even, as ggml's `nearest_int`: adding
/// 1.5 * 2^23 leaves the rounded integer in the low mantissa bits. Valid for
/// |x| < 2^22.
fn nearest_int(x: f32) -> i32 {
    let shifted = x + 12_582_912.0;
    (shifted.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// Matches `quantize_row_q8_0_ref`: `d = amax / 127`, quants rounded half
/// away from zero.
pub fn quantize_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    for (x, block) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        let d = max_abs(x) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f32_to_f16(d).to_le_bytes();
        for j in 0..QK {
            block.qs[j] = (x[j] * id).round() as i8;
        }
    }
}

/// Matches `quantize_row_q8_1_ref`; `s` is `d * sum(q)` with the unrounded
/// f32 `d`.
pub fn quantize_q8_1(src: &[f32], dst: &mut [BlockQ8_1]) {
    for (x, block) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        let d = max_abs(x) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        block.d = f32_to_f16(d).to_le_bytes();
        let mut sum = 0i32;
        for j in 0..QK {
            let q = (x[j] * id).round() as i8;
            block.qs[j] = q;
            sum += q as i32;
        }
        block.s = f32_to_f16(sum as f32 * d).to_le_bytes();
    }
}

/// Matches `quantize_row_q8_K_ref`: the element of largest magnitude maps to
/// -127, quants round half to even, and `d = 1 / iscale` stays f32. An
/// all-zero block gets zero quants and zero `bsums` (ggml leaves `bsums`
/// untouched there).
pub fn quantize_q8_k(src: &[f32], dst: &mut [BlockQ8K]) {
    for (x, block) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            block.d = 0.0f32.to_le_bytes();
            block.qs = [0; QK_K];
            block.bsums = [0; QK_K / 16 * 2];
            continue;
        }

        let iscale = -127.0 / max;
        for j in 0..QK_K {
            block.qs[j] = nearest_int(iscale * x[j]).min(127) as i8;
        }
        for g in 0..QK_K / 16 {
            let sum: i32 = block.qs[16 * g..16 * g + 16].iter().map(|&q| q as i32).sum();
            block.bsums[2 * g..2 * g + 2].copy_from_slice(&(sum as i16).to_le_bytes());
        }
        block.d = (1.0 / iscale).to_le_bytes();
    }
}

// --------------------------------------------------------------- dot products

fn f32_at(bytes: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]])
}

fn u16_at(bytes: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])
}

/// Float dots accumulate in f64, as ggml's scalar `ggml_vec_dot_f32` does.
pub fn dot_f32(n: usize, weight: &[u8], act: &[u8]) -> f32 {
    let mut sum = 0.0f64;
    for i in 0..n {
        sum += (f32_at(weight, i) * f32_at(act, i)) as f64;
    }
    sum as f32
}

pub fn dot_f16(n: usize, weight: &[u8], act: &[u8]) -> f32 {
    let mut sum = 0.0f64;
    for i in 0..n {
        sum += (f16_to_f32(u16_at(weight, i)) * f32_at(act, i)) as f64;
    }
    sum as f32
}

pub fn dot_bf16(n: usize, weight: &[u8], act: &[u8]) -> f32 {
    let mut sum = 0.0f64;
    for i in 0..n {
        sum += (bf16_to_f32(u16_at(weight, i)) * f32_at(act, i)) as f64;
    }
    sum as f32
}

fn dot_i8(x: &[i8], y: &[i8]) -> i32 {
    x.iter().zip(y).map(|(&a, &b)| a as i32 * b as i32).sum()
}

fn dot_u8_i8(x: &[u8], y: &[i8]) -> i32 {
    x.iter().zip(y).map(|(&a, &b)| a as i32 * b as i32).sum()
}

fn unpack_q4(qs: &[u8; QK / 2]) -> [u8; QK] {
    let mut q = [0u8; QK];
    for j in 0..QK / 2 {
        q[j] = qs[j] & 0x0f;
        q[j + QK / 2] = qs[j] >> 4;
    }
    q
}

pub fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let q = unpack_q4(&x.qs);
        let mut centered = [0i8; QK];
        for j in 0..QK {
            centered[j] = q[j] as i8 - 8;
        }
        sum += dot_i8(&centered, &y.qs) as f32 * (x.d() * y.d());
    }
    sum
}

pub fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let sumi = dot_u8_i8(&unpack_q4(&x.qs), &y.qs);
        sum += (x.d() * y.d()) * sumi as f32 + x.m() * y.s();
    }
    sum
}

pub fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let q = unpack_q5(&x.qs, x.qh());
        let mut centered = [0i8; QK];
        for j in 0..QK {
            centered[j] = q[j] as i8 - 16;
        }
        sum += (x.d() * y.d()) * dot_i8(&centered, &y.qs) as f32;
    }
    sum
}

pub fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let sumi = dot_u8_i8(&unpack_q5(&x.qs, x.qh()), &y.qs);
        sum += (x.d() * y.d()) * sumi as f32 + x.m() * y.s();
    }
    sum
}

pub fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        sum += dot_i8(&x.qs, &y.qs) as f32 * (x.d() * y.d());
    }
    sum
}

/// Q8_1 weights (not a format ggml's CPU backend multiplies): `d * d * sumi`.
pub fn dot_q8_1(w: &[BlockQ8_1], a: &[BlockQ8_1]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        sum += dot_i8(&x.qs, &y.qs) as f32 * (x.d() * y.d());
    }
    sum
}

/// Sum over the 16-element groups of `coef[g] * bsum[g]`.
fn bsum_dot(coef: &[i32; 16], y: &BlockQ8K) -> i32 {
    (0..16).map(|g| coef[g] * y.bsum(g) as i32).sum()
}

pub fn dot_q2_k(w: &[BlockQ2K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut sumi = 0i32;
        let mut mins = [0i32; 16];
        for group in 0..16 {
            let half = group / 8;
            let shift = 2 * ((group % 8) / 2);
            let offset = 16 * (group % 2);
            let mut q = [0u8; 16];
            for l in 0..16 {
                q[l] = (x.qs[32 * half + offset + l] >> shift) & 3;
            }
            sumi += (x.scales[group] & 0x0f) as i32 * dot_u8_i8(&q, &y.qs[16 * group..16 * group + 16]);
            mins[group] = (x.scales[group] >> 4) as i32;
        }
        let summin = bsum_dot(&mins, y);
        sum += y.d() * x.d() * sumi as f32 - y.d() * x.dmin() * summin as f32;
    }
    sum
}

pub fn dot_q3_k(w: &[BlockQ3K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let scales = x.group_scales();
        let mut sumi = 0i32;
        for group in 0..16 {
            let half = group / 8;
            let pass = group / 2;
            let shift = 2 * (pass % 4);
            let offset = 16 * (group % 2);
            let mut q = [0i8; 16];
            for l in 0..16 {
                let low = ((x.qs[32 * half + offset + l] >> shift) & 3) as i8;
                let high_set = x.hmask[offset + l] & (1 << pass) != 0;
                q[l] = if high_set { low } else { low - 4 };
            }
            sumi += scales[group] as i32 * dot_i8(&q, &y.qs[16 * group..16 * group + 16]);
        }
        sum += x.d() * y.d() * sumi as f32;
    }
    sum
}

/// Shared by Q4_K and Q5_K once the 256 unsigned quants are unpacked.
fn dot_k4_groups(q: &[u8; QK_K], packed_scales: &[u8; 12], y: &BlockQ8K) -> (i32, i32) {
    let (scales, mins) = k4_scales_mins(packed_scales);
    let mut sumi = 0i32;
    let mut mins16 = [0i32; 16];
    for group in 0..8 {
        let range = 32 * group..32 * group + 32;
        sumi += scales[group] as i32 * dot_u8_i8(&q[range.clone()], &y.qs[range]);
        mins16[2 * group] = mins[group] as i32;
        mins16[2 * group + 1] = mins[group] as i32;
    }
    (sumi, bsum_dot(&mins16, y))
}

pub fn dot_q4_k(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut q = [0u8; QK_K];
        for group in 0..8 {
            for l in 0..32 {
                q[32 * group + l] = (x.qs[32 * (group / 2) + l] >> (4 * (group % 2))) & 0x0f;
            }
        }
        let (sumi, summin) = dot_k4_groups(&q, &x.scales, y);
        sum += y.d() * x.d() * sumi as f32 - y.d() * x.dmin() * summin as f32;
    }
    sum
}

pub fn dot_q5_k(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut q = [0u8; QK_K];
        for group in 0..8 {
            for l in 0..32 {
                let low = (x.qs[32 * (group / 2) + l] >> (4 * (group % 2))) & 0x0f;
                let high = ((x.qh[l] >> group) & 1) << 4;
                q[32 * group + l] = low | high;
            }
        }
        let (sumi, summin) = dot_k4_groups(&q, &x.scales, y);
        sum += y.d() * x.d() * sumi as f32 - y.d() * x.dmin() * summin as f32;
    }
    sum
}

pub fn dot_q6_k(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let mut sumi = 0i32;
        for group in 0..16 {
            let mut group_sum = 0i32;
            for l in 0..16 {
                let e = 16 * group + l;
                group_sum += q6_k_value(x, e) * y.qs[e] as i32;
            }
            sumi += x.scales[group] as i32 * group_sum;
        }
        sum += x.d() * y.d() * sumi as f32;
    }
    sum
}

/// Q8_K weights (ggml has no such CPU dot): `d * d * sumi`.
pub fn dot_q8_k(w: &[BlockQ8K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        sum += x.d() * y.d() * dot_i8(&x.qs, &y.qs) as f32;
    }
    sum
}
