//! Measures the matrix-vector dot products per weight format, scalar against
//! the best SIMD path, in GB/s of weight bytes read.
//!
//! Run with `cargo run --release -p turbokv-kernels --example bench_quants`.
//! Optional arguments: the row length (default 4096) and the weight bytes
//! per format (default 32 MiB, larger than most L2/L3 caches, as the weights
//! of a real model are). Single-threaded.

use std::time::{Duration, Instant};

use turbokv_kernels::f16::f32_to_f16;
use turbokv_kernels::quants::{quantize_row, vec_dot_with, GgmlType};
use turbokv_kernels::simd::{self, Isa};

const MIN_TIME: Duration = Duration::from_millis(300);

/// SplitMix64, so every run measures the same data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Byte offsets of the binary16 scales in a block, which must be finite to
/// keep the float arithmetic on its normal (fast) path.
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

fn random_matrix(rng: &mut Rng, ty: GgmlType, n_rows: usize, n_cols: usize) -> Vec<u8> {
    let n = n_rows * n_cols;
    match ty {
        GgmlType::F32 => (0..n).flat_map(|_| rng.uniform().to_le_bytes()).collect(),
        GgmlType::F16 => (0..n).flat_map(|_| f32_to_f16(rng.uniform()).to_le_bytes()).collect(),
        GgmlType::BF16 => (0..n).flat_map(|_| ((rng.uniform().to_bits() >> 16) as u16).to_le_bytes()).collect(),
        _ => {
            let mut bytes: Vec<u8> = (0..ty.row_bytes(n).unwrap()).map(|_| rng.next_u64() as u8).collect();
            for block in bytes.chunks_exact_mut(ty.type_size()) {
                for &offset in half_fields(ty) {
                    block[offset..offset + 2].copy_from_slice(&f32_to_f16(rng.uniform() * 0.05).to_le_bytes());
                }
                if ty == GgmlType::Q8K {
                    block[0..4].copy_from_slice(&(rng.uniform() * 0.01).to_le_bytes());
                }
            }
            bytes
        }
    }
}

fn activations(rng: &mut Rng, ty: GgmlType, n_cols: usize) -> Vec<u8> {
    let x: Vec<f32> = (0..n_cols).map(|_| rng.uniform()).collect();
    let act_type = ty.vec_dot_type();
    if act_type == GgmlType::F32 {
        return x.iter().flat_map(|v| v.to_le_bytes()).collect();
    }
    let mut bytes = vec![0u8; act_type.row_bytes(n_cols).unwrap()];
    quantize_row(act_type, &x, &mut bytes);
    bytes
}

/// Returns GB/s of weights and a checksum that keeps the work observable.
fn measure(isa: Isa, ty: GgmlType, n_cols: usize, matrix: &[u8], act: &[u8]) -> (f64, f32) {
    let row_bytes = ty.row_bytes(n_cols).unwrap();
    let mut checksum = 0.0f32;
    let mut passes = 0usize;
    let start = Instant::now();
    while passes == 0 || start.elapsed() < MIN_TIME {
        for row in matrix.chunks_exact(row_bytes) {
            checksum += vec_dot_with(isa, ty, n_cols, row, act);
        }
        passes += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    ((passes * matrix.len()) as f64 / seconds / 1e9, checksum)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n_cols: usize = args.get(1).map_or(4096, |s| s.parse().expect("row length must be an integer"));
    let target_bytes: usize = args.get(2).map_or(32 << 20, |s| s.parse().expect("bytes per format must be an integer"));
    assert!(n_cols % 256 == 0, "row length {} must be a multiple of 256", n_cols);

    let best = simd::best();
    println!("row length {}, about {} MiB of weights per format, single thread", n_cols, target_bytes >> 20);
    println!("{:<6} {:>12} {:>12} {:>8}", "type", "scalar GB/s", format!("{} GB/s", best.name()), "speedup");

    let mut rng = Rng(42);
    let mut checksum = 0.0f32;
    for &ty in &GgmlType::ALL {
        let row_bytes = ty.row_bytes(n_cols).unwrap();
        let n_rows = (target_bytes / row_bytes).max(1);
        let matrix = random_matrix(&mut rng, ty, n_rows, n_cols);
        let act = activations(&mut rng, ty, n_cols);

        let (scalar, sum_scalar) = measure(Isa::Scalar, ty, n_cols, &matrix, &act);
        let (fast, sum_fast) = measure(best, ty, n_cols, &matrix, &act);
        checksum += sum_scalar + sum_fast;
        println!("{:<6} {:>12.2} {:>12.2} {:>7.1}x", ty.name(), scalar, fast, fast / scalar);
    }
    println!("checksum {}", checksum);
}
