#!/usr/bin/env bash
# Run each libFuzzer target in fuzz/ for SECONDS seconds (default 60).
#
#   scripts/fuzz.sh [SECONDS]
#
# Exits non-zero when a target finds a crash, a timeout, an out-of-memory or
# an allocation over MALLOC_LIMIT_MB; libFuzzer then writes the input to
# fuzz/artifacts/TARGET/ and prints how to reproduce it. Needs a C++
# compiler (libfuzzer-sys builds libFuzzer) and crates.io access on the
# first build.
#
# The targets are built with plain cargo and the SanitizerCoverage flags
# that cargo-fuzz passes with --sanitizer none, so stable Rust works and
# cargo-fuzz need not be installed. Without AddressSanitizer, out-of-bounds
# reads in unsafe code are found only when they crash.
set -euo pipefail

SECONDS_PER_TARGET=${1:-60}
TARGETS=(gguf tokenizer)
MALLOC_LIMIT_MB=512   # far above what a 128 KiB input may legitimately allocate
RSS_LIMIT_MB=2048
MAX_LEN=131072        # the largest seed (a tiny synthetic model) is about 48 KiB

cd "$(dirname "$0")/../fuzz"
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/fuzz}
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks"

# An explicit --target keeps RUSTFLAGS off build scripts, which would fail
# to link without libFuzzer's coverage callbacks.
HOST=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --locked --bins --target "$HOST"
BIN_DIR=$CARGO_TARGET_DIR/$HOST/release

status=0
for target in "${TARGETS[@]}"; do
    # libFuzzer adds new inputs to the first corpus folder, so the committed
    # seeds (second folder) stay unchanged.
    work_corpus=$(mktemp -d "/tmp/turbokv-fuzz-$target.XXXXXX")
    mkdir -p "artifacts/$target"
    echo "=== fuzzing $target for ${SECONDS_PER_TARGET}s"
    if ! "$BIN_DIR/$target" "$work_corpus" "corpus/$target" \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="$MAX_LEN" -timeout=10 \
        -rss_limit_mb="$RSS_LIMIT_MB" -malloc_limit_mb="$MALLOC_LIMIT_MB" \
        -artifact_prefix="artifacts/$target/" -print_final_stats=1; then
        echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
        status=1
    fi
    rm -rf "$work_corpus"
done
exit "$status"
