//! IEEE half precision and bfloat16 conversions.

/// Converts an IEEE binary16 value to f32 (exact).
///
/// Branch-free: the magnitude bits moved into f32 position and scaled by
/// 2^112 give every finite value, subnormals included. Infinities and NaNs
/// get the f32 all-ones exponent instead.
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let magnitude = (h as u32) & 0x7fff;
    let shifted = magnitude << 13;
    let finite = (f32::from_bits(shifted) * f32::from_bits(0x7780_0000)).to_bits();
    let special = shifted | 0x7f80_0000;
    let bits = if magnitude >= 0x7c00 { special } else { finite };
    f32::from_bits(sign | bits)
}

/// Converts f32 to IEEE binary16 with round-to-nearest-even.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x7f_ffff;
    if exponent == 255 {
        // Infinity stays infinity; NaN stays a quiet NaN with the top payload bits.
        let nan_bits = if mantissa != 0 { 0x200 | (mantissa >> 13) as u16 } else { 0 };
        return sign | 0x7c00 | nan_bits;
    }
    let half_exponent = exponent - 127 + 15;
    if half_exponent >= 31 {
        return sign | 0x7c00;
    }
    if half_exponent >= 1 {
        // Normal: drop 13 mantissa bits, rounding to nearest even. A carry
        // out of the mantissa correctly bumps the exponent (up to infinity).
        let half = ((half_exponent as u32) << 10) | (mantissa >> 13);
        let rest = mantissa & 0x1fff;
        let round_up = rest > 0x1000 || (rest == 0x1000 && half & 1 == 1);
        return sign | (half + round_up as u32) as u16;
    }
    // Subnormal or zero: the result counts units of 2^-24.
    let shift = (126 - exponent) as u32;
    if shift > 24 {
        return sign;
    }
    let significand = mantissa | 0x80_0000;
    let half = significand >> shift;
    let rest = significand & ((1 << shift) - 1);
    let halfway = 1 << (shift - 1);
    let round_up = rest > halfway || (rest == halfway && half & 1 == 1);
    sign | (half + round_up as u32) as u16
}

/// Converts a bfloat16 value to f32 (exact).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Converts `src` to f32 into `dst` (same length).
pub fn f16_to_f32_row(src: &[u16], dst: &mut [f32]) {
    todo!()
}

/// Converts `src` to binary16 into `dst` (same length), round-to-nearest-even.
pub fn f32_to_f16_row(src: &[f32], dst: &mut [u16]) {
    todo!()
}
