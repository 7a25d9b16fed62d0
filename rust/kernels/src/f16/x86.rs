//! F16C conversions through inline assembly (the F16C intrinsics are
//! unstable on rustc 1.63). Callers check [`has_f16c`] first.

use std::arch::asm;
use std::arch::x86_64::*;

/// Reports whether the CPU has F16C and AVX (needed for the ymm forms).
pub(crate) fn has_f16c() -> bool {
    is_x86_feature_detected!("f16c") && is_x86_feature_detected!("avx")
}

/// Widens 8 binary16 values to f32 with `vcvtph2ps`.
#[target_feature(enable = "avx")]
#[inline]
pub(crate) unsafe fn cvtph_ps(h: __m128i) -> __m256 {
    let out: __m256;
    asm!(
        "vcvtph2ps {out}, {h}",
        out = lateout(ymm_reg) out,
        h = in(xmm_reg) h,
        options(pure, nomem, nostack, preserves_flags)
    );
    out
}

/// Narrows 8 f32 values to binary16 with `vcvtps2ph`, rounding to nearest even
/// (immediate 0) regardless of MXCSR.
#[target_feature(enable = "avx")]
#[inline]
pub(crate) unsafe fn cvtps_ph(x: __m256) -> __m128i {
    let out: __m128i;
    asm!(
        "vcvtps2ph {out}, {x}, 0",
        out = lateout(xmm_reg) out,
        x = in(ymm_reg) x,
        options(pure, nomem, nostack, preserves_flags)
    );
    out
}

/// Loads 8 binary16 values from `p` and widens them.
#[target_feature(enable = "avx")]
#[inline]
pub(crate) unsafe fn load_f16x8(p: *const u16) -> __m256 {
    cvtph_ps(_mm_loadu_si128(p as *const __m128i))
}

/// # Safety
/// The CPU must have F16C and AVX; `src` and `dst` have the same length.
#[target_feature(enable = "avx")]
pub(crate) unsafe fn f16_to_f32_row(src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(dst.as_mut_ptr().add(i), load_f16x8(src.as_ptr().add(i)));
        i += 8;
    }
    super::f16_to_f32_row_scalar(&src[i..n], &mut dst[i..n]);
}

/// # Safety
/// The CPU must have F16C and AVX; `src` and `dst` have the same length.
#[target_feature(enable = "avx")]
pub(crate) unsafe fn f32_to_f16_row(src: &[f32], dst: &mut [u16]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        let h = cvtps_ph(_mm256_loadu_ps(src.as_ptr().add(i)));
        _mm_storeu_si128(dst.as_mut_ptr().add(i) as *mut __m128i, h);
        i += 8;
    }
    super::f32_to_f16_row_scalar(&src[i..n], &mut dst[i..n]);
}
