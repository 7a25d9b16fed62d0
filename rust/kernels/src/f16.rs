//! IEEE half precision and bfloat16 conversions.

/// Converts an IEEE binary16 value to f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    todo!()
}

/// Converts f32 to IEEE binary16 with round-to-nearest-even.
pub fn f32_to_f16(x: f32) -> u16 {
    todo!()
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
