use super::*;
use crate::turbo::prng::SplitMix64;

/// The value of binary16 bits computed independently in f64.
fn f16_value(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let mant = (h & 0x3ff) as f64;
    if exp == 0 {
        sign * mant * 2f64.powi(-24)
    } else {
        sign * (1.0 + mant / 1024.0) * 2f64.powi(exp - 15)
    }
}

/// Rounds |x| to binary16 by searching the ordered finite values, ties to even.
fn f32_to_f16_oracle(x: f32) -> u16 {
    let sign: u16 = if x.is_sign_negative() { 0x8000 } else { 0 };
    let a = (x as f64).abs();
    if a >= 65520.0 {
        return sign | 0x7c00;
    }
    // Largest h with value(h) <= a; positive finite values are monotonic in h.
    let (mut lo, mut hi) = (0u16, 0x7bffu16);
    while lo < hi {
        let mid = lo + (hi - lo + 1) / 2;
        if f16_value(mid) <= a {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let below = lo;
    let above = lo + 1;
    let d_below = a - f16_value(below);
    let d_above = f16_value(above) - a;
    let h = if d_below < d_above {
        below
    } else if d_above < d_below {
        above
    } else if below & 1 == 0 {
        below
    } else {
        above
    };
    sign | h
}

#[test]
fn f16_to_f32_all_values() {
    for h in 0..=u16::MAX {
        let x = f16_to_f32(h);
        let exp = (h >> 10) & 0x1f;
        if exp == 0x1f {
            let mant = h & 0x3ff;
            assert_eq!(x.is_nan(), mant != 0, "h={:#06x}", h);
            assert_eq!(x.is_sign_negative(), h & 0x8000 != 0, "h={:#06x}", h);
            continue;
        }
        assert_eq!(x as f64, f16_value(h), "h={:#06x}", h);
        assert_eq!(x.is_sign_negative(), h & 0x8000 != 0, "h={:#06x} sign", h);
    }
}

#[test]
fn f16_round_trip_all_values() {
    for h in 0..=u16::MAX {
        let back = f32_to_f16(f16_to_f32(h));
        if f16_to_f32(h).is_nan() {
            assert_eq!(back & 0x7e00, 0x7e00, "h={:#06x} must stay a quiet NaN", h);
            assert_eq!(back & 0x8000, h & 0x8000, "h={:#06x} NaN sign", h);
        } else {
            assert_eq!(back, h, "h={:#06x}", h);
        }
    }
}

#[test]
fn f32_to_f16_edge_cases() {
    let cases: &[(f32, u16)] = &[
        (0.0, 0x0000),
        (-0.0, 0x8000),
        (1.0, 0x3c00),
        (-2.0, 0xc000),
        (65504.0, 0x7bff),
        (65519.99, 0x7bff),
        (65520.0, 0x7c00),
        (-1e10, 0xfc00),
        (f32::INFINITY, 0x7c00),
        (f32::NEG_INFINITY, 0xfc00),
        // Smallest subnormal (2^-24) and the ties around it.
        (1.0 / 16_777_216.0, 0x0001),
        (1.0 / 33_554_432.0, 0x0000),
        (f32::from_bits(0x3300_0001), 0x0001),
        (1.5 / 16_777_216.0, 0x0002),
        // Largest subnormal, the tie above it (even wins) and 2^-14.
        (1023.0 / 16_777_216.0, 0x03ff),
        (2047.0 / 33_554_432.0, 0x0400),
        (1.0 / 16384.0, 0x0400),
        // 1 + 2^-11 is a tie between 1 and 1 + 2^-10: even wins.
        (1.0 + 1.0 / 2048.0, 0x3c00),
        (1.0 + 3.0 / 2048.0, 0x3c02),
        (f32::MIN_POSITIVE, 0x0000),
        (1e-45, 0x0000),
    ];
    for &(x, want) in cases {
        assert_eq!(f32_to_f16(x), want, "x={:e}", x);
        assert_eq!(f32_to_f16_oracle(x), want, "oracle x={:e}", x);
    }
    let nan = f32_to_f16(f32::from_bits(0x7fa0_0000));
    assert_eq!(nan, 0x7f00, "signalling NaN payload is kept and quieted");
}

#[test]
fn f32_to_f16_matches_oracle() {
    let mut rng = SplitMix64::new(1);
    for i in 0..200_000 {
        // Mix wide random bit patterns with values near the f16 range.
        let x = if i % 2 == 0 {
            f32::from_bits(rng.next_u64() as u32)
        } else {
            let e = rng.uniform(-27.0, 17.0);
            rng.uniform(-1.0, 1.0) * 2f32.powf(e)
        };
        if x.is_nan() {
            continue;
        }
        assert_eq!(
            f32_to_f16(x),
            f32_to_f16_oracle(x),
            "x={:e} bits={:#010x}",
            x,
            x.to_bits()
        );
    }
}

#[test]
fn bf16_rounding() {
    assert_eq!(f32_to_bf16(1.0), 0x3f80);
    assert_eq!(f32_to_bf16(-1.0), 0xbf80);
    // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even (1.0) wins.
    assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
    assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
    assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
    assert_eq!(f32_to_bf16(f32::MAX), 0x7f80, "f32::MAX rounds to infinity");
    assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
    for h in 0..=u16::MAX {
        if bf16_to_f32(h).is_nan() {
            continue;
        }
        assert_eq!(f32_to_bf16(bf16_to_f32(h)), h, "h={:#06x}", h);
    }
}

/// Random f32 values of every class, NaN included.
fn mixed_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|i| match i % 3 {
            0 => f32::from_bits(rng.next_u64() as u32),
            1 => rng.uniform(-70000.0, 70000.0),
            _ => rng.uniform(-1.0, 1.0) * 1e-5,
        })
        .collect()
}

fn assert_rows_match_scalar(
    to_f32: unsafe fn(&[u16], &mut [f32]),
    to_f16: unsafe fn(&[f32], &mut [u16]),
) {
    for &n in &[0usize, 1, 3, 4, 7, 8, 9, 15, 16, 17, 100, 1000] {
        let src: Vec<u16> = (0..n).map(|i| (i as u16).wrapping_mul(40_503)).collect();
        let mut want = vec![0f32; n];
        let mut got = vec![0f32; n];
        f16_to_f32_row_scalar(&src, &mut want);
        unsafe { to_f32(&src, &mut got) };
        for i in 0..n {
            if want[i].is_nan() {
                assert!(got[i].is_nan(), "n={} i={} h={:#06x}", n, i, src[i]);
            } else {
                assert_eq!(got[i].to_bits(), want[i].to_bits(), "n={} i={}", n, i);
            }
        }

        let x = mixed_f32(n, n as u64);
        let mut want = vec![0u16; n];
        let mut got = vec![0u16; n];
        f32_to_f16_row_scalar(&x, &mut want);
        unsafe { to_f16(&x, &mut got) };
        assert_eq!(got, want, "n={}", n);
    }
    // Every binary16 value, through the hardware in both directions.
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let mut wide = vec![0f32; all.len()];
    unsafe { to_f32(&all, &mut wide) };
    let mut back = vec![0u16; all.len()];
    unsafe { to_f16(&wide, &mut back) };
    let mut back_scalar = vec![0u16; all.len()];
    f32_to_f16_row_scalar(&wide, &mut back_scalar);
    assert_eq!(back, back_scalar);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn f16c_rows_match_scalar() {
    if !x86::has_f16c() {
        eprintln!("skipped: this CPU has no F16C");
        return;
    }
    assert_rows_match_scalar(x86::f16_to_f32_row, x86::f32_to_f16_row);
}

#[cfg(target_arch = "aarch64")]
#[test]
fn neon_rows_match_scalar() {
    assert_rows_match_scalar(neon::f16_to_f32_row, neon::f32_to_f16_row);
}

#[test]
fn public_rows_match_scalar() {
    let x = mixed_f32(1000, 7);
    let mut h = vec![0u16; x.len()];
    f32_to_f16_row(&x, &mut h);
    let mut back = vec![0f32; x.len()];
    f16_to_f32_row(&h, &mut back);
    for i in 0..x.len() {
        assert_eq!(h[i], f32_to_f16(x[i]), "i={}", i);
        let want = f16_to_f32(h[i]);
        assert!(
            back[i].to_bits() == want.to_bits() || want.is_nan(),
            "i={}",
            i
        );
    }
}
