use super::*;
use crate::f16::{f16_to_f32, f32_to_f16};
use crate::simd;

/// SplitMix64: a small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Byte offsets of the binary16 scale fields of a block (`d`, `m`, `dmin`,
/// `s`); Q8_K's f32 `d` is handled separately.
fn half_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 => &[0, 2],
        GgmlType::Q2K => &[80, 82],
        GgmlType::Q3K => &[108],
        GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q6K => &[208],
        _ => &[],
    }
}

/// A weight row of `n` elements: random bytes with finite, modest scales,
/// or random floats for F32, F16 and BF16.
fn random_weights(rng: &mut Rng, ty: GgmlType, n: usize) -> Vec<u8> {
    match ty {
        GgmlType::F32 => (0..n).flat_map(|_| rng.uniform().to_le_bytes()).collect(),
        GgmlType::F16 => (0..n).flat_map(|_| f32_to_f16(rng.uniform()).to_le_bytes()).collect(),
        GgmlType::BF16 => (0..n).flat_map(|_| ((rng.uniform().to_bits() >> 16) as u16).to_le_bytes()).collect(),
        _ => {
            let size = ty.type_size();
            let mut bytes = rng.bytes(ty.row_bytes(n).unwrap());
            for block in bytes.chunks_exact_mut(size) {
                for &offset in half_fields(ty) {
                    let scale = f32_to_f16(rng.uniform() * 0.05);
                    block[offset..offset + 2].copy_from_slice(&scale.to_le_bytes());
                }
                if ty == GgmlType::Q8K {
                    block[0..4].copy_from_slice(&(rng.uniform() * 0.01).to_le_bytes());
                }
            }
            bytes
        }
    }
}

/// Activations encoded as `ty.vec_dot_type()`, through `quantize_row` as
/// the engine does.
fn random_activations(rng: &mut Rng, ty: GgmlType, n: usize) -> Vec<u8> {
    let x: Vec<f32> = (0..n).map(|_| rng.uniform() * 3.0).collect();
    let act_type = ty.vec_dot_type();
    if act_type == GgmlType::F32 {
        return x.iter().flat_map(|v| v.to_le_bytes()).collect();
    }
    let mut bytes = vec![0u8; act_type.row_bytes(n).unwrap()];
    quantize_row(act_type, &x, &mut bytes);
    bytes
}

/// Copies `bytes` to an odd address, as a tensor at an arbitrary offset of
/// an mmap would be.
fn misaligned(bytes: &[u8]) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut buffer = vec![0u8; bytes.len() + 1];
    buffer[1..].copy_from_slice(bytes);
    (buffer, 1..bytes.len() + 1)
}

fn dequantized(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    dequantize_row(ty, bytes, &mut out);
    out
}

/// The dot product from dequantized values in f64, and the sum of the
/// magnitudes of its terms (the scale of the rounding error).
fn reference_dot(ty: GgmlType, n: usize, weight: &[u8], act: &[u8]) -> (f64, f64) {
    let w = dequantized(ty, weight, n);
    let a = dequantized(ty.vec_dot_type(), act, n);
    let mut dot = 0.0f64;
    let mut magnitude = 0.0f64;
    for i in 0..n {
        dot += w[i] as f64 * a[i] as f64;
        magnitude += (w[i] as f64 * a[i] as f64).abs();
    }
    (dot, magnitude)
}

/// Sum over blocks of |m * s|: Q8_1 stores `s = d * sum(q)` rounded to
/// binary16, which the dequantized reference cannot see.
fn offset_magnitude(ty: GgmlType, weight: &[u8], act: &[u8]) -> f64 {
    let ms: Vec<f32> = match ty {
        GgmlType::Q4_1 => as_blocks::<BlockQ4_1>(weight).iter().map(|b| b.m()).collect(),
        GgmlType::Q5_1 => as_blocks::<BlockQ5_1>(weight).iter().map(|b| b.m()).collect(),
        _ => return 0.0,
    };
    let ss = as_blocks::<BlockQ8_1>(act).iter().map(|b| b.s());
    ms.iter().zip(ss).map(|(m, s)| (*m as f64 * s as f64).abs()).sum()
}

fn simd_isa() -> Isa {
    simd::best()
}

#[test]
fn simd_best_path_matches_cpu() {
    let best = simd::best();
    println!("best SIMD path: {}, active: {}", best.name(), simd::active().name());
    #[cfg(target_arch = "x86_64")]
    {
        let has_avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        assert_eq!(best == Isa::Avx2, has_avx2);
    }
    #[cfg(target_arch = "aarch64")]
    assert_eq!(best, Isa::Neon);
    if std::env::var_os("TURBOKV_SIMD").is_none() {
        assert_eq!(simd::active(), best);
    }
}

#[test]
fn ggml_type_metadata() {
    // (name, GGUF id, block size, type size) from ggml's type traits.
    let table: [(&str, u32, usize, usize); 15] = [
        ("F32", 0, 1, 4),
        ("F16", 1, 1, 2),
        ("Q4_0", 2, 32, 18),
        ("Q4_1", 3, 32, 20),
        ("Q5_0", 6, 32, 22),
        ("Q5_1", 7, 32, 24),
        ("Q8_0", 8, 32, 34),
        ("Q8_1", 9, 32, 36),
        ("Q2_K", 10, 256, 84),
        ("Q3_K", 11, 256, 110),
        ("Q4_K", 12, 256, 144),
        ("Q5_K", 13, 256, 176),
        ("Q6_K", 14, 256, 210),
        ("Q8_K", 15, 256, 292),
        ("BF16", 30, 1, 2),
    ];
    for &(name, id, block_size, type_size) in &table {
        let ty = GgmlType::from_id(id).unwrap();
        assert_eq!(ty.name(), name);
        assert_eq!(ty.id(), id);
        assert_eq!(ty.block_size(), block_size, "{}", name);
        assert_eq!(ty.type_size(), type_size, "{}", name);
        assert_eq!(GgmlType::from_name(name), Some(ty));
        assert_eq!(ty.row_bytes(4 * block_size), Some(4 * type_size));
        assert_eq!(ty.vec_dot_type().vec_dot_type(), ty.vec_dot_type(), "{}", name);
    }
    assert_eq!(GgmlType::ALL.len(), table.len());
    for unknown in [4, 5, 16, 29, 31, 1000] {
        assert_eq!(GgmlType::from_id(unknown), None, "id {}", unknown);
    }
    assert_eq!(GgmlType::Q4K.row_bytes(100), None);
    assert_eq!(GgmlType::Q4_1.vec_dot_type(), GgmlType::Q8_1);
    assert_eq!(GgmlType::Q5_0.vec_dot_type(), GgmlType::Q8_0);
    assert_eq!(GgmlType::Q6K.vec_dot_type(), GgmlType::Q8K);
    assert_eq!(GgmlType::BF16.vec_dot_type(), GgmlType::F32);
}

// ------------------------------------------------------------- dequantize

const HALF: u16 = 0x3800; // 0.5
const QUARTER: u16 = 0x3400; // 0.25
const TWO: u16 = 0x4000; // 2.0

#[test]
fn dequantize_q4_0_block() {
    let mut block = HALF.to_le_bytes().to_vec();
    // qs[j] = j (low nibble) | (15 - j) (high nibble).
    block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let x = dequantized(GgmlType::Q4_0, &block, 32);
    assert_eq!(x[0], -4.0);
    assert_eq!(x[15], 3.5);
    assert_eq!(x[16], 3.5);
    assert_eq!(x[31], -4.0);
}

#[test]
fn dequantize_q4_1_block() {
    let mut block = HALF.to_le_bytes().to_vec();
    block.extend(TWO.to_le_bytes());
    block.extend((0..16u8).map(|j| j | (3 << 4)));
    let x = dequantized(GgmlType::Q4_1, &block, 32);
    assert_eq!(x[0], 2.0);
    assert_eq!(x[15], 9.5);
    assert_eq!(x[20], 3.5);
}

#[test]
fn dequantize_q5_blocks() {
    // Fifth bit set for elements 1 and 17 only; every nibble is 3.
    let qh = (1u32 << 1) | (1u32 << 17);
    let mut q5_0 = HALF.to_le_bytes().to_vec();
    q5_0.extend(qh.to_le_bytes());
    q5_0.extend([0x33u8; 16]);
    let x = dequantized(GgmlType::Q5_0, &q5_0, 32);
    assert_eq!(x[0], (3.0 - 16.0) * 0.5);
    assert_eq!(x[1], (19.0 - 16.0) * 0.5);
    assert_eq!(x[16], (3.0 - 16.0) * 0.5);
    assert_eq!(x[17], (19.0 - 16.0) * 0.5);

    let mut q5_1 = HALF.to_le_bytes().to_vec();
    q5_1.extend(TWO.to_le_bytes());
    q5_1.extend(qh.to_le_bytes());
    q5_1.extend([0x33u8; 16]);
    let x = dequantized(GgmlType::Q5_1, &q5_1, 32);
    assert_eq!(x[0], 3.5);
    assert_eq!(x[17], 11.5);
}

#[test]
fn dequantize_q8_blocks() {
    let mut q8_0 = QUARTER.to_le_bytes().to_vec();
    q8_0.extend((0..32).map(|j| (j as i8 - 16) as u8));
    let x = dequantized(GgmlType::Q8_0, &q8_0, 32);
    assert_eq!(x[0], -4.0);
    assert_eq!(x[31], 3.75);

    let mut q8_k = (-0.5f32).to_le_bytes().to_vec();
    q8_k.extend((0..256).map(|j| (j as u8).wrapping_sub(128)));
    q8_k.extend([0u8; 32]);
    let x = dequantized(GgmlType::Q8K, &q8_k, 256);
    assert_eq!(x[0], 64.0);
    assert_eq!(x[255], -63.5);
}

#[test]
fn dequantize_q2_k_block() {
    let mut block = vec![0u8; 84];
    // Group 0: scale 3, min 1. Group 3: scale 15, min 2.
    block[0] = 0x13;
    block[3] = 0x2f;
    // qs[0] bits 0-1 are element 0 (q = 3); qs[16] bits 2-3 are element 48
    // (group 3, q = 1).
    block[16] = 0b11;
    block[16 + 16] = 0b0100;
    block[80..82].copy_from_slice(&HALF.to_le_bytes());
    block[82..84].copy_from_slice(&QUARTER.to_le_bytes());
    let x = dequantized(GgmlType::Q2K, &block, 256);
    assert_eq!(x[0], 0.5 * 3.0 * 3.0 - 0.25 * 1.0);
    assert_eq!(x[1], -0.25);
    assert_eq!(x[48], 0.5 * 15.0 * 1.0 - 0.25 * 2.0);
}

#[test]
fn dequantize_q3_k_block() {
    let mut block = vec![0u8; 110];
    // Group 0: low nibble of byte 0 (5) and bits 0-1 of byte 8 (2), so
    // 5 | 2 << 4 = 37, minus 32 = 5. Group 9: high nibble of byte 1 (2) and
    // bits 4-5 of byte 9 (1), so 18 - 32 = -14.
    block[96] = 0x05;
    block[96 + 1] = 0x20;
    block[96 + 8] = 0b10;
    block[96 + 9] = 0b01_0000;
    block[108..110].copy_from_slice(&TWO.to_le_bytes());
    // Element 0: q = 3, hmask bit 0 set -> 3. Element 1: q = 1, no hmask -> 1 - 4.
    block[32] = 0b11;
    block[33] = 0b01;
    block[0] = 0b1;
    let x = dequantized(GgmlType::Q3K, &block, 256);
    assert_eq!(x[0], 2.0 * 5.0 * 3.0);
    assert_eq!(x[1], 2.0 * 5.0 * -3.0);
    // Group 9 = second half, pass 0, elements 16..32 of that half: q = 0,
    // hmask bit 4 clear -> -4.
    assert_eq!(x[128 + 16], 2.0 * -14.0 * -4.0);
}

#[test]
fn dequantize_q4_k_block() {
    let mut block = vec![0u8; 144];
    block[0..2].copy_from_slice(&HALF.to_le_bytes());
    block[2..4].copy_from_slice(&QUARTER.to_le_bytes());
    // Group 0: scale 10, min 4. Group 5: scale 0x0b | (1 << 4) = 27 from
    // byte 9 low nibble and byte 1 top bits; min 0x0c | (2 << 4) = 44 from
    // byte 9 high nibble and byte 5 top bits.
    block[4] = 10;
    block[4 + 4] = 4;
    block[4 + 9] = 0xcb;
    block[4 + 1] = 0b0100_0000;
    block[4 + 5] = 0b1000_0000;
    // Element 0 = low nibble of qs[0]; element 160 (group 5) = high nibble of qs[64].
    block[16] = 0x07;
    block[16 + 64] = 0x90;
    let x = dequantized(GgmlType::Q4K, &block, 256);
    assert_eq!(x[0], 0.5 * 10.0 * 7.0 - 0.25 * 4.0);
    assert_eq!(x[1], -1.0);
    assert_eq!(x[160], 0.5 * 27.0 * 9.0 - 0.25 * 44.0);
}

#[test]
fn dequantize_q5_k_block() {
    let mut block = vec![0u8; 176];
    block[0..2].copy_from_slice(&HALF.to_le_bytes());
    block[4] = 2; // group 0 scale
    block[5] = 3; // group 1 scale
    // Element 32 (group 1, high nibble of qs[0]) gets its fifth bit from bit 1 of qh[0].
    block[16] = 0b10;
    block[48] = 0x51;
    let x = dequantized(GgmlType::Q5K, &block, 256);
    assert_eq!(x[0], 0.5 * 2.0 * 1.0);
    assert_eq!(x[32], 0.5 * 3.0 * (5.0 + 16.0));
}

#[test]
fn dequantize_q6_k_block() {
    let mut block = vec![0u8; 210];
    // Element 0: low nibble of ql[0], bits 0-1 of qh[0]. Element 96:
    // high nibble of ql[32], bits 6-7 of qh[0]. Element 200 (second half,
    // k = 2, l = 8): high nibble of ql[64 + 8], bits 4-5 of qh[32 + 8].
    block[0] = 0x05;
    block[128] = 0b1100_0010;
    block[32] = 0xf0;
    block[72] = 0x30;
    block[128 + 40] = 0b0001_0000;
    block[192] = 2; // scale of group 0
    block[192 + 6] = -3i8 as u8; // group 6: elements 96..112
    block[192 + 12] = 4; // group 12: elements 192..208
    block[208..210].copy_from_slice(&HALF.to_le_bytes());
    let x = dequantized(GgmlType::Q6K, &block, 256);
    assert_eq!(x[0], 0.5 * 2.0 * ((0x05 | (2 << 4)) as f32 - 32.0));
    assert_eq!(x[96], 0.5 * -3.0 * ((0x0f | (3 << 4)) as f32 - 32.0));
    assert_eq!(x[200], 0.5 * 4.0 * ((0x03 | (1 << 4)) as f32 - 32.0));
}

#[test]
fn dequantize_float_rows() {
    let values = [1.5f32, -0.0, 65504.0, f32::INFINITY];
    let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(dequantized(GgmlType::F32, &f32_bytes, 4), values.to_vec());

    let f16_bytes: Vec<u8> = [0x3e00u16, 0x8000, 0x7bff, 0x0001].iter().flat_map(|v| v.to_le_bytes()).collect();
    let x = dequantized(GgmlType::F16, &f16_bytes, 4);
    assert_eq!(x[0], 1.5);
    assert_eq!(x[2], 65504.0);
    assert_eq!(x[3], 2.0f32.powi(-24));

    let bf16_bytes: Vec<u8> = [0x3fc0u16, 0xc000].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(dequantized(GgmlType::BF16, &bf16_bytes, 2), vec![1.5, -2.0]);
}

#[test]
#[should_panic(expected = "dequantize_row")]
fn dequantize_rejects_partial_block() {
    let mut out = vec![0.0f32; 32];
    dequantize_row(GgmlType::Q4_0, &[0u8; 17], &mut out);
}

// --------------------------------------------------------------- quantize

#[test]
fn quantize_q8_0_rounds_half_away_from_zero() {
    // amax = 127 gives d = 1 exactly, so x * id is x.
    let mut x = vec![0.0f32; 32];
    x[0] = 127.0;
    x[1] = 2.5;
    x[2] = -2.5;
    x[3] = 0.49;
    let mut bytes = vec![0u8; 34];
    quantize_row(GgmlType::Q8_0, &x, &mut bytes);
    let block = &as_blocks::<BlockQ8_0>(&bytes)[0];
    assert_eq!(block.d(), 1.0);
    assert_eq!(&block.qs[..4], &[127, 3, -3, 0]);
}

#[test]
fn quantize_q8_k_rounds_half_to_even() {
    // The largest magnitude maps to -127: max = 127 gives iscale = -1.
    let mut x = vec![0.0f32; 256];
    x[0] = 127.0;
    x[1] = 2.5;
    x[2] = 3.5;
    x[17] = -1.0;
    let mut bytes = vec![0u8; 292];
    quantize_row(GgmlType::Q8K, &x, &mut bytes);
    let block = &as_blocks::<BlockQ8K>(&bytes)[0];
    assert_eq!(block.d(), -1.0);
    assert_eq!(&block.qs[..3], &[-127, -2, -4]);
    assert_eq!(block.bsum(0), -133);
    assert_eq!(block.bsum(1), 1);
    assert_eq!(block.bsum(2), 0);
}

#[test]
fn quantize_zero_block() {
    let x = vec![0.0f32; 256];
    let mut bytes = vec![0xffu8; 292];
    quantize_row(GgmlType::Q8K, &x, &mut bytes);
    assert!(bytes.iter().all(|&b| b == 0));

    let mut bytes = vec![0xffu8; 36];
    quantize_row(GgmlType::Q8_1, &x[..32], &mut bytes);
    assert!(bytes.iter().all(|&b| b == 0));
}

#[test]
fn quantize_round_trip() {
    let mut rng = Rng(7);
    for &ty in &[GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8K] {
        let n = 4 * QK_K;
        let x: Vec<f32> = (0..n).map(|i| rng.uniform() * (1 + i % 5) as f32).collect();
        let mut bytes = vec![0u8; ty.row_bytes(n).unwrap()];
        quantize_row(ty, &x, &mut bytes);
        let y = dequantized(ty, &bytes, n);

        let block_size = ty.block_size();
        for (b, (xb, yb)) in x.chunks(block_size).zip(y.chunks(block_size)).enumerate() {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            // Half a step, plus the binary16 rounding of d (relative 2^-11)
            // applied to the largest quant, 127.
            let tolerance = amax / 127.0 * (0.5 + 127.0 / 2048.0) + 1e-7;
            for (i, (a, b_)) in xb.iter().zip(yb).enumerate() {
                assert!((a - b_).abs() <= tolerance, "{} block {} element {}: {} vs {}", ty.name(), b, i, a, b_);
            }
        }
    }
}

#[test]
fn quantize_q8_1_sum_and_q8_k_bsums() {
    let mut rng = Rng(11);
    let x: Vec<f32> = (0..QK_K).map(|_| rng.uniform()).collect();

    let mut q8_1 = vec![0u8; GgmlType::Q8_1.row_bytes(QK_K).unwrap()];
    quantize_row(GgmlType::Q8_1, &x, &mut q8_1);
    for (b, block) in as_blocks::<BlockQ8_1>(&q8_1).iter().enumerate() {
        let xb = &x[32 * b..32 * b + 32];
        let d = xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
        let sum: i32 = block.qs.iter().map(|&q| q as i32).sum();
        assert_eq!(u16::from_le_bytes(block.s), f32_to_f16(sum as f32 * d), "block {}", b);
    }

    let mut q8_k = vec![0u8; 292];
    quantize_row(GgmlType::Q8K, &x, &mut q8_k);
    let block = &as_blocks::<BlockQ8K>(&q8_k)[0];
    for g in 0..16 {
        let sum: i32 = block.qs[16 * g..16 * g + 16].iter().map(|&q| q as i32).sum();
        assert_eq!(block.bsum(g) as i32, sum, "group {}", g);
    }
}

/// Activation rows that reach every branch of the encoders. They contain
/// random values at several scales, exact ties (a block maximum of 127
/// makes the scale 1) and zero blocks. They also contain a magnitude shared
/// by a positive and a negative element, where Q8_K must pick the first.
fn encoder_inputs(rng: &mut Rng) -> Vec<Vec<f32>> {
    let n = 2 * QK_K;
    let mut rows: Vec<Vec<f32>> =
        [1e-3f32, 1.0, 300.0].iter().map(|&scale| (0..n).map(|_| rng.uniform() * scale).collect()).collect();

    let mut ties: Vec<f32> = (0..n).map(|i| (i % 50) as f32 - 24.5).collect();
    ties[0] = 127.0;
    ties[QK] = -127.0;
    ties[QK_K] = -127.0;
    rows.push(ties);

    let mut sparse = vec![0.0f32; n];
    sparse[QK_K + 3] = -0.75;
    sparse[QK_K + 40] = 0.75;
    sparse[QK_K + 41] = -0.0;
    rows.push(sparse);
    rows
}

#[test]
fn simd_quantize_matches_scalar() {
    let isa = simd_isa();
    let mut rng = Rng(23);
    for x in encoder_inputs(&mut rng) {
        for &ty in &[GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8K] {
            let bytes = ty.row_bytes(x.len()).unwrap();
            let mut want = vec![0xaau8; bytes];
            let mut got = vec![0x55u8; bytes];
            quantize_row_with(Isa::Scalar, ty, &x, &mut want);
            quantize_row_with(isa, ty, &x, &mut got);

            let first_difference = want.iter().zip(&got).position(|(a, b)| a != b);
            assert!(first_difference.is_none(), "{} on {}: first different byte {:?}", ty.name(), isa.name(), first_difference);
        }
    }
}

#[test]
#[should_panic(expected = "not an activation encoding")]
fn quantize_rejects_weight_type() {
    let mut bytes = vec![0u8; 144];
    quantize_row(GgmlType::Q4K, &[0.0; 256], &mut bytes);
}

// ----------------------------------------------------------- dot products

/// Element counts per type: 1 block, a few, and many (and odd lengths for
/// the float types, to reach the SIMD tails).
fn test_lengths(ty: GgmlType) -> Vec<usize> {
    let block_size = ty.block_size();
    if block_size == 1 {
        vec![1, 7, 37, 256, 1003]
    } else {
        vec![block_size, 3 * block_size, 48 * block_size]
    }
}

/// The dequantized f64 dot agrees with the scalar integer dot to within
/// 1e-5 of the summed term magnitudes (f32 rounding of per-block sums),
/// plus 2^-10 of |m * s| for Q4_1 and Q5_1.
#[test]
fn scalar_dot_matches_dequantized() {
    let mut rng = Rng(3);
    for &ty in &GgmlType::ALL {
        for n in test_lengths(ty) {
            let weight = random_weights(&mut rng, ty, n);
            let act = random_activations(&mut rng, ty, n);
            let (expected, magnitude) = reference_dot(ty, n, &weight, &act);
            let tolerance = 1e-5 * magnitude + offset_magnitude(ty, &weight, &act) / 1024.0 + 1e-12;
            let got = vec_dot_with(Isa::Scalar, ty, n, &weight, &act) as f64;
            assert!(
                (got - expected).abs() <= tolerance,
                "{} n={}: scalar {} vs dequantized {} (tolerance {})",
                ty.name(),
                n,
                got,
                expected,
                tolerance
            );
        }
    }
}

/// The SIMD dot equals the scalar one up to f32 summation order: within
/// 1e-5 of the summed term magnitudes (including the Q8_1 offset terms).
#[test]
fn simd_dot_matches_scalar() {
    let isa = simd_isa();
    println!("comparing the {} dot products with the scalar reference", isa.name());
    let mut rng = Rng(5);
    let mut compared = 0;
    for &ty in &GgmlType::ALL {
        for n in test_lengths(ty) {
            let weight = random_weights(&mut rng, ty, n);
            let act = random_activations(&mut rng, ty, n);
            let (weight_buffer, weight_range) = misaligned(&weight);
            let (act_buffer, act_range) = misaligned(&act);
            let w = &weight_buffer[weight_range];
            let a = &act_buffer[act_range];

            let scalar = vec_dot_with(Isa::Scalar, ty, n, w, a);
            let simd = vec_dot_with(isa, ty, n, w, a);
            let (_, magnitude) = reference_dot(ty, n, w, a);
            let tolerance = 1e-5 * (magnitude + offset_magnitude(ty, w, a)) + 1e-12;
            assert!(
                ((simd - scalar) as f64).abs() <= tolerance,
                "{} n={}: {} {} vs scalar {} (tolerance {})",
                ty.name(),
                n,
                isa.name(),
                simd,
                scalar,
                tolerance
            );
            compared += 1;
        }
    }
    println!("{} cases compared on {}", compared, isa.name());
    assert_eq!(compared, 5 * 3 + 12 * 3);
}

/// Extreme quants: weights at -128 (Q8_0, Q8_K) and every nibble at 15, with
/// activations at +-127, exercise the i16 saturation limits of the AVX2
/// byte products. Integer parts are exact, so with a single block both
/// paths must agree to within 1e-6 of the summed term magnitudes.
#[test]
fn simd_dot_extreme_quants() {
    let isa = simd_isa();
    for &ty in &GgmlType::ALL {
        if ty.block_size() == 1 {
            continue;
        }
        let n = ty.block_size();
        for &fill in &[0x80u8, 0xff, 0x00, 0x7f] {
            let mut weight = vec![fill; ty.type_size()];
            for &offset in half_fields(ty) {
                weight[offset..offset + 2].copy_from_slice(&HALF.to_le_bytes());
            }
            if ty == GgmlType::Q8K {
                weight[0..4].copy_from_slice(&0.5f32.to_le_bytes());
            }
            let x: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { -1.0 } else { 1.0 }).collect();
            let act_type = ty.vec_dot_type();
            let mut act = vec![0u8; act_type.row_bytes(n).unwrap()];
            quantize_row(act_type, &x, &mut act);

            let scalar = vec_dot_with(Isa::Scalar, ty, n, &weight, &act);
            let simd = vec_dot_with(isa, ty, n, &weight, &act);
            let (_, magnitude) = reference_dot(ty, n, &weight, &act);
            let tolerance = (1e-6 * (magnitude + offset_magnitude(ty, &weight, &act))) as f32 + 1e-12;
            assert!(
                (simd - scalar).abs() <= tolerance,
                "{} fill {:#x}: {} {} vs scalar {}",
                ty.name(),
                fill,
                isa.name(),
                simd,
                scalar
            );
        }
    }
}

#[test]
fn f16_weights_with_special_values() {
    // Subnormal, negative zero, max finite and a normal value: the SIMD
    // conversion must agree with f16_to_f32.
    let halves = [0x0001u16, 0x8000, 0x7bff, 0x3c00, 0x83ff, 0xfbff, 0x0400, 0x5555, 0x1234];
    let weight: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
    let n = halves.len();
    let mut act_values = vec![0.0f32; n];
    for (i, value) in act_values.iter_mut().enumerate() {
        *value = 1.0 / (i + 1) as f32;
    }
    let act: Vec<u8> = act_values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let expected: f64 = halves.iter().zip(&act_values).map(|(h, a)| f16_to_f32(*h) as f64 * *a as f64).sum();
    for isa in [Isa::Scalar, simd_isa()] {
        let got = vec_dot_with(isa, GgmlType::F16, n, &weight, &act) as f64;
        assert!((got - expected).abs() <= 1e-6 * expected.abs(), "{}: {} vs {}", isa.name(), got, expected);
    }
}

#[test]
#[should_panic(expected = "vec_dot")]
fn vec_dot_rejects_short_activations() {
    let weight = vec![0u8; 144];
    let act = vec![0u8; 291];
    vec_dot(GgmlType::Q4K, 256, &weight, &act);
}

// ------------------------------------------------------------ multi-row

/// `n_rows` random weight rows `row_bytes` apart (padding filled with
/// junk) and `n_tokens` activation rows `act_row_bytes` apart, both at an
/// odd address.
struct GemmCase {
    shape: GemmShape,
    weights: Vec<u8>,
    acts: Vec<u8>,
}

fn gemm_case(rng: &mut Rng, ty: GgmlType, n: usize, n_rows: usize, n_tokens: usize, pad: usize) -> GemmCase {
    let row_bytes = ty.row_bytes(n).unwrap() + pad;
    let act_row_bytes = ty.vec_dot_type().row_bytes(n).unwrap() + pad;
    let mut weights = vec![0u8; 1];
    for _ in 0..n_rows {
        weights.extend(random_weights(rng, ty, n));
        weights.extend(rng.bytes(pad));
    }
    let mut acts = vec![0u8; 1];
    for _ in 0..n_tokens {
        acts.extend(random_activations(rng, ty, n));
        acts.extend(rng.bytes(pad));
    }
    let out_stride = n_rows + pad;
    let shape = GemmShape { n, row_bytes, n_rows, act_row_bytes, n_tokens, out_stride };
    GemmCase { shape, weights, acts }
}

/// Checks `gemm_with(isa)` against one scalar `vec_dot` per output, with
/// the tolerance of `simd_dot_matches_scalar`, and that the padding between
/// a token's outputs stays untouched.
fn check_gemm(isa: Isa, ty: GgmlType, case: &GemmCase) {
    let shape = case.shape;
    let weights = &case.weights[1..];
    let acts = &case.acts[1..];
    let sentinel = -12345.0f32;
    let mut out = vec![sentinel; shape.n_tokens * shape.out_stride];
    gemm_with(isa, ty, shape, weights, acts, &mut out);

    let weight_bytes = ty.row_bytes(shape.n).unwrap();
    let act_bytes = ty.vec_dot_type().row_bytes(shape.n).unwrap();
    for t in 0..shape.n_tokens {
        let act = &acts[t * shape.act_row_bytes..][..act_bytes];
        for r in 0..shape.out_stride {
            let got = out[t * shape.out_stride + r];
            if r >= shape.n_rows {
                assert_eq!(got, sentinel, "{} token {} wrote past row {}", ty.name(), t, shape.n_rows);
                continue;
            }
            let row = &weights[r * shape.row_bytes..][..weight_bytes];
            let expected = vec_dot_with(Isa::Scalar, ty, shape.n, row, act);
            let (_, magnitude) = reference_dot(ty, shape.n, row, act);
            let tolerance = 1e-5 * (magnitude + offset_magnitude(ty, row, act)) + 1e-12;
            assert!(
                ((got - expected) as f64).abs() <= tolerance,
                "{} n={} rows={} tokens={} at row {} token {}: {} {} vs scalar {} (tolerance {})",
                ty.name(),
                shape.n,
                shape.n_rows,
                shape.n_tokens,
                r,
                t,
                isa.name(),
                got,
                expected,
                tolerance
            );
        }
    }
}

/// Row and token counts around the tile sizes (4 rows for one token, 2 rows
/// by 4 tokens or 8-row panels by 2 tokens for batches), so every edge tile
/// is exercised.
const GEMM_SHAPES: [(usize, usize); 10] = [(1, 1), (3, 1), (4, 1), (9, 1), (1, 2), (2, 4), (5, 3), (7, 9), (16, 13), (17, 5)];

#[test]
fn simd_gemm_matches_scalar() {
    let isa = simd_isa();
    let mut rng = Rng(17);
    for &ty in &GgmlType::ALL {
        let block_size = ty.block_size().max(32);
        for &(n_rows, n_tokens) in &GEMM_SHAPES {
            for &(blocks, pad) in &[(1, 0), (5, 3)] {
                let case = gemm_case(&mut rng, ty, blocks * block_size, n_rows, n_tokens, pad);
                check_gemm(isa, ty, &case);
            }
        }
    }
}

#[test]
fn scalar_gemm_matches_vec_dot() {
    let mut rng = Rng(19);
    for &ty in &[GgmlType::Q4K, GgmlType::Q8_0, GgmlType::F16] {
        let case = gemm_case(&mut rng, ty, 2 * ty.block_size().max(128), 5, 3, 2);
        check_gemm(Isa::Scalar, ty, &case);
    }
}

/// Extreme quants as in `simd_dot_extreme_quants`, through the tiles.
#[test]
fn simd_gemm_extreme_quants() {
    let isa = simd_isa();
    for &ty in &GgmlType::ALL {
        if ty.block_size() == 1 {
            continue;
        }
        let n = 2 * ty.block_size();
        for &fill in &[0x80u8, 0xff, 0x00, 0x7f] {
            let mut row = vec![fill; ty.row_bytes(n).unwrap()];
            for block in row.chunks_exact_mut(ty.type_size()) {
                for &offset in half_fields(ty) {
                    block[offset..offset + 2].copy_from_slice(&HALF.to_le_bytes());
                }
                if ty == GgmlType::Q8K {
                    block[0..4].copy_from_slice(&0.5f32.to_le_bytes());
                }
            }
            // Mixed signs, and all ones: the latter drives every 16-bit
            // partial sum of the batch kernels to its largest magnitude.
            let patterns: [fn(usize) -> f32; 2] = [|i| if i % 3 == 0 { -1.0 } else { 1.0 }, |_| 1.0];
            for pattern in patterns {
                let x: Vec<f32> = (0..n).map(pattern).collect();
                let act_type = ty.vec_dot_type();
                let mut act = vec![0u8; act_type.row_bytes(n).unwrap()];
                quantize_row(act_type, &x, &mut act);

                let n_rows = 9;
                let n_tokens = 5;
                let mut weights = vec![0u8; 1];
                let mut acts = vec![0u8; 1];
                for _ in 0..n_rows {
                    weights.extend(&row);
                }
                for _ in 0..n_tokens {
                    acts.extend(&act);
                }
                let shape = GemmShape {
                    n,
                    row_bytes: row.len(),
                    n_rows,
                    act_row_bytes: act.len(),
                    n_tokens,
                    out_stride: n_rows,
                };
                check_gemm(isa, ty, &GemmCase { shape, weights, acts });
            }
        }
    }
}

#[test]
fn vec_dot_rows_matches_vec_dot() {
    let isa = simd_isa();
    let mut rng = Rng(23);
    for &ty in &[GgmlType::Q5_0, GgmlType::Q6K, GgmlType::Q4_1, GgmlType::BF16] {
        let n = 3 * ty.block_size().max(64);
        let row_bytes = ty.row_bytes(n).unwrap();
        let rows: Vec<u8> = (0..6).flat_map(|_| random_weights(&mut rng, ty, n)).collect();
        let act = random_activations(&mut rng, ty, n);
        let mut out = vec![0.0f32; 6];
        vec_dot_rows_with(isa, ty, n, &rows, row_bytes, &act, &mut out);
        for (r, &got) in out.iter().enumerate() {
            let row = &rows[r * row_bytes..(r + 1) * row_bytes];
            let expected = vec_dot_with(Isa::Scalar, ty, n, row, &act);
            let (_, magnitude) = reference_dot(ty, n, row, &act);
            let tolerance = 1e-5 * (magnitude + offset_magnitude(ty, row, &act)) + 1e-12;
            assert!(((got - expected) as f64).abs() <= tolerance, "{} row {}: {} vs {}", ty.name(), r, got, expected);
        }
    }
}

#[test]
fn gemm_empty_rows_give_zeros() {
    for &ty in &TILED_TYPES {
        let shape = GemmShape { n: 0, row_bytes: 0, n_rows: 3, act_row_bytes: 0, n_tokens: 2, out_stride: 4 };
        let mut out = vec![7.0f32; 8];
        gemm(ty, shape, &[], &[], &mut out);
        assert_eq!(&out[0..3], &[0.0; 3], "{} token 0", ty.name());
        assert_eq!(&out[4..7], &[0.0; 3], "{} token 1", ty.name());
        assert_eq!((out[3], out[7]), (7.0, 7.0), "{} wrote past the rows", ty.name());
    }
}

#[test]
#[should_panic(expected = "gemm: outputs")]
fn gemm_rejects_short_output() {
    let shape = GemmShape { n: 32, row_bytes: 34, n_rows: 2, act_row_bytes: 34, n_tokens: 2, out_stride: 2 };
    let mut out = vec![0.0f32; 3];
    gemm(GgmlType::Q8_0, shape, &[0u8; 68], &[0u8; 68], &mut out);
}

#[test]
#[should_panic(expected = "gemm: row strides")]
fn gemm_rejects_short_stride() {
    let shape = GemmShape { n: 64, row_bytes: 34, n_rows: 2, act_row_bytes: 68, n_tokens: 1, out_stride: 2 };
    let mut out = vec![0.0f32; 2];
    gemm(GgmlType::Q8_0, shape, &[0u8; 136], &[0u8; 68], &mut out);
}

/// Weight types with tile kernels, whose one-token and batch tiles are
/// separate code.
const TILED_TYPES: [GgmlType; 7] = [
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q5_0,
    GgmlType::Q4_1,
    GgmlType::Q5_1,
    GgmlType::Q4K,
    GgmlType::Q6K,
];

/// Checks that every output of `vec_dot_rows_with(isa)` for one token has
/// the same bits as that token's output of `gemm_with(isa)` in batches of
/// 1 to 9 tokens. The engine relies on it: a prompt evaluated token by
/// token must leave the same KV cache as the prompt evaluated at once.
fn check_batch_invariance(isa: Isa, ty: GgmlType, rng: &mut Rng) {
    const MAX_TOKENS: usize = 9;
    let n = 5 * ty.block_size();
    let n_rows = 11;
    let case = gemm_case(rng, ty, n, n_rows, MAX_TOKENS, 0);
    let shape = case.shape;
    let weights = &case.weights[1..];
    let acts = &case.acts[1..];

    let mut decoded = vec![[0.0f32; 11]; MAX_TOKENS];
    for (t, out) in decoded.iter_mut().enumerate() {
        let act = &acts[t * shape.act_row_bytes..][..shape.act_row_bytes];
        vec_dot_rows_with(isa, ty, n, weights, shape.row_bytes, act, out);
    }

    for n_tokens in 1..=MAX_TOKENS {
        let batch = GemmShape { n_tokens, out_stride: n_rows, ..shape };
        let mut out = vec![0.0f32; n_tokens * n_rows];
        gemm_with(isa, ty, batch, weights, acts, &mut out);
        for (t, expected) in decoded.iter().enumerate().take(n_tokens) {
            for (r, &one) in expected.iter().enumerate() {
                let got = out[t * n_rows + r];
                assert!(
                    got.to_bits() == one.to_bits(),
                    "{} {}: row {} token {} of a batch of {} gave {:e}, one token alone {:e}",
                    ty.name(),
                    isa.name(),
                    r,
                    t,
                    n_tokens,
                    got,
                    one
                );
            }
        }
    }
}

#[test]
fn batch_outputs_match_one_token() {
    let mut rng = Rng(29);
    for &isa in &[Isa::Scalar, simd_isa()] {
        for &ty in &TILED_TYPES {
            check_batch_invariance(isa, ty, &mut rng);
        }
    }
}

/// Runs every tiled format on weights and activations that end exactly
/// where their last row ends, each in its own allocation, and checks the
/// results against buffers with room after them. A kernel that reads past
/// its last row still passes here, but fails under valgrind, which
/// `.ci/run` runs this test with, because `into_boxed_slice()` leaves no
/// spare capacity.
#[test]
fn kernels_read_only_their_rows() {
    let mut rng = Rng(41);
    for &isa in &[Isa::Scalar, simd_isa()] {
        for &ty in &TILED_TYPES {
            let n = 2 * ty.block_size();
            let n_rows = 9;
            let case = gemm_case(&mut rng, ty, n, n_rows, 3, 0);
            let weights = case.weights[1..].to_vec().into_boxed_slice();
            let acts = case.acts[1..].to_vec().into_boxed_slice();
            for n_tokens in 1..=3 {
                let shape = GemmShape { n_tokens, out_stride: n_rows, ..case.shape };
                let act_bytes = n_tokens * shape.act_row_bytes;
                let exact_acts = acts[..act_bytes].to_vec().into_boxed_slice();
                let mut exact = vec![0.0f32; n_tokens * n_rows];
                gemm_with(isa, ty, shape, &weights, &exact_acts, &mut exact);

                let mut roomy = vec![0.0f32; n_tokens * n_rows];
                gemm_with(isa, ty, shape, &case.weights[1..], &case.acts[1..], &mut roomy);
                assert_eq!(exact, roomy, "{} {} with {} tokens", ty.name(), isa.name(), n_tokens);
            }
        }
    }
}

/// Checks that every `vpdpbusd` variant of the x86 panel kernels this CPU
/// runs gives the same bits as the `vpmaddubsw` one, on edge-sized tiles.
/// On a VNNI CPU the other gemm tests run `vpdpbusd`, so this test is what
/// checks the `vpmaddubsw` kernel there.
/// NOTE: on a CPU without AVX-VNNI or AVX-512 VNNI, or with a compiler
/// older than 1.89, only the `vpmaddubsw` kernel exists and this compares
/// it with itself.
#[cfg(target_arch = "x86_64")]
#[test]
fn panel_dot_variants_agree() {
    use super::avx2_panels::{gemm_with, Dot};
    if !Isa::Avx2.is_supported() || !crate::f16::x86::has_f16c() {
        return;
    }
    let mut rng = Rng(31);
    for &ty in &[GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q4_1, GgmlType::Q5_1, GgmlType::Q8_0] {
        let case = gemm_case(&mut rng, ty, 7 * 32, 13, 5, 3);
        let shape = case.shape;
        let weights = &case.weights[1..];
        let acts = &case.acts[1..];
        let mut outputs = Vec::new();
        for dot in Dot::available() {
            let mut out = vec![0.0f32; shape.n_tokens * shape.out_stride];
            check_gemm_lengths(ty, shape, weights, acts, &out);
            let ops = Operands::new(ty, shape, weights, acts, &mut out);
            // SAFETY: AVX2, FMA and F16C were checked above, `dot` comes
            // from `Dot::available`, and the lengths were checked.
            if unsafe { gemm_with(ty, ops, dot) } {
                outputs.push((dot, out));
            } else {
                assert_eq!(ty, GgmlType::Q8_0, "{} has no {:?} panel kernel", ty.name(), dot);
                assert_eq!(dot, Dot::Maddubs, "{} has no {:?} panel kernel", ty.name(), dot);
            }
        }
        let reference = match outputs.first() {
            Some((_, out)) => out,
            None => continue,
        };
        for (dot, out) in &outputs[1..] {
            for (i, (got, expected)) in out.iter().zip(reference).enumerate() {
                assert_eq!(got.to_bits(), expected.to_bits(), "{} {:?} output {}: {} vs {}", ty.name(), dot, i, got, expected);
            }
        }
    }
}
