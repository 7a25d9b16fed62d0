use super::scalar;
use super::*;
use crate::f16::{f16_to_f32, f32_to_f16};
use crate::turbo::prng::SplitMix64;

const LENGTHS: &[usize] = &[1, 15, 16, 17, 64, 256, 640, 1000];

/// One SIMD implementation of every kernel, for comparison with `scalar`.
struct Simd {
    name: &'static str,
    dot_f32: unsafe fn(&[f32], &[f32]) -> f32,
    dot_f16_f32: unsafe fn(&[u16], &[f32]) -> f32,
    axpy_f32: unsafe fn(&mut [f32], f32, &[f32]),
    axpy_f16: unsafe fn(&mut [f32], f32, &[u16]),
    scale: unsafe fn(&mut [f32], f32),
    add_inplace: unsafe fn(&mut [f32], &[f32]),
    rms_scale: unsafe fn(&[f32], f32) -> f32,
    rms_apply: unsafe fn(&mut [f32], &[f32], &[f32], f32),
    rms_apply_inplace: unsafe fn(&mut [f32], &[f32], f32),
    max: unsafe fn(&[f32]) -> f32,
    exp_sub_sum: unsafe fn(&mut [f32], f32) -> f64,
    rope_normal: unsafe fn(&mut [f32], &[f32], &[f32]),
    rope_neox: unsafe fn(&mut [f32], &[f32], &[f32]),
    silu_mul: unsafe fn(&mut [f32], &[f32]),
    gelu_tanh_mul: unsafe fn(&mut [f32], &[f32]),
    exp_slice: unsafe fn(&mut [f32]),
}

#[cfg(target_arch = "x86_64")]
fn simd_paths() -> Vec<Simd> {
    if !(Isa::Avx2.is_supported() && f16c()) {
        eprintln!("skipped: this CPU lacks AVX2, FMA or F16C");
        return Vec::new();
    }
    vec![Simd {
        name: "avx2",
        dot_f32: avx2::dot_f32,
        dot_f16_f32: avx2::dot_f16_f32,
        axpy_f32: avx2::axpy_f32,
        axpy_f16: avx2::axpy_f16,
        scale: avx2::scale,
        add_inplace: avx2::add_inplace,
        rms_scale: avx2::rms_scale,
        rms_apply: avx2::rms_apply,
        rms_apply_inplace: avx2::rms_apply_inplace,
        max: avx2::max,
        exp_sub_sum: avx2::exp_sub_sum,
        rope_normal: avx2::rope_normal,
        rope_neox: avx2::rope_neox,
        silu_mul: avx2::silu_mul,
        gelu_tanh_mul: avx2::gelu_tanh_mul,
        exp_slice: avx2::exp_slice,
    }]
}

#[cfg(target_arch = "aarch64")]
fn simd_paths() -> Vec<Simd> {
    vec![Simd {
        name: "neon",
        dot_f32: neon::dot_f32,
        dot_f16_f32: neon::dot_f16_f32,
        axpy_f32: neon::axpy_f32,
        axpy_f16: neon::axpy_f16,
        scale: neon::scale,
        add_inplace: neon::add_inplace,
        rms_scale: neon::rms_scale,
        rms_apply: neon::rms_apply,
        rms_apply_inplace: neon::rms_apply_inplace,
        max: neon::max,
        exp_sub_sum: neon::exp_sub_sum,
        rope_normal: neon::rope_normal,
        rope_neox: neon::rope_neox,
        silu_mul: neon::silu_mul,
        gelu_tanh_mul: neon::gelu_tanh_mul,
        exp_slice: neon::exp_slice,
    }]
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn simd_paths() -> Vec<Simd> {
    Vec::new()
}

fn vectors(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = SplitMix64::new(seed);
    (rng.uniform_vec(n, -2.0, 2.0), rng.uniform_vec(n, -2.0, 2.0))
}

fn to_f16(x: &[f32]) -> Vec<u16> {
    x.iter().map(|&v| f32_to_f16(v)).collect()
}

/// Asserts `|got - want| <= rel * |want| + abs` element by element.
fn assert_close(label: &str, got: &[f32], want: &[f32], rel: f32, abs: f32) {
    assert_eq!(got.len(), want.len(), "{}: length", label);
    for i in 0..got.len() {
        let tol = rel * want[i].abs() + abs;
        assert!(
            (got[i] - want[i]).abs() <= tol,
            "{}: element {} is {} but the reference is {} (tolerance {})",
            label,
            i,
            got[i],
            want[i],
            tol
        );
    }
}

#[test]
fn simd_dot_matches_scalar() {
    for k in simd_paths() {
        for &n in LENGTHS {
            let (a, b) = vectors(n, n as u64);
            let magnitude: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
            let tol = 1e-6 * magnitude;
            let want = scalar::dot_f32(&a, &b);
            let got = unsafe { (k.dot_f32)(&a, &b) };
            assert!(
                (got - want).abs() <= tol,
                "{} dot_f32 n={}: {} vs {}",
                k.name,
                n,
                got,
                want
            );

            let ah = to_f16(&a);
            let want = scalar::dot_f16_f32(&ah, &b);
            let got = unsafe { (k.dot_f16_f32)(&ah, &b) };
            assert!(
                (got - want).abs() <= tol,
                "{} dot_f16_f32 n={}: {} vs {}",
                k.name,
                n,
                got,
                want
            );
        }
    }
}

#[test]
fn simd_axpy_matches_scalar() {
    for k in simd_paths() {
        for &n in LENGTHS {
            let (x, y0) = vectors(n, 100 + n as u64);
            let alpha = 0.37;
            let mut want = y0.clone();
            scalar::axpy_f32(&mut want, alpha, &x);
            let mut got = y0.clone();
            unsafe { (k.axpy_f32)(&mut got, alpha, &x) };
            // FMA rounds once where the scalar code rounds twice.
            assert_close(
                &format!("{} axpy_f32 n={}", k.name, n),
                &got,
                &want,
                2e-7,
                2e-7,
            );

            let xh = to_f16(&x);
            let mut want = y0.clone();
            scalar::axpy_f16(&mut want, alpha, &xh);
            let mut got = y0.clone();
            unsafe { (k.axpy_f16)(&mut got, alpha, &xh) };
            assert_close(
                &format!("{} axpy_f16 n={}", k.name, n),
                &got,
                &want,
                2e-7,
                2e-7,
            );
        }
    }
}

#[test]
fn simd_scale_and_add_match_scalar_exactly() {
    for k in simd_paths() {
        for &n in LENGTHS {
            let (x, y0) = vectors(n, 200 + n as u64);
            let mut want = x.clone();
            scalar::scale(&mut want, -1.7);
            let mut got = x.clone();
            unsafe { (k.scale)(&mut got, -1.7) };
            assert_eq!(got, want, "{} scale n={}", k.name, n);

            let mut want = y0.clone();
            scalar::add_inplace(&mut want, &x);
            let mut got = y0.clone();
            unsafe { (k.add_inplace)(&mut got, &x) };
            assert_eq!(got, want, "{} add_inplace n={}", k.name, n);
        }
    }
}

#[test]
fn simd_rms_norm_matches_scalar() {
    for k in simd_paths() {
        for &n in LENGTHS {
            let (x, w) = vectors(n, 300 + n as u64);
            let want_scale = scalar::rms_scale(&x, 1e-6);
            let got_scale = unsafe { (k.rms_scale)(&x, 1e-6) };
            // Only the order of the f64 additions differs.
            assert!(
                (got_scale - want_scale).abs() <= 1e-7 * want_scale,
                "{} rms_scale n={}: {} vs {}",
                k.name,
                n,
                got_scale,
                want_scale
            );

            let mut want = vec![0f32; n];
            scalar::rms_apply(&mut want, &x, &w, want_scale);
            let mut got = vec![0f32; n];
            unsafe { (k.rms_apply)(&mut got, &x, &w, want_scale) };
            assert_eq!(got, want, "{} rms_apply n={}", k.name, n);

            let mut got = x.clone();
            unsafe { (k.rms_apply_inplace)(&mut got, &w, want_scale) };
            assert_eq!(got, want, "{} rms_apply_inplace n={}", k.name, n);
        }
    }
}

#[test]
fn simd_softmax_parts_match_scalar() {
    for k in simd_paths() {
        for &n in LENGTHS {
            let mut rng = SplitMix64::new(400 + n as u64);
            let x = rng.uniform_vec(n, -30.0, 10.0);
            let want_max = scalar::max(&x);
            let got_max = unsafe { (k.max)(&x) };
            assert_eq!(got_max, want_max, "{} max n={}", k.name, n);

            let mut want = x.clone();
            let want_sum = scalar::exp_sub_sum(&mut want, want_max);
            let mut got = x.clone();
            let got_sum = unsafe { (k.exp_sub_sum)(&mut got, want_max) };
            assert_close(
                &format!("{} exp_sub_sum n={}", k.name, n),
                &got,
                &want,
                4e-7,
                1e-30,
            );
            assert!(
                (got_sum - want_sum).abs() <= 4e-7 * want_sum,
                "{} exp_sub_sum n={}: sum {} vs {}",
                k.name,
                n,
                got_sum,
                want_sum
            );
        }
    }
}

#[test]
fn simd_rope_matches_scalar() {
    for k in simd_paths() {
        for &n in LENGTHS {
            let pairs = n / 2;
            let mut rng = SplitMix64::new(500 + n as u64);
            let x = rng.uniform_vec(2 * pairs, -3.0, 3.0);
            let angles = rng.uniform_vec(pairs, -100.0, 100.0);
            let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
            let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
            let bound = 3.0 * 2.0 * 1e-6;

            let mut want = x.clone();
            scalar::rope_normal(&mut want, &cos, &sin);
            let mut got = x.clone();
            unsafe { (k.rope_normal)(&mut got, &cos, &sin) };
            assert_close(
                &format!("{} rope_normal n={}", k.name, n),
                &got,
                &want,
                0.0,
                bound,
            );

            let mut want = x.clone();
            scalar::rope_neox(&mut want, &cos, &sin);
            let mut got = x.clone();
            unsafe { (k.rope_neox)(&mut got, &cos, &sin) };
            assert_close(
                &format!("{} rope_neox n={}", k.name, n),
                &got,
                &want,
                0.0,
                bound,
            );
        }
    }
}

#[test]
fn simd_gated_activations_match_scalar() {
    for k in simd_paths() {
        for &n in LENGTHS {
            let mut rng = SplitMix64::new(600 + n as u64);
            let mut gate = rng.uniform_vec(n, -12.0, 12.0);
            // Include the ends of the exp clamp and exact zero.
            if n >= 4 {
                gate[0] = -100.0;
                gate[1] = 100.0;
                gate[2] = 0.0;
                gate[3] = -1e-4;
            }
            let up = rng.uniform_vec(n, -2.0, 2.0);
            // Tolerance from the exp polynomial and the division, relative to
            // the size of `x * up`: the results themselves can be tiny.
            let tol: Vec<f32> = gate
                .iter()
                .zip(&up)
                .map(|(g, u)| 1e-6 * (g.abs() + 1.0) * u.abs())
                .collect();

            let mut want = gate.clone();
            scalar::silu_mul(&mut want, &up);
            let mut got = gate.clone();
            unsafe { (k.silu_mul)(&mut got, &up) };
            for i in 0..n {
                assert!(
                    (got[i] - want[i]).abs() <= tol[i],
                    "{} silu_mul n={} i={}: {} vs {}",
                    k.name,
                    n,
                    i,
                    got[i],
                    want[i]
                );
            }

            let mut want = gate.clone();
            scalar::gelu_tanh_mul(&mut want, &up);
            let mut got = gate.clone();
            unsafe { (k.gelu_tanh_mul)(&mut got, &up) };
            for i in 0..n {
                assert!(
                    (got[i] - want[i]).abs() <= tol[i],
                    "{} gelu_tanh_mul n={} i={}: {} vs {}",
                    k.name,
                    n,
                    i,
                    got[i],
                    want[i]
                );
            }
        }
    }
}

#[test]
fn exp_poly_accuracy() {
    for k in simd_paths() {
        let mut rng = SplitMix64::new(700);
        let x = rng.uniform_vec(200_000, -87.0, 88.0);
        let mut y = x.clone();
        unsafe { (k.exp_slice)(&mut y) };
        let mut worst = 0f64;
        for (&xi, &yi) in x.iter().zip(&y) {
            let want = (xi as f64).exp();
            worst = worst.max(((yi as f64) - want).abs() / want);
        }
        eprintln!(
            "{} exp polynomial: max relative error {:.3e}",
            k.name, worst
        );
        assert!(
            worst < 2e-7,
            "{} exp max relative error {:e}",
            k.name,
            worst
        );

        let mut edges = [-1000.0f32, -88.0, 0.0, 88.0, 1000.0, 1.0, -1.0, 0.5];
        unsafe { (k.exp_slice)(&mut edges) };
        assert_eq!(edges[0], 0.0, "{} exp(-1000)", k.name);
        assert_eq!(edges[1], 0.0, "{} exp(-88) flushes to 0", k.name);
        assert_eq!(edges[2], 1.0, "{} exp(0)", k.name);
        assert!(edges[3].is_finite(), "{} exp(88) = {}", k.name, edges[3]);
        assert!(edges[3] > 1.6e38, "{} exp(88) = {}", k.name, edges[3]);
        assert_eq!(edges[4], edges[3], "{} exp saturates above 88", k.name);
    }
}

#[test]
fn scalar_rms_norm_matches_formula() {
    let (x, w) = vectors(640, 1);
    let mut out = vec![0f32; x.len()];
    scalar::rms_apply(&mut out, &x, &w, scalar::rms_scale(&x, 1e-5));
    let mean_sq: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (mean_sq + 1e-5).sqrt();
    for i in 0..x.len() {
        let want = (x[i] as f64 * inv * w[i] as f64) as f32;
        assert!(
            (out[i] - want).abs() <= 1e-6 * (want.abs() + 1e-3),
            "i={}: {} vs {}",
            i,
            out[i],
            want
        );
    }
}

#[test]
fn softmax_normalizes_and_returns_sum() {
    for &n in LENGTHS {
        let mut rng = SplitMix64::new(800 + n as u64);
        let x = rng.uniform_vec(n, -20.0, 20.0);
        let max = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let want_sum: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
        let mut y = x.clone();
        let sum = softmax(&mut y);
        assert!(
            ((sum as f64) - want_sum).abs() <= 1e-6 * want_sum,
            "n={}: sum {} vs {}",
            n,
            sum,
            want_sum
        );
        let total: f64 = y.iter().map(|&v| v as f64).sum();
        assert!(
            (total - 1.0).abs() < 1e-5,
            "n={}: probabilities sum to {}",
            n,
            total
        );
        for i in 0..n {
            let want = ((x[i] as f64 - max).exp() / want_sum) as f32;
            // `x - max` is rounded in f32, which moves exp by |x - max| ulp.
            let tol = (1e-6 + 6e-8 * (x[i] as f64 - max).abs() as f32) * want + 1e-30;
            assert!(
                (y[i] - want).abs() <= tol,
                "n={} i={}: {} vs {}",
                n,
                i,
                y[i],
                want
            );
        }
    }
    assert_eq!(softmax(&mut []), 0.0);
}

#[test]
fn rope_rotates_the_documented_pairs() {
    let x: Vec<f32> = (0..10).map(|i| i as f32 + 1.0).collect();
    let angles = [0.3f32, -1.1, 2.0, 0.7];
    let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();

    let mut normal = x.clone();
    rope(&mut normal, &cos, &sin, false);
    let mut neox = x.clone();
    rope(&mut neox, &cos, &sin, true);
    for i in 0..4 {
        let (c, s) = (angles[i].cos() as f64, angles[i].sin() as f64);
        let (a, b) = (x[2 * i] as f64, x[2 * i + 1] as f64);
        assert!(
            (normal[2 * i] as f64 - (a * c - b * s)).abs() < 1e-5,
            "normal pair {}",
            i
        );
        assert!(
            (normal[2 * i + 1] as f64 - (a * s + b * c)).abs() < 1e-5,
            "normal pair {}",
            i
        );
        let (a, b) = (x[i] as f64, x[i + 4] as f64);
        assert!(
            (neox[i] as f64 - (a * c - b * s)).abs() < 1e-5,
            "neox pair {}",
            i
        );
        assert!(
            (neox[i + 4] as f64 - (a * s + b * c)).abs() < 1e-5,
            "neox pair {}",
            i
        );
    }
    assert_eq!(
        &normal[8..],
        &x[8..],
        "dimensions past n_rot stay unchanged"
    );
    assert_eq!(&neox[8..], &x[8..], "dimensions past n_rot stay unchanged");
}

#[test]
fn scalar_activations_match_formulas() {
    for &x in &[-20.0f32, -3.0, -0.5, 0.0, 0.25, 1.0, 4.0, 30.0] {
        let xd = x as f64;
        let silu = xd / (1.0 + (-xd).exp());
        assert!(
            (scalar::silu(x) as f64 - silu).abs() <= 1e-6 * (silu.abs() + 1e-6),
            "silu({})",
            x
        );
        let u = (2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd * xd * xd);
        let gelu = 0.5 * xd * (1.0 + u.tanh());
        assert!(
            (scalar::gelu_tanh(x) as f64 - gelu).abs() <= 1e-6 * (xd.abs() + 1e-3),
            "gelu({})",
            x
        );
    }
}

#[test]
fn gelu_f16_table_variant() {
    let gate = [-11.0f32, -10.0, -1.3, 0.1, 2.7, 10.0, 12.5];
    let up = [1.0f32, 1.0, 2.0, 1.0, -1.0, 0.5, 1.0];
    let mut got = gate;
    gelu_tanh_mul_f16_table(&mut got, &up);
    assert_eq!(got[0], 0.0);
    assert_eq!(got[1], 0.0);
    assert_eq!(got[5], 5.0);
    assert_eq!(got[6], 12.5);
    for i in 2..5 {
        let g = scalar::gelu_tanh(f16_to_f32(f32_to_f16(gate[i])));
        assert_eq!(got[i], f16_to_f32(f32_to_f16(g)) * up[i], "i={}", i);
        assert!(
            (got[i] - scalar::gelu_tanh(gate[i]) * up[i]).abs() < 1e-2,
            "i={} near the f32 GELU",
            i
        );
    }
}

#[test]
fn public_ops_reject_length_mismatch() {
    let r = std::panic::catch_unwind(|| dot_f32(&[1.0, 2.0], &[1.0]));
    assert!(r.is_err());
    let r = std::panic::catch_unwind(|| rope(&mut [0.0; 3], &[1.0, 1.0], &[0.0, 0.0], false));
    assert!(r.is_err());
}
