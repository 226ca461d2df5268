#!/usr/bin/env bash
# Render benchmark with the settings of issue 4: 2 CPU cores, k=7, 20 images (C=3), sizes 128²,
# 256², 512², forward and forward+backward — every CPU backend (eager reference, torch.compile'd
# reference, fused "cpu"), one table, one run (the README's table).
# Targets (256², forward+backward): the fused cpu backend ≥ 30× the eager reference and ≥ 5× the
# compiled one.
#   benchmarks/bench_render.sh [extra `focalstack bench render` options, e.g. --repeats 9]
# Writes benchmarks/results/render_cpu_all.{json,md}. The first run includes torch.compile's
# compilation (a few minutes on 2 cores; excluded from the timings).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
PIN=()
if command -v taskset >/dev/null 2>&1 && [ "$(nproc --all)" -ge 2 ]; then
  PIN=(taskset -c 0,1)
fi
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 NUMBA_NUM_THREADS=2
exec "${PIN[@]}" "$PY" -m focalstack bench render --sizes 128 256 512 --kernel-size 7 --batch 20 --channels 3 \
  --modes forward forward+backward --threads 2 --repeats 7 --warmup 1 \
  --out "$OUT/render_cpu_all.json" "$OUT/render_cpu_all.md" "$@"
