//! IEEE half precision and bfloat16 conversions.
//!
//! The scalar functions are exact: binary16 to f32 is lossless, and f32 to
//! binary16 rounds to nearest, ties to even, with overflow to infinity,
//! gradual underflow to subnormals and NaN kept quiet with its upper payload
//! bits (what x86 F16C `vcvtps2ph` and AArch64 `fcvtn` produce).
//!
//! The row conversions use the hardware instructions through inline
//! assembly: F16C `vcvtph2ps`/`vcvtps2ph` on x86_64 when the CPU has F16C and
//! the AVX2 path is active, and `fcvtl`/`fcvtn` on aarch64 (ARMv8.0 baseline).
//! Inline assembly is needed because the F16C and NEON half-precision
//! intrinsics are unstable on rustc 1.63.

#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

use crate::simd::{self, Isa};

const F16_EXP_MASK: u16 = 0x7c00;
const F16_MANT_MASK: u16 = 0x03ff;

/// Converts an IEEE binary16 value to f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = (h & F16_EXP_MASK) >> 10;
    let mant = (h & F16_MANT_MASK) as u32;

    if exp == 0 {
        // Zero or subnormal: mant * 2^-24, exact in f32.
        let magnitude = mant as f32 * (1.0 / 16_777_216.0);
        return f32::from_bits(sign | magnitude.to_bits());
    }
    if exp == 0x1f {
        // Infinity or NaN, payload kept.
        return f32::from_bits(sign | 0x7f80_0000 | (mant << 13));
    }
    f32::from_bits(sign | ((exp as u32 + 112) << 23) | (mant << 13))
}

/// Converts f32 to IEEE binary16 with round-to-nearest-even.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let abs = bits & 0x7fff_ffff;

    if abs > 0x7f80_0000 {
        // NaN: set the quiet bit and keep the top 9 payload bits.
        return sign | F16_EXP_MASK | 0x0200 | ((abs >> 13) & 0x03ff) as u16;
    }
    // 65520 is halfway between 65504 (largest finite) and 65536; the tie
    // rounds to the even neighbour, which is infinity.
    if abs >= 0x477f_f000 {
        return sign | F16_EXP_MASK;
    }
    if abs < 0x3880_0000 {
        return sign | f32_to_f16_subnormal(abs);
    }

    let exp16 = (abs >> 23) - 112;
    let mant = abs & 0x007f_ffff;
    let mut h = (exp16 << 10) | (mant >> 13);
    let rest = mant & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && (h & 1) == 1) {
        // A carry out of the mantissa correctly bumps the exponent.
        h += 1;
    }
    sign | h as u16
}

/// Rounds a magnitude below 2^-14 (the smallest normal binary16) to a
/// binary16 subnormal or zero, ties to even. `abs` is f32 bits without sign.
fn f32_to_f16_subnormal(abs: u32) -> u16 {
    let exp = abs >> 23;
    // Inputs below 2^-25 (including f32 subnormals) round to zero.
    if exp < 102 {
        return 0;
    }
    let significand = (abs & 0x007f_ffff) | 0x0080_0000;
    // value = significand * 2^(exp - 150); result unit is 2^-24.
    let shift = 126 - exp;
    let mut h = significand >> shift;
    let rest = significand & ((1u32 << shift) - 1);
    let half = 1u32 << (shift - 1);
    if rest > half || (rest == half && (h & 1) == 1) {
        // h may become 0x400, which is the encoding of the smallest normal.
        h += 1;
    }
    h as u16
}

/// Converts a bfloat16 value to f32 (exact).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Converts f32 to bfloat16 with round-to-nearest-even; NaN stays a quiet NaN.
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if (bits & 0x7fff_ffff) > 0x7f80_0000 {
        return ((bits >> 16) | 0x0040) as u16;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// Converts `src` to f32 into `dst` (same length).
pub fn f16_to_f32_row(src: &[u16], dst: &mut [f32]) {
    assert_eq!(
        src.len(),
        dst.len(),
        "f16_to_f32_row: src and dst lengths differ"
    );
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if x86::has_f16c() => unsafe { x86::f16_to_f32_row(src, dst) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::f16_to_f32_row(src, dst) },
        _ => f16_to_f32_row_scalar(src, dst),
    }
}

/// Converts `src` to binary16 into `dst` (same length), round-to-nearest-even.
pub fn f32_to_f16_row(src: &[f32], dst: &mut [u16]) {
    assert_eq!(
        src.len(),
        dst.len(),
        "f32_to_f16_row: src and dst lengths differ"
    );
    match simd::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if x86::has_f16c() => unsafe { x86::f32_to_f16_row(src, dst) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { neon::f32_to_f16_row(src, dst) },
        _ => f32_to_f16_row_scalar(src, dst),
    }
}

/// Converts `src` to f32 into `dst` (same length).
pub fn bf16_to_f32_row(src: &[u16], dst: &mut [f32]) {
    assert_eq!(
        src.len(),
        dst.len(),
        "bf16_to_f32_row: src and dst lengths differ"
    );
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = bf16_to_f32(s);
    }
}

pub(crate) fn f16_to_f32_row_scalar(src: &[u16], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f16_to_f32(s);
    }
}

pub(crate) fn f32_to_f16_row_scalar(src: &[f32], dst: &mut [u16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f32_to_f16(s);
    }
}

#[cfg(test)]
mod tests;
