//! Times greedy decode of MODEL with 1 and 2 threads, alternating blocks
//! of steps so that load from other processes hits both alike. The cache
//! is fp32 unless the environment variable `KV_TYPE` names another type
//! for keys and values (`KV_TYPE=turbo_kv_4b`).
//!
//! Each round also times a loop that only does arithmetic in registers on
//! 1 and on 2 threads. Its ratio is the most any program can gain from a
//! second thread on this machine at that moment. On a virtual machine with
//! a busy host it falls well short of 2x, so read the decode ratio against it.
//! The loop starts after a pause and runs for about 75 ms per thread. Timed
//! right after a decode block, a 7 ms loop read 1.0x to 1.1x in most rounds
//! while the decode blocks of the same run gained 1.6x. After a 20 ms pause
//! it read 2.0x.
//!
//! A decode step reads every weight once, so each round also times a
//! streaming read of a 256 MiB buffer on 1 and 2 threads, and the example
//! prints the weight bytes per second that decode streams beside it. Where
//! one core alone nearly saturates memory, as on the AMD EPYC VMs this was
//! tuned on, that read gains little from a second thread. Decode then gains
//! little too once its kernels stream near that rate.
//!
//! `cargo run --release -p turbokv-engine --example decode_speed -- MODEL [ROUNDS] [STEPS] [MIN_IDLE]`
//!
//! With MIN_IDLE (0 to 1, Linux only), each pair of blocks first waits up
//! to 30 s for the cores to be that idle over 0.2 s, so that on a shared
//! machine the numbers come from quiet moments.

use std::sync::Arc;
use std::time::{Duration, Instant};

use turbokv_engine::sampler::argmax;
use turbokv_engine::{KvType, LogitsWanted, Model, Session};

/// Returns tokens per second over `steps` greedy decode steps after a short prompt.
fn decode_rate(model: &Arc<Model>, kv_type: KvType, steps: usize) -> f64 {
    let mut session = Session::new(Arc::clone(model), 512, kv_type, kv_type).expect("session");
    let prompt = model.tokenizer.encode("The quick brown fox jumps over the lazy dog.", true, false);
    let mut token = argmax(&session.eval(&prompt, LogitsWanted::Last).expect("prompt")) as u32;
    model.pool.take_stats();
    let start = Instant::now();
    for _ in 0..steps {
        token = argmax(&session.eval(&[token], LogitsWanted::Last).expect("decode step")) as u32;
    }
    steps as f64 / start.elapsed().as_secs_f64()
}

/// Returns the fraction of CPU time all cores spent idle over `window`,
/// from the first line of /proc/stat; 1.0 where that file is missing.
fn idle_fraction(window: Duration) -> f64 {
    let read = || -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        Some((fields[3] + fields[4], fields.iter().sum()))
    };
    let before = read();
    std::thread::sleep(window);
    match (before, read()) {
        (Some((idle0, total0)), Some((idle1, total1))) => (idle1 - idle0) as f64 / (total1 - total0).max(1) as f64,
        _ => 1.0,
    }
}

fn wait_until_idle(min_idle: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while idle_fraction(Duration::from_millis(200)) < min_idle && Instant::now() < deadline {}
}

/// Seconds that `n_threads` threads take to each run the same fixed
/// register-only arithmetic loop (8 independent multiply-add chains).
fn compute_seconds(n_threads: usize) -> f64 {
    let work = || {
        let mut acc = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let (m, c) = (std::hint::black_box(0.999_999f32), std::hint::black_box(1e-6f32));
        for _ in 0..40_000_000 {
            for a in acc.iter_mut() {
                *a = *a * m + c;
            }
        }
        std::hint::black_box(acc);
    };
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..n_threads {
            s.spawn(work);
        }
    });
    start.elapsed().as_secs_f64()
}

/// Bytes of the buffer that [`read_rate`] streams, several times the 16 to
/// 32 MB L3 cache of the AMD EPYC VMs measured. An Intel Xeon VM reported
/// 480 MiB of L3, so there the buffer may not leave the cache.
const READ_BUFFER_BYTES: usize = 256 << 20;

/// Returns the bytes per second at which `n_threads` threads together sum
/// `buffer`, each thread its own contiguous share. It is a reference for
/// the weight bytes per second of decode, not a bound: a prefetching kernel
/// can stream somewhat faster on one core.
fn read_rate(buffer: &[u64], n_threads: usize) -> f64 {
    let share = (buffer.len() + n_threads - 1) / n_threads;
    let start = Instant::now();
    std::thread::scope(|s| {
        for part in buffer.chunks(share) {
            s.spawn(move || {
                // Four sums, so the loop is bound by loads rather than by
                // one chain of additions.
                let mut sums = [0u64; 4];
                for words in part.chunks_exact(4) {
                    for (sum, &w) in sums.iter_mut().zip(words) {
                        *sum = sum.wrapping_add(w);
                    }
                }
                std::hint::black_box(sums);
            });
        }
    });
    (buffer.len() * 8) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: decode_speed MODEL [ROUNDS] [STEPS] [MIN_IDLE]");
    let rounds: usize = args.get(2).map_or(10, |s| s.parse().expect("ROUNDS must be a number"));
    let steps: usize = args.get(3).map_or(32, |s| s.parse().expect("STEPS must be a number"));
    let min_idle: f64 = args.get(4).map_or(0.0, |s| s.parse().expect("MIN_IDLE must be a number"));
    let kv_name = std::env::var("KV_TYPE").unwrap_or_else(|_| "fp32".to_string());
    let kv_type = KvType::from_name(&kv_name).unwrap_or_else(|e| panic!("KV_TYPE {kv_name:?}: {e}"));

    let models: Vec<Arc<Model>> = [1, 2].iter().map(|&n| Arc::new(Model::load(path, n).expect("model"))).collect();
    let mut rates = vec![Vec::new(); models.len()];
    let mut ceilings = Vec::new();
    let read_buffer: Vec<u64> = (0..READ_BUFFER_BYTES as u64 / 8).collect();
    let mut read_rates = Vec::new();
    // Per 2-thread block: dispatches per step, and the caller's own share
    // of the tasks and its wait for the worker, as fractions of the step.
    let mut dispatch = Vec::new();
    for model in &models {
        decode_rate(model, kv_type, 4);
    }
    for _ in 0..rounds {
        if min_idle > 0.0 {
            wait_until_idle(min_idle);
        }
        for (model, rates) in models.iter().zip(&mut rates) {
            rates.push(decode_rate(model, kv_type, steps));
        }
        let stats = models[1].pool.take_stats();
        let step = 1.0 / rates[1].last().expect("a block just ran");
        dispatch.push((
            stats.dispatches as f64 / steps as f64,
            stats.own.as_secs_f64() / steps as f64 / step,
            stats.wait.as_secs_f64() / steps as f64 / step,
        ));
        std::thread::sleep(Duration::from_millis(20));
        ceilings.push(2.0 * compute_seconds(1) / compute_seconds(2));
        read_rates.push((read_rate(&read_buffer, 1), read_rate(&read_buffer, 2)));
    }
    let rate_1 = median(rates[0].clone());
    let rate_2 = median(rates[1].clone());
    println!("{kv_name} cache: 1 thread {rate_1:.0} tok/s, 2 threads {rate_2:.0} tok/s, ratio {:.2}x", rate_2 / rate_1);
    println!("register-only loop on 2 threads: {:.2}x of 1 thread (the machine's ceiling)", median(ceilings.clone()));
    let gb = |bytes_per_s: f64| bytes_per_s / 1e9;
    let step_bytes = models[0].weights.decode_bytes() as f64;
    let read_1 = median(read_rates.iter().map(|r| r.0).collect());
    let read_2 = median(read_rates.iter().map(|r| r.1).collect());
    println!(
        "weights: {:.1} MB per step, streamed at {:.1} GB/s on 1 thread and {:.1} GB/s on 2; \
         a streaming read of {} MiB: {:.1} GB/s on 1 thread, {:.1} GB/s on 2 ({:.2}x); \
         2-thread decode at {:.0}% of the 2-thread read",
        step_bytes / 1e6,
        gb(step_bytes * rate_1),
        gb(step_bytes * rate_2),
        READ_BUFFER_BYTES >> 20,
        gb(read_1),
        gb(read_2),
        read_2 / read_1,
        100.0 * step_bytes * rate_2 / read_2
    );
    let own = median(dispatch.iter().map(|d| d.1).collect());
    let wait = median(dispatch.iter().map(|d| d.2).collect());
    println!(
        "2 threads, caller's time per step: {:.0} dispatches, {:.1}% running its tasks, {:.1}% waiting for the worker, {:.1}% outside dispatches",
        median(dispatch.iter().map(|d| d.0).collect()),
        100.0 * own,
        100.0 * wait,
        100.0 * (1.0 - own - wait)
    );
    println!("  1 thread blocks: {:?}", rates[0].iter().map(|r| r.round()).collect::<Vec<_>>());
    println!("  2 thread blocks: {:?}", rates[1].iter().map(|r| r.round()).collect::<Vec<_>>());
    println!("  ceilings: {:?}", ceilings.iter().map(|r| (r * 100.0).round() / 100.0).collect::<Vec<_>>());
}
