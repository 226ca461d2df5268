#!/usr/bin/env bash
# Render benchmark with the settings of issue 4: 2 CPU cores, 256², k=7, 20 images (C=3),
# forward+backward — every CPU backend (eager reference, torch.compile'd reference, fused "cpu").
# Targets: the fused cpu backend ≥ 30× the eager reference and ≥ 5× the compiled one.
#   benchmarks/bench_render.sh [extra `focalstack bench render` options, e.g. --repeats 9]
# Writes benchmarks/results/render_cpu.{json,md}. The first run includes torch.compile's
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
exec "${PIN[@]}" "$PY" -m focalstack bench render --sizes 256 --kernel-size 7 --batch 20 --channels 3 \
  --modes forward+backward --threads 2 --repeats 5 --warmup 1 \
  --out "$OUT/render_cpu.json" "$OUT/render_cpu.md" "$@"
