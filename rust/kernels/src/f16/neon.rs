//! AArch64 half-precision conversions through inline assembly: `fcvtl` and
//! `fcvtn` are ARMv8.0 baseline instructions, but their intrinsics are
//! unstable on rustc 1.63. `fcvtn` rounds with the FPCR mode, which is
//! round-to-nearest-even unless a program changes it.

use std::arch::aarch64::*;
use std::arch::asm;

/// Widens 4 binary16 values to f32 with `fcvtl`.
#[inline(always)]
pub(crate) unsafe fn cvt_f16x4_f32(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    asm!(
        "fcvtl {out:v}.4s, {h:v}.4h",
        out = lateout(vreg) out,
        h = in(vreg) h,
        options(pure, nomem, nostack, preserves_flags)
    );
    out
}

/// Narrows 4 f32 values to binary16 with `fcvtn`.
#[inline(always)]
pub(crate) unsafe fn cvt_f32x4_f16(x: float32x4_t) -> uint16x4_t {
    let out: uint16x4_t;
    asm!(
        "fcvtn {out:v}.4h, {x:v}.4s",
        out = lateout(vreg) out,
        x = in(vreg) x,
        options(pure, nomem, nostack, preserves_flags)
    );
    out
}

/// Loads 4 binary16 values from `p` and widens them.
#[inline(always)]
pub(crate) unsafe fn load_f16x4(p: *const u16) -> float32x4_t {
    cvt_f16x4_f32(vld1_u16(p))
}

/// # Safety
/// `src` and `dst` have the same length.
pub(crate) unsafe fn f16_to_f32_row(src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 4 <= n {
        vst1q_f32(dst.as_mut_ptr().add(i), load_f16x4(src.as_ptr().add(i)));
        i += 4;
    }
    super::f16_to_f32_row_scalar(&src[i..n], &mut dst[i..n]);
}

/// # Safety
/// `src` and `dst` have the same length.
pub(crate) unsafe fn f32_to_f16_row(src: &[f32], dst: &mut [u16]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 4 <= n {
        let h = cvt_f32x4_f16(vld1q_f32(src.as_ptr().add(i)));
        vst1_u16(dst.as_mut_ptr().add(i), h);
        i += 4;
    }
    super::f32_to_f16_row_scalar(&src[i..n], &mut dst[i..n]);
}
