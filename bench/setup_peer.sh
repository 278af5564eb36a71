#!/usr/bin/env bash
# The peer for bench/bench_compile.py: TRL's own CLI (`trl sft`), in a virtual environment of its
# own (so mhgen's and its imports never mix). torch 2.13.0 keeps to the CPU wheel on CI machines.
set -euo pipefail
venv="${1:-.bench-peer}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.13.0 "trl==1.16.0"
echo "$venv/bin/trl"
