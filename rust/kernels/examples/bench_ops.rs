//! Prints scalar versus SIMD throughput of every kernel in `ops`, `f16` and
//! `turbo`, as a Markdown table for BENCHMARKS.md.
//!
//! Run with `cargo run --release -p turbokv-kernels --example bench_ops`.
//! Each row times the same call under the scalar path and under the best
//! path of this CPU (switched with `simd::set_active`).

use std::time::{Duration, Instant};

use turbokv_kernels::simd::{self, Isa};
use turbokv_kernels::turbo::{self, TurboBits};
use turbokv_kernels::{f16, ops};

/// Minimum measuring time per row and path.
const MIN_TIME: Duration = Duration::from_millis(200);

/// Reproducible inputs (SplitMix64) in [-1, 1).
fn inputs(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / 8_388_608.0 - 1.0
        })
        .collect()
}

/// Returns nanoseconds per call of `f`, which returns a value folded into
/// `sink` so the work cannot be optimized away.
fn time_per_call(f: &mut dyn FnMut() -> f32, sink: &mut f32) -> f64 {
    for _ in 0..3 {
        *sink += f();
    }
    let mut calls = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..calls {
            *sink += f();
        }
        let elapsed = start.elapsed();
        if elapsed >= MIN_TIME {
            return elapsed.as_nanos() as f64 / calls as f64;
        }
        calls *= 2;
    }
}

struct Bench {
    best: Isa,
    sink: f32,
}

impl Bench {
    /// Times `f` on both paths and prints a row; `elements` per call gives
    /// the throughput column.
    fn row(&mut self, name: &str, size: &str, elements: usize, f: &mut dyn FnMut() -> f32) {
        simd::set_active(Isa::Scalar).expect("the scalar path always exists");
        let scalar_ns = time_per_call(f, &mut self.sink);
        simd::set_active(self.best).expect("best() is supported");
        let simd_ns = time_per_call(f, &mut self.sink);
        let rate = |ns: f64| elements as f64 / ns * 1e3;
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2}x |",
            name,
            size,
            scalar_ns,
            simd_ns,
            rate(scalar_ns),
            rate(simd_ns),
            scalar_ns / simd_ns
        );
    }
}

fn main() {
    let best = simd::best();
    let mut b = Bench { best, sink: 0.0 };
    println!("SIMD path: {}", best.name());
    println!();
    println!(
        "| kernel | size | scalar ns/call | {} ns/call | scalar Melem/s | {} Melem/s | speedup |",
        best.name(),
        best.name()
    );
    println!("|---|---|---|---|---|---|---|");

    bench_ops(&mut b);
    bench_f16(&mut b);
    bench_turbo(&mut b);

    println!();
    println!("checksum {}", b.sink);
}

fn bench_ops(b: &mut Bench) {
    let n = 4096;
    let x = inputs(n, 1);
    let w = inputs(n, 2);
    let xh: Vec<u16> = x.iter().map(|&v| f16::f32_to_f16(v)).collect();
    let mut y = inputs(n, 3);

    b.row("dot_f32", "4096", n, &mut || ops::dot_f32(&x, &w));
    b.row("dot_f16_f32", "4096", n, &mut || ops::dot_f16_f32(&xh, &w));
    b.row("axpy_f32", "4096", n, &mut || {
        ops::axpy_f32(&mut y, 1e-3, &x);
        y[0]
    });
    b.row("axpy_f16", "4096", n, &mut || {
        ops::axpy_f16(&mut y, 1e-3, &xh);
        y[0]
    });
    b.row("scale", "4096", n, &mut || {
        ops::scale(&mut y, 0.999);
        y[1]
    });
    b.row("add_inplace", "4096", n, &mut || {
        ops::add_inplace(&mut y, &x);
        y[2]
    });
    let mut out = vec![0f32; n];
    b.row("rms_norm", "4096", n, &mut || {
        ops::rms_norm(&mut out, &x, &w, 1e-6);
        out[3]
    });
    let logits = inputs(32_000, 4);
    let mut probs = logits.clone();
    b.row("softmax", "32000", logits.len(), &mut || {
        probs.copy_from_slice(&logits);
        ops::softmax(&mut probs)
    });
    let angles = inputs(64, 5);
    let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
    let mut head = inputs(128, 6);
    b.row("rope normal", "128", 128, &mut || {
        ops::rope(&mut head, &cos, &sin, false);
        head[0]
    });
    b.row("rope neox", "128", 128, &mut || {
        ops::rope(&mut head, &cos, &sin, true);
        head[0]
    });
    let mut gate = x.clone();
    b.row("silu_mul", "4096", n, &mut || {
        gate.copy_from_slice(&x);
        ops::silu_mul(&mut gate, &w);
        gate[5]
    });
    b.row("gelu_tanh_mul", "4096", n, &mut || {
        gate.copy_from_slice(&x);
        ops::gelu_tanh_mul(&mut gate, &w);
        gate[5]
    });
}

fn bench_f16(b: &mut Bench) {
    let n = 4096;
    let x = inputs(n, 7);
    let mut h = vec![0u16; n];
    let mut back = vec![0f32; n];
    b.row("f32_to_f16_row", "4096", n, &mut || {
        f16::f32_to_f16_row(&x, &mut h);
        h[0] as f32
    });
    b.row("f16_to_f32_row", "4096", n, &mut || {
        f16::f16_to_f32_row(&h, &mut back);
        back[0]
    });
}

fn bench_turbo(b: &mut Bench) {
    let d = 128;
    let mut v = inputs(d, 8);
    b.row("turbo rotate", "128", d, &mut || {
        turbo::rotate(&mut v);
        v[0]
    });

    let positions = 4096;
    for &bits in &[TurboBits::B3, TurboBits::B4, TurboBits::B5] {
        let bytes = turbo::block_bytes(bits, d);
        let keys = inputs(positions * d, 9);
        let mut blocks = vec![0u8; positions * bytes];
        for (i, key) in keys.chunks(d).enumerate() {
            turbo::quantize_block(bits, key, &mut blocks[i * bytes..(i + 1) * bytes]);
        }
        let label = |op: &str| format!("turbo {} {}-bit", op, bits.bits());

        let x = inputs(d, 10);
        let mut block = vec![0u8; bytes];
        b.row(&label("quantize_block"), "128", d, &mut || {
            turbo::quantize_block(bits, &x, &mut block);
            block[0] as f32
        });
        let q = inputs(d, 11);
        let mut scores = vec![0f32; positions];
        b.row(
            &label("score_many"),
            "4096 x 128",
            positions * d,
            &mut || {
                turbo::score_many(bits, &q, &blocks, bytes, positions, &mut scores);
                scores[7]
            },
        );
        let weights: Vec<f32> = inputs(positions, 12)
            .iter()
            .map(|w| w.abs() / positions as f32)
            .collect();
        let mut acc = vec![0f32; d];
        b.row(
            &label("accumulate_many"),
            "4096 x 128",
            positions * d,
            &mut || {
                turbo::accumulate_many(bits, &mut acc, &weights, &blocks, bytes);
                acc[9]
            },
        );
    }
}
