use super::codebook::{conditional_mean, derive, erf, MAX_LEVELS};
use super::prng::SplitMix64;
use super::rotation::{rotate_inverse_scalar, rotate_scalar};
use super::*;

const ALL_BITS: [TurboBits; 3] = [TurboBits::B3, TurboBits::B4, TurboBits::B5];
const LENGTHS: [usize; 8] = [1, 2, 4, 8, 16, 32, 64, 128];
const SIMD_LENGTHS: [usize; 5] = [8, 16, 32, 64, 128];

/// Approximate published Lloyd-Max MSE per coordinate for N(0, 1).
fn reference_distortion(bits: TurboBits) -> f64 {
    match bits {
        TurboBits::B3 => 0.0345,
        TurboBits::B4 => 0.0095,
        TurboBits::B5 => 0.0025,
    }
}

/// `(bits, q, len, blocks, stride, n, out, out_stride)`.
type ScoreHeadsFn = unsafe fn(TurboBits, &[f32], usize, &[u8], usize, usize, &mut [f32], usize);
/// `(bits, acc, len, weights, w_stride, n, blocks, stride)`.
type AccumulateHeadsFn = unsafe fn(TurboBits, &mut [f32], usize, &[f32], usize, usize, &[u8], usize);

/// One SIMD implementation of the TurboQuant kernels.
struct Simd {
    name: &'static str,
    rotate: unsafe fn(&mut [f32]),
    rotate_inverse: unsafe fn(&mut [f32]),
    quantize_block: unsafe fn(TurboBits, &[f32], &mut [u8]),
    score_heads: ScoreHeadsFn,
    accumulate_heads: AccumulateHeadsFn,
}

#[cfg(target_arch = "x86_64")]
fn simd_paths() -> Vec<Simd> {
    if !Isa::Avx2.is_supported() {
        eprintln!("skipped: this CPU lacks AVX2 or FMA");
        return Vec::new();
    }
    vec![Simd {
        name: "avx2",
        rotate: avx2::rotate,
        rotate_inverse: avx2::rotate_inverse,
        quantize_block: avx2::quantize_block,
        score_heads: avx2::score_heads,
        accumulate_heads: avx2::accumulate_heads,
    }]
}

#[cfg(target_arch = "aarch64")]
fn simd_paths() -> Vec<Simd> {
    vec![Simd {
        name: "neon",
        rotate: neon::rotate,
        rotate_inverse: neon::rotate_inverse,
        quantize_block: neon::quantize_block,
        score_heads: neon::score_heads,
        accumulate_heads: neon::accumulate_heads,
    }]
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn simd_paths() -> Vec<Simd> {
    Vec::new()
}

fn quantize_scalar(bits: TurboBits, x: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; block_bytes(bits, x.len())];
    scalar::quantize_block(bits, x, &mut out, SCALE_RULE);
    out
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

fn norm_sq(a: &[f32]) -> f64 {
    dot(a, a)
}

/// Inputs that exercise the quantizer: Gaussian, uniform, one outlier,
/// large and tiny magnitudes, a constant vector and zero.
fn test_vectors(len: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = SplitMix64::new(seed);
    let mut outlier = rng.gaussian_vec(len);
    outlier[len / 2] = 40.0;
    vec![
        rng.gaussian_vec(len),
        rng.uniform_vec(len, -1.0, 1.0),
        outlier,
        rng.gaussian_vec(len).iter().map(|v| v * 300.0).collect(),
        rng.gaussian_vec(len).iter().map(|v| v * 1e-3).collect(),
        vec![0.75; len],
        vec![0.0; len],
    ]
}

#[test]
fn block_lengths_split_head_dims() {
    assert_eq!(block_lengths(64), vec![64]);
    assert_eq!(block_lengths(128), vec![128]);
    assert_eq!(block_lengths(256), vec![128, 128]);
    assert_eq!(block_lengths(80), vec![64, 16]);
    assert_eq!(block_lengths(96), vec![64, 32]);
    assert_eq!(block_lengths(1), vec![1]);
    assert_eq!(block_lengths(200), vec![128, 64, 8]);
    assert!(block_lengths(0).is_empty());
    for head_dim in 1..=600 {
        let lengths = block_lengths(head_dim);
        assert_eq!(
            lengths.iter().sum::<usize>(),
            head_dim,
            "head_dim {}",
            head_dim
        );
        for w in lengths.windows(2) {
            assert!(
                w[0] >= w[1],
                "head_dim {}: {:?} is not largest first",
                head_dim,
                lengths
            );
        }
        for &len in &lengths {
            assert!(
                len.is_power_of_two(),
                "head_dim {}: {:?}",
                head_dim,
                lengths
            );
            assert!(len <= MAX_BLOCK, "head_dim {}: {:?}", head_dim, lengths);
        }
    }
}

#[test]
fn block_bytes_match_the_layout() {
    assert_eq!(block_bytes(TurboBits::B3, 128), 50);
    assert_eq!(block_bytes(TurboBits::B4, 128), 66);
    assert_eq!(block_bytes(TurboBits::B5, 128), 82);
    assert_eq!(block_bytes(TurboBits::B3, 64), 26);
    assert_eq!(block_bytes(TurboBits::B4, 16), 10);
    assert_eq!(block_bytes(TurboBits::B5, 16), 12);
    assert_eq!(block_bytes(TurboBits::B3, 1), 3);
    assert_eq!(head_bytes(TurboBits::B4, 80), 34 + 10);
    assert_eq!(head_bytes(TurboBits::B4, 256), 132);
}

#[test]
fn packing_round_trips_codes() {
    let mut rng = SplitMix64::new(3);
    for &bits in &ALL_BITS {
        let levels = 1u64 << bits.bits();
        for &len in &LENGTHS {
            let codes: Vec<u8> = (0..len).map(|_| (rng.next_u64() % levels) as u8).collect();
            let mut block = vec![0xffu8; block_bytes(bits, len)];
            scalar::pack_codes(bits, &codes, &mut block);
            for (i, &c) in codes.iter().enumerate() {
                assert_eq!(
                    scalar::code_at(bits, &block, len, i),
                    c as usize,
                    "{:?} len {} i {}",
                    bits,
                    len,
                    i
                );
            }
        }
    }
}

#[test]
fn packing_follows_documented_bit_order() {
    let codes: Vec<u8> = (0..16).map(|i| i as u8).collect();
    let mut block = vec![0u8; 16];

    scalar::pack_codes(TurboBits::B4, &codes, &mut block);
    assert_eq!(
        &block[..2],
        &[0x10, 0x32],
        "4 bits: even codes in low nibbles"
    );

    // 3 bits: codes 0..8 = 000 001 010 011 100 101 110 111, LSB first.
    scalar::pack_codes(TurboBits::B3, &codes[..8], &mut block);
    let stream = block[0] as u32 | (block[1] as u32) << 8 | (block[2] as u32) << 16;
    assert_eq!(stream, 0o76543210, "3 bits: code i at bit 3i");

    let codes5 = [17u8, 2, 31, 16, 0, 0, 0, 0, 1];
    scalar::pack_codes(TurboBits::B5, &codes5, &mut block);
    assert_eq!(
        block[0], 0b1101,
        "5 bits: high plane bit i is bit 4 of code i"
    );
    assert_eq!(block[1], 0, "5 bits: high plane of the 9th code");
    assert_eq!(
        block[2], 0x21,
        "5 bits: nibble plane follows the high plane"
    );
    assert_eq!(block[3], 0x0f);
}

#[test]
fn erf_known_values() {
    let cases = [
        (0.0, 0.0),
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (-1.0, -0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (3.0, 0.999_977_909_503_001_4),
        (5.0, 0.999_999_999_998_462_5),
        (7.0, 1.0),
    ];
    for &(x, want) in &cases {
        assert!(
            (erf(x) - want).abs() < 2e-15,
            "erf({}) = {:e}, want {:e}",
            x,
            erf(x),
            want
        );
    }
}

#[test]
fn codebook_satisfies_lloyd_max_conditions() {
    for &bits in &ALL_BITS {
        let book = derive(bits.bits());
        let levels = 1usize << bits.bits();
        assert_eq!(book.levels, levels);
        let c = &book.centroids_f64;
        for j in 0..levels {
            assert_eq!(
                c[j],
                -c[levels - 1 - j],
                "{:?}: centroid {} is not mirrored",
                bits,
                j
            );
        }
        for j in 1..levels {
            assert!(
                c[j] > c[j - 1],
                "{:?}: centroids not ascending at {}",
                bits,
                j
            );
        }
        for j in levels..MAX_LEVELS {
            assert_eq!(book.centroids[j], 0.0);
        }
        assert_eq!(
            book.boundaries[levels / 2 - 1],
            0.0,
            "{:?}: middle boundary",
            bits
        );

        // Centroid condition: each centroid is the mean of its cell.
        for j in 0..levels {
            let lo = if j == 0 {
                f64::NEG_INFINITY
            } else {
                0.5 * (c[j - 1] + c[j])
            };
            let hi = if j == levels - 1 {
                f64::INFINITY
            } else {
                0.5 * (c[j] + c[j + 1])
            };
            let mean = if lo.is_infinite() {
                -conditional_mean(-hi, f64::INFINITY)
            } else {
                conditional_mean(lo, hi)
            };
            assert!(
                (mean - c[j]).abs() < 1e-10,
                "{:?}: centroid {} is {} but its cell mean is {}",
                bits,
                j,
                c[j],
                mean
            );
        }

        let want = reference_distortion(bits);
        eprintln!(
            "{:?}: distortion {:.7} (reference {}), centroids {:?}",
            bits,
            book.distortion,
            want,
            &c[levels / 2..levels]
        );
        assert!(
            (book.distortion - want).abs() < 0.005 * want,
            "{:?}: distortion {} vs {}",
            bits,
            book.distortion,
            want
        );
    }
}

#[test]
fn codebook_distortion_matches_sampling() {
    let mut rng = SplitMix64::new(11);
    let samples = rng.gaussian_vec(400_000);
    for &bits in &ALL_BITS {
        let book = codebook(bits);
        let boundaries = &book.boundaries[..book.levels - 1];
        let mut sum = 0f64;
        for &z in &samples {
            let c = book.centroids[scalar::nearest_code(boundaries, z) as usize];
            sum += ((z - c) as f64).powi(2);
        }
        let mse = sum / samples.len() as f64;
        assert!(
            (mse - book.distortion).abs() < 0.03 * book.distortion,
            "{:?}: sampled {} vs {}",
            bits,
            mse,
            book.distortion
        );
    }
}

#[test]
fn splitmix64_matches_published_outputs() {
    // The reference outputs for seed 1234567 that SplitMix64 ports test against.
    let mut rng = SplitMix64::new(1_234_567);
    let want = [
        6_457_827_717_110_365_317u64,
        3_203_168_211_198_807_973,
        9_817_491_932_198_370_423,
    ];
    for &w in &want {
        assert_eq!(rng.next_u64(), w);
    }
}

#[test]
fn sign_diagonal_is_pseudo_random() {
    let s = signs();
    let negative = s.iter().filter(|&&v| v < 0.0).count();
    assert!(
        (44..=84).contains(&negative),
        "{} of 128 signs are negative",
        negative
    );
    let changes = s.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        (40..=88).contains(&changes),
        "{} sign changes: not a random sequence",
        changes
    );
    for (i, &v) in s.iter().enumerate() {
        let bit = prng::output_at(SIGN_SEED, i as u64) >> 63;
        assert_eq!(v < 0.0, bit == 1, "sign {}", i);
    }
}

#[test]
fn rotation_is_the_signed_hadamard_matrix() {
    let s = signs();
    for &len in &LENGTHS {
        let scale = 1.0 / (len as f64).sqrt();
        for i in 0..len {
            let mut e = vec![0f32; len];
            e[i] = 1.0;
            rotate_scalar(&mut e);
            for (j, &v) in e.iter().enumerate() {
                let hadamard = if (i & j).count_ones() % 2 == 0 {
                    1.0
                } else {
                    -1.0
                };
                let want = s[i] as f64 * hadamard * scale;
                assert!(
                    (v as f64 - want).abs() < 1e-7,
                    "len {} column {} row {}",
                    len,
                    i,
                    j
                );
            }
        }
    }
}

#[test]
fn rotation_is_orthonormal_and_inverts() {
    let mut rng = SplitMix64::new(5);
    for &len in &LENGTHS {
        let x = rng.gaussian_vec(len);
        let mut y = x.clone();
        rotate(&mut y);
        assert!(
            (norm_sq(&y) - norm_sq(&x)).abs() < 1e-5 * norm_sq(&x),
            "len {}: norm changed",
            len
        );
        rotate_inverse(&mut y);
        for i in 0..len {
            assert!(
                (y[i] - x[i]).abs() < 1e-6,
                "len {} i {}: {} vs {}",
                len,
                i,
                y[i],
                x[i]
            );
        }
    }
}

#[test]
fn simd_rotation_is_bit_identical() {
    let mut rng = SplitMix64::new(6);
    for k in simd_paths() {
        for &len in &SIMD_LENGTHS {
            let x = rng.gaussian_vec(len);
            let mut want = x.clone();
            rotate_scalar(&mut want);
            let mut got = x.clone();
            unsafe { (k.rotate)(&mut got) };
            assert_eq!(got, want, "{} rotate len {}", k.name, len);

            let mut want = x.clone();
            rotate_inverse_scalar(&mut want);
            let mut got = x.clone();
            unsafe { (k.rotate_inverse)(&mut got) };
            assert_eq!(got, want, "{} rotate_inverse len {}", k.name, len);
        }
    }
}

/// The AVX2 binary search for codes counts the boundaries strictly below
/// each value, as the scalar reference does, also at and next to every
/// boundary, at the extremes and for NaN.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_code_search_counts_boundaries_below() {
    if !Isa::Avx2.is_supported() {
        eprintln!("skipped: this CPU lacks AVX2 or FMA");
        return;
    }
    let next = |x: f32, up: bool| {
        if x == 0.0 {
            let tiny = f32::from_bits(1);
            return if up { tiny } else { -tiny };
        }
        let bits = x.to_bits() as i32;
        let step = if (x > 0.0) == up { 1 } else { -1 };
        f32::from_bits((bits + step) as u32)
    };
    for &bits in &ALL_BITS {
        let book = codebook::codebook(bits);
        let boundaries = &book.boundaries[..book.levels - 1];
        let mut values = vec![0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e30, -1e30];
        for &b in boundaries {
            values.extend_from_slice(&[b, next(b, true), next(b, false)]);
        }
        for chunk in values.chunks(8) {
            let mut z = [0.0f32; 8];
            z[..chunk.len()].copy_from_slice(chunk);
            let got = unsafe { avx2::codes_of(bits, z) };
            for (lane, &x) in z.iter().enumerate() {
                let want = boundaries.iter().filter(|&&b| b < x).count() as i32;
                assert_eq!(got[lane], want, "{:?} value {:e}", bits, x);
            }
        }
    }
}

#[test]
fn simd_quantize_is_bit_identical() {
    for k in simd_paths() {
        for &bits in &ALL_BITS {
            for &len in &SIMD_LENGTHS {
                for seed in 0..20 {
                    for (case, x) in test_vectors(len, 1000 * len as u64 + seed)
                        .iter()
                        .enumerate()
                    {
                        let want = quantize_scalar(bits, x);
                        let mut got = vec![0u8; want.len()];
                        unsafe { (k.quantize_block)(bits, x, &mut got) };
                        assert_eq!(
                            got, want,
                            "{} {:?} len {} seed {} case {}",
                            k.name, bits, len, seed, case
                        );
                    }
                }
            }
        }
    }
}

/// `n` quantized random blocks of `len`, `stride` bytes apart.
fn random_blocks(
    bits: TurboBits,
    len: usize,
    n: usize,
    stride: usize,
    rng: &mut SplitMix64,
) -> Vec<u8> {
    let mut blocks = vec![0xa5u8; (n.max(1) - 1) * stride + block_bytes(bits, len)];
    for i in 0..n {
        let x = rng.gaussian_vec(len);
        let bytes = block_bytes(bits, len);
        scalar::quantize_block(
            bits,
            &x,
            &mut blocks[i * stride..i * stride + bytes],
            SCALE_RULE,
        );
    }
    blocks
}

#[test]
fn simd_score_and_accumulate_match_scalar() {
    let mut rng = SplitMix64::new(8);
    for k in simd_paths() {
        for &bits in &ALL_BITS {
            for &len in &[8usize, 16, 32, 64, 128] {
                for &n in &[1usize, 3, 7, 33, 200] {
                    let stride = block_bytes(bits, len) + (n % 5);
                    let blocks = random_blocks(bits, len, n, stride, &mut rng);
                    let q = rng.gaussian_vec(len);
                    let case = format!("{} {:?} len {} n {}", k.name, bits, len, n);

                    let mut got = vec![0f32; n];
                    unsafe { (k.score_heads)(bits, &q, len, &blocks, stride, n, &mut got, n) };
                    for i in 0..n {
                        let block = &blocks[i * stride..];
                        let want = scalar::score(bits, &q, block);
                        let mut deq = vec![0f32; len];
                        scalar::dequantize_block_rotated(bits, block, &mut deq);
                        let magnitude: f64 =
                            q.iter().zip(&deq).map(|(a, b)| (a * b).abs() as f64).sum();
                        let tol = 1e-5 * magnitude as f32 + 1e-6;
                        assert!(
                            (got[i] - want).abs() <= tol,
                            "{} score {}: {} vs {}",
                            case,
                            i,
                            got[i],
                            want
                        );
                    }

                    let weights = rng.uniform_vec(n, 0.0, 1.0);
                    let acc0 = rng.gaussian_vec(len);
                    let mut want = acc0.clone();
                    for (i, &w) in weights.iter().enumerate() {
                        scalar::accumulate(bits, &mut want, w, &blocks[i * stride..]);
                    }
                    let mut got = acc0.clone();
                    unsafe { (k.accumulate_heads)(bits, &mut got, len, &weights, n, n, &blocks, stride) };
                    for j in 0..len {
                        let tol = 1e-5 * (n as f32).sqrt() * (1.0 + want[j].abs());
                        assert!(
                            (got[j] - want[j]).abs() <= tol,
                            "{} accumulate {}: {} vs {}",
                            case,
                            j,
                            got[j],
                            want[j]
                        );
                    }
                }
            }
        }
    }
}

/// Several query heads in one call give each head exactly what a call for
/// that head alone gives: grouping heads only shares the unpacking.
#[test]
fn simd_head_groups_equal_single_heads() {
    let mut rng = SplitMix64::new(21);
    for k in simd_paths() {
        for &bits in &ALL_BITS {
            for &len in &[8usize, 64, 128] {
                for &heads in &[2usize, 3, 4, 5, 9] {
                    let n = 37;
                    let stride = block_bytes(bits, len) + 3;
                    let blocks = random_blocks(bits, len, n, stride, &mut rng);
                    let q = rng.gaussian_vec(heads * len);
                    let case = format!("{} {:?} len {} heads {}", k.name, bits, len, heads);

                    let out_stride = n + 2;
                    let mut grouped = vec![0f32; heads * out_stride];
                    unsafe {
                        (k.score_heads)(bits, &q, len, &blocks, stride, n, &mut grouped, out_stride)
                    };
                    for h in 0..heads {
                        let mut alone = vec![0f32; n];
                        let qh = &q[h * len..(h + 1) * len];
                        unsafe { (k.score_heads)(bits, qh, len, &blocks, stride, n, &mut alone, n) };
                        let row = &grouped[h * out_stride..h * out_stride + n];
                        assert_eq!(row, &alone[..], "{} scores of head {}", case, h);
                    }

                    let weights = rng.uniform_vec(heads * out_stride, 0.0, 1.0);
                    let acc0 = rng.gaussian_vec(heads * len);
                    let mut grouped = acc0.clone();
                    unsafe {
                        (k.accumulate_heads)(bits, &mut grouped, len, &weights, out_stride, n, &blocks, stride)
                    };
                    for h in 0..heads {
                        let mut alone = acc0[h * len..(h + 1) * len].to_vec();
                        let wh = &weights[h * out_stride..h * out_stride + n];
                        unsafe { (k.accumulate_heads)(bits, &mut alone, len, wh, n, n, &blocks, stride) };
                        assert_eq!(&grouped[h * len..(h + 1) * len], &alone[..], "{} values of head {}", case, h);
                    }
                }
            }
        }
    }
}

/// The public many-head entry points agree with the one-head ones on
/// every path, including the scalar one for short blocks.
#[test]
fn many_heads_match_one_head_calls() {
    let mut rng = SplitMix64::new(34);
    for &bits in &ALL_BITS {
        for &len in &LENGTHS {
            let (n, heads) = (11, 3);
            let stride = block_bytes(bits, len);
            let blocks = random_blocks(bits, len, n, stride, &mut rng);
            let q = rng.gaussian_vec(heads * len);
            let mut grouped = vec![0f32; heads * n];
            score_many_heads(bits, len, &q, &blocks, stride, n, &mut grouped, n);
            let weights = rng.uniform_vec(heads * n, 0.0, 1.0);
            let mut acc = vec![0f32; heads * len];
            accumulate_many_heads(bits, len, &mut acc, &weights, n, n, &blocks, stride);
            for h in 0..heads {
                let mut alone = vec![0f32; n];
                score_many(bits, &q[h * len..(h + 1) * len], &blocks, stride, n, &mut alone);
                assert_eq!(&grouped[h * n..(h + 1) * n], &alone[..], "{:?} len {} head {}", bits, len, h);
                let mut one = vec![0f32; len];
                accumulate_many(bits, &mut one, &weights[h * n..(h + 1) * n], &blocks, stride);
                assert_eq!(&acc[h * len..(h + 1) * len], &one[..], "{:?} len {} head {}", bits, len, h);
            }
        }
    }
}

/// Mean relative squared error `|x - x_hat|^2 / |x|^2` over Gaussian vectors.
fn relative_mse(bits: TurboBits, len: usize, count: usize, seed: u64) -> f64 {
    let mut rng = SplitMix64::new(seed);
    let mut total = 0.0;
    for _ in 0..count {
        let x = rng.gaussian_vec(len);
        let mut block = vec![0u8; block_bytes(bits, len)];
        quantize_block(bits, &x, &mut block);
        let mut x_hat = vec![0f32; len];
        dequantize_block_rotated(bits, &block, &mut x_hat);
        rotate_inverse(&mut x_hat);
        let err: f64 = x
            .iter()
            .zip(&x_hat)
            .map(|(&a, &b)| ((a - b) as f64).powi(2))
            .sum();
        total += err / norm_sq(&x);
    }
    total / count as f64
}

#[test]
fn distortion_is_near_lloyd_max() {
    for &bits in &ALL_BITS {
        let reference = codebook(bits).distortion;
        for &len in &[16usize, 32, 64, 128] {
            let mse = relative_mse(bits, len, 2000, 21);
            eprintln!(
                "{:?} len {}: relative MSE {:.6} (Lloyd-Max {:.6})",
                bits, len, mse, reference
            );
            if len >= 64 {
                assert!(
                    (mse - reference).abs() < 0.10 * reference,
                    "{:?} len {}: {} vs {}",
                    bits,
                    len,
                    mse,
                    reference
                );
            }
        }
    }
}

#[test]
fn error_falls_with_bits() {
    for &len in &[16usize, 64, 128] {
        let e3 = relative_mse(TurboBits::B3, len, 500, 31);
        let e4 = relative_mse(TurboBits::B4, len, 500, 31);
        let e5 = relative_mse(TurboBits::B5, len, 500, 31);
        assert!(e3 > e4, "len {}: 3-bit {} <= 4-bit {}", len, e3, e4);
        assert!(e4 > e5, "len {}: 4-bit {} <= 5-bit {}", len, e4, e5);
    }
}

#[test]
fn score_equals_dot_in_both_spaces() {
    let mut rng = SplitMix64::new(41);
    for &bits in &ALL_BITS {
        for &len in &LENGTHS {
            let x = rng.gaussian_vec(len);
            let q = rng.gaussian_vec(len);
            let mut block = vec![0u8; block_bytes(bits, len)];
            quantize_block(bits, &x, &mut block);

            let mut q_rot = q.clone();
            rotate(&mut q_rot);
            let mut deq = vec![0f32; len];
            dequantize_block_rotated(bits, &block, &mut deq);
            let s = score(bits, &q_rot, &block) as f64;
            let tol = 1e-5 * (norm_sq(&q) * norm_sq(&deq)).sqrt() + 1e-6;
            assert!(
                (s - dot(&q_rot, &deq)).abs() < tol,
                "{:?} len {}: rotated-space dot",
                bits,
                len
            );

            let mut x_hat = deq.clone();
            rotate_inverse(&mut x_hat);
            assert!(
                (s - dot(&q, &x_hat)).abs() < tol,
                "{:?} len {}: original-space dot",
                bits,
                len
            );

            let mut acc = vec![0f32; len];
            accumulate(bits, &mut acc, 0.5, &block);
            for j in 0..len {
                assert!(
                    (acc[j] - 0.5 * deq[j]).abs() <= 1e-6 * deq[j].abs(),
                    "{:?} len {}: accumulate {}",
                    bits,
                    len,
                    j
                );
            }
        }
    }
}

#[test]
fn quantize_is_deterministic() {
    let mut rng = SplitMix64::new(51);
    for &bits in &ALL_BITS {
        for &len in &LENGTHS {
            let x = rng.gaussian_vec(len);
            let mut a = vec![0u8; block_bytes(bits, len)];
            let mut b = vec![0xffu8; block_bytes(bits, len)];
            quantize_block(bits, &x, &mut a);
            quantize_block(bits, &x, &mut b);
            assert_eq!(a, b, "{:?} len {}", bits, len);
            assert_eq!(
                a,
                quantize_scalar(bits, &x),
                "{:?} len {}: dispatch vs scalar",
                bits,
                len
            );
        }
    }
}

#[test]
fn zero_block_dequantizes_to_zero() {
    for &bits in &ALL_BITS {
        for &len in &LENGTHS {
            let mut block = vec![0xffu8; block_bytes(bits, len)];
            quantize_block(bits, &vec![0.0; len], &mut block);
            let mut out = vec![1f32; len];
            dequantize_block_rotated(bits, &block, &mut out);
            assert!(
                out.iter().all(|&v| v == 0.0),
                "{:?} len {}: {:?}",
                bits,
                len,
                out
            );
        }
    }
}

#[test]
fn quantize_head_writes_blocks_back_to_back() {
    let mut rng = SplitMix64::new(61);
    let x = rng.gaussian_vec(80);
    let mut head = vec![0u8; head_bytes(TurboBits::B4, 80)];
    quantize_head(TurboBits::B4, &x, &mut head);
    assert_eq!(&head[..34], &quantize_scalar(TurboBits::B4, &x[..64])[..]);
    assert_eq!(&head[34..], &quantize_scalar(TurboBits::B4, &x[64..])[..]);
}

/// Compares the two scale rules on Gaussian keys: reconstruction MSE, and
/// the inner-product error against independent queries and against
/// queries correlated with the key (`q = x + noise`), as in attention.
#[test]
fn scale_rule_comparison() {
    let len = 128;
    for &bits in &ALL_BITS {
        let mut results = Vec::new();
        for &rule in &[ScaleRule::Norm, ScaleRule::LeastSquares] {
            let mut rng = SplitMix64::new(71);
            let (mut mse, mut ip_indep, mut ip_corr, mut bias) = (0f64, 0f64, 0f64, 0f64);
            let count = 3000;
            for _ in 0..count {
                let x = rng.gaussian_vec(len);
                let mut block = vec![0u8; block_bytes(bits, len)];
                scalar::quantize_block(bits, &x, &mut block, rule);
                let mut x_hat = vec![0f32; len];
                scalar::dequantize_block_rotated(bits, &block, &mut x_hat);
                rotate_inverse_scalar(&mut x_hat);

                let err: Vec<f32> = x.iter().zip(&x_hat).map(|(a, b)| a - b).collect();
                mse += norm_sq(&err) / norm_sq(&x);
                let q = rng.gaussian_vec(len);
                ip_indep += dot(&q, &err).powi(2) / (norm_sq(&q) * norm_sq(&x));
                let q: Vec<f32> = x.iter().map(|&v| v + rng.gaussian()).collect();
                ip_corr += dot(&q, &err).powi(2) / (norm_sq(&q) * norm_sq(&x));
                bias += dot(&q, &err) / dot(&q, &x);
            }
            let n = count as f64;
            eprintln!(
                "{:?} {:?}: relative MSE {:.6}, inner-product MSE (independent q) {:.3e}, (correlated q) {:.3e}, mean relative inner-product bias {:+.2e}",
                bits,
                rule,
                mse / n,
                ip_indep / n,
                ip_corr / n,
                bias / n
            );
            results.push((mse / n, ip_corr / n));
        }
        let (norm, least_squares) = (results[0], results[1]);
        assert!(
            least_squares.0 < norm.0,
            "{:?}: least squares must have the lower MSE",
            bits
        );
        assert!(
            least_squares.1 < norm.1,
            "{:?}: least squares must have the lower inner-product error",
            bits
        );
        assert_eq!(SCALE_RULE, ScaleRule::LeastSquares);
    }
}

#[test]
fn many_apis_check_sizes() {
    let blocks = vec![0u8; 66 * 2];
    let q = vec![0f32; 128];
    let r = std::panic::catch_unwind(move || {
        let mut out = vec![0f32; 3];
        score_many(TurboBits::B4, &q, &blocks, 66, 3, &mut out)
    });
    assert!(r.is_err(), "three 66-byte blocks do not fit in 132 bytes");
    let r = std::panic::catch_unwind(|| rotate(&mut [0.0; 12]));
    assert!(r.is_err(), "12 is not a power of two");
}
