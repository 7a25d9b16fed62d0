//! Runs STEPS greedy decode steps of MODEL on one thread with one KV type,
//! for instruction counts under callgrind, which are steady on a shared
//! machine where timings are not.
//!
//! `cargo run --release -p turbokv-engine --example decode_count -- MODEL KV_TYPE STEPS [DEPTH]`
//!
//! Run it twice, with STEPS 0 and STEPS N, and divide the difference of the
//! two totals by N: that is the cost of one decode step at DEPTH cached
//! positions (default: a 10-token prompt), without loading and calibration.

use std::sync::Arc;

use turbokv_engine::sampler::argmax;
use turbokv_engine::{KvType, LogitsWanted, Model, Session};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: decode_count MODEL KV_TYPE STEPS [DEPTH]";
    let path = args.get(1).expect(usage);
    let kv_type = KvType::from_name(args.get(2).expect(usage)).expect("KV_TYPE");
    let steps: usize = args.get(3).expect(usage).parse().expect("STEPS must be a number");
    let depth: usize = args.get(4).map_or(0, |s| s.parse().expect("DEPTH must be a number"));

    let model = Arc::new(Model::load(path, 1).expect("model"));
    let mut session = Session::new(Arc::clone(&model), depth + steps + 64, kv_type, kv_type).expect("session");

    let mut prompt = model.tokenizer.encode("The quick brown fox jumps over the lazy dog.", true, false);
    while prompt.len() < depth {
        prompt.extend_from_within(1..);
    }
    if depth > 0 {
        prompt.truncate(depth);
    }
    let mut token = argmax(&session.eval(&prompt, LogitsWanted::Last).expect("prompt")) as u32;

    for _ in 0..steps {
        token = argmax(&session.eval(&[token], LogitsWanted::Last).expect("decode step")) as u32;
    }
    println!("{} steps after {} prompt tokens, last token {token}", steps, prompt.len());
}
