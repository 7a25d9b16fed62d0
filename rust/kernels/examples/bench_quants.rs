//! Measures the weight products per format on one thread: the matrix-vector
//! product as one `vec_dot` per row (scalar and the best SIMD path) and as
//! `vec_dot_rows`, in GB/s of weight bytes read, and the matrix-matrix
//! product of a batch of tokens as one `vec_dot` per output and as `gemm`,
//! in billions of multiply-adds per second.
//!
//! Run with `cargo run --release -p turbokv-kernels --example bench_quants`.
//! Optional arguments: the row length (default 4096), the weight bytes per
//! format (default 32 MiB, larger than most L2/L3 caches, as the weights of
//! a real model are), the batch size (default 64 tokens) and a comma-separated
//! list of formats (default all). Types whose block size does not divide the
//! row length are skipped.
//!
//! Times are CPU time of the measuring thread on Linux, so other processes
//! on a busy machine slow the numbers less than wall time would (they still
//! share caches and memory bandwidth); elsewhere they are wall time.

use std::time::{Duration, Instant};

use turbokv_kernels::f16::f32_to_f16;
use turbokv_kernels::quants::{gemm_with, quantize_row, vec_dot_rows_with, vec_dot_with, GemmShape, GgmlType};
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

#[cfg(target_os = "linux")]
mod thread_clock {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }

    extern "C" {
        fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
    }

    /// `CLOCK_THREAD_CPUTIME_ID` in Linux's `<time.h>`.
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

    /// CPU time of the calling thread.
    pub fn now() -> std::time::Duration {
        let mut time = Timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `time` is a valid `struct timespec` on 64-bit Linux.
        let status = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut time) };
        assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        std::time::Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
    }
}

#[cfg(not(target_os = "linux"))]
mod thread_clock {
    use std::time::{Duration, Instant};

    thread_local!(static START: Instant = Instant::now());

    /// Wall time since the thread's first call.
    pub fn now() -> Duration {
        START.with(|start| start.elapsed())
    }
}

/// Runs `pass` (which returns a checksum) until `MIN_TIME` of CPU time has
/// passed and returns the passes per second and the checksum.
fn repeat<F: FnMut() -> f32>(mut pass: F) -> (f64, f32) {
    let mut checksum = 0.0f32;
    let mut passes = 0usize;
    let start = thread_clock::now();
    let wall = Instant::now();
    while passes == 0 || thread_clock::now() - start < MIN_TIME && wall.elapsed() < 20 * MIN_TIME {
        checksum += pass();
        passes += 1;
    }
    (passes as f64 / (thread_clock::now() - start).as_secs_f64(), checksum)
}

/// One weight matrix and the activations it is multiplied with.
struct Case {
    ty: GgmlType,
    n_cols: usize,
    n_rows: usize,
    row_bytes: usize,
    matrix: Vec<u8>,
    /// `n_tokens` encoded activation rows.
    acts: Vec<u8>,
    act_row_bytes: usize,
    n_tokens: usize,
}

impl Case {
    fn act(&self, t: usize) -> &[u8] {
        &self.acts[t * self.act_row_bytes..(t + 1) * self.act_row_bytes]
    }

    /// GB/s of weights of one `vec_dot` per row.
    fn vec_dot_gbs(&self, isa: Isa) -> (f64, f32) {
        let (rate, checksum) = repeat(|| {
            let act = self.act(0);
            self.matrix.chunks_exact(self.row_bytes).map(|row| vec_dot_with(isa, self.ty, self.n_cols, row, act)).sum()
        });
        (rate * self.matrix.len() as f64 / 1e9, checksum)
    }

    /// GB/s of weights of `vec_dot_rows` over the whole matrix.
    fn vec_dot_rows_gbs(&self, isa: Isa) -> (f64, f32) {
        let mut out = vec![0.0f32; self.n_rows];
        let (rate, checksum) = repeat(|| {
            vec_dot_rows_with(isa, self.ty, self.n_cols, &self.matrix, self.row_bytes, self.act(0), &mut out);
            out.iter().sum()
        });
        (rate * self.matrix.len() as f64 / 1e9, checksum)
    }

    /// Multiply-adds per second (1e9) of one `vec_dot` per output, over the
    /// first `rows` rows (the per-output loop is slow).
    fn dots_gmacs(&self, isa: Isa, rows: usize) -> (f64, f32) {
        let (rate, checksum) = repeat(|| {
            let mut sum = 0.0f32;
            for row in self.matrix.chunks_exact(self.row_bytes).take(rows) {
                for t in 0..self.n_tokens {
                    sum += vec_dot_with(isa, self.ty, self.n_cols, row, self.act(t));
                }
            }
            sum
        });
        (rate * (rows * self.n_tokens * self.n_cols) as f64 / 1e9, checksum)
    }

    /// Multiply-adds per second (1e9) of `gemm` over the first `rows` rows.
    fn gemm_gmacs(&self, isa: Isa, rows: usize) -> (f64, f32) {
        let shape = GemmShape {
            n: self.n_cols,
            row_bytes: self.row_bytes,
            n_rows: rows,
            act_row_bytes: self.act_row_bytes,
            n_tokens: self.n_tokens,
            out_stride: rows,
        };
        let mut out = vec![0.0f32; rows * self.n_tokens];
        let (rate, checksum) = repeat(|| {
            gemm_with(isa, self.ty, shape, &self.matrix, &self.acts, &mut out);
            out.iter().sum()
        });
        (rate * (rows * self.n_tokens * self.n_cols) as f64 / 1e9, checksum)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n_cols: usize = args.get(1).map_or(4096, |s| s.parse().expect("row length must be an integer"));
    let target_bytes: usize = args.get(2).map_or(32 << 20, |s| s.parse().expect("bytes per format must be an integer"));
    let n_tokens: usize = args.get(3).map_or(64, |s| s.parse().expect("batch size must be an integer"));
    let types: Vec<GgmlType> = match args.get(4) {
        Some(list) => list.split(',').map(|name| GgmlType::from_name(name).expect("unknown format name")).collect(),
        None => GgmlType::ALL.to_vec(),
    };

    let best = simd::best();
    println!("row length {}, about {} MiB of weights per format, {} tokens per batch, single thread", n_cols, target_bytes >> 20, n_tokens);
    println!(
        "{:<6} {:>10} {:>10} {:>10} {:>12} {:>12} {:>8}",
        "type", "dot GB/s", "simd GB/s", "rows GB/s", "dots GMAC/s", "gemm GMAC/s", "gemm x"
    );

    let mut rng = Rng(42);
    let mut checksum = 0.0f32;
    for ty in types {
        if n_cols % ty.block_size() != 0 {
            continue;
        }
        let row_bytes = ty.row_bytes(n_cols).unwrap();
        let n_rows = (target_bytes / row_bytes).max(1);
        let act_row_bytes = ty.vec_dot_type().row_bytes(n_cols).unwrap();
        let acts: Vec<u8> = (0..n_tokens).flat_map(|_| activations(&mut rng, ty, n_cols)).collect();
        let matrix = random_matrix(&mut rng, ty, n_rows, n_cols);
        let case = Case { ty, n_cols, n_rows, row_bytes, matrix, acts, act_row_bytes, n_tokens };
        // The batch products reuse a block of rows that fits in L2, as the
        // engine's tasks do.
        let batch_rows = n_rows.min(64);

        let (scalar, sum_scalar) = case.vec_dot_gbs(Isa::Scalar);
        let (fast, sum_fast) = case.vec_dot_gbs(best);
        let (rows, sum_rows) = case.vec_dot_rows_gbs(best);
        let (dots, sum_dots) = case.dots_gmacs(best, batch_rows);
        let (gemm, sum_gemm) = case.gemm_gmacs(best, batch_rows);
        checksum += sum_scalar + sum_fast + sum_rows + sum_dots + sum_gemm;
        println!(
            "{:<6} {:>10.2} {:>10.2} {:>10.2} {:>12.2} {:>12.2} {:>7.1}x",
            ty.name(),
            scalar,
            fast,
            rows,
            dots,
            gemm,
            gemm / dots
        );
    }
    println!("checksum {}", checksum);
}
