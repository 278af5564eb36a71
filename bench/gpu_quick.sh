#!/usr/bin/env bash
# Every GPU measurement of issue 28 in one call (about 9 minutes on an H100/H200), each under its
# own timeout, results under $OUT as they come. Run from the repository root on the GPU box, with
# the training stack installed (../shared/gpu/README.md): OUT=/some/folder bash bench/gpu_quick.sh
set -u
OUT=${OUT:-bench-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH=generator:bench
step() {  # NAME SECONDS COMMAND...: one measurement, its table in $OUT/NAME.txt
  local name=$1 limit=$2
  shift 2
  echo "== $name" | tee -a "$OUT/summary.txt"
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>"$OUT/$name.err"
  echo "rc=$?" >>"$OUT/$name.txt"
  tail -12 "$OUT/$name.txt" | tee -a "$OUT/summary.txt"
}
W=$(mktemp -d)
# dense Qwen3-0.6B shapes, chat data: emitted script against plain TRL (target >= 1.5x)
step dense-0.6b 150 python bench/bench_train.py --size 0.6b --steps 20 --warmup 5
# gpt-oss-20b, the shipped config, NF4 vs bf16 experts, eager attention, 1024 tokens
python bench/bench_moe.py --prepare "$W/eager" --layers 24 --steps 16 >/dev/null
step gpt-oss-eager-1024 150 python bench/bench_moe.py --run "$W/eager" --warmup 4
# the same with flex attention, at 1024, 4096 and 16,384 tokens (memory: linear in the length)
for n in 1024 4096 16384; do
  python bench/bench_moe.py --prepare "$W/flex$n" --layers 24 --steps 8 \
    --set attn_implementation='"flex_attention"' --set max_seq_length=$n >/dev/null
  step gpt-oss-flex-$n 100 python bench/bench_moe.py --run "$W/flex$n" --warmup 3
done
