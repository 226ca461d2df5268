"""What reading the evidence range costs ``predict --method optimize``: interleaved, warm timings of
the same stacks with ``range_from_evidence`` on and off (``--stated-range``), and the depth ranges.

    python benchmarks/optimize_range.py [--cameras dslr35 nyuv2_dered] [--num 3] [--reps 2]

Reads the validation stacks ``benchmarks/general.py`` synthesised (``bench_work/general/CAM/val``;
run it once first). One warm-up pass, then ``--reps`` passes alternating the two settings stack by
stack. Prints one JSON line per camera: mean seconds a stack with the evidence range and with the
stated one, and how many stacks had their range narrowed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", nargs="+", default=["dslr35", "nyuv2_dered"])
    ap.add_argument("--num", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--work", type=Path, default=ROOT / "bench_work" / "general")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from focalstack.data import list_samples, load_sample
    from focalstack.inference import get_method
    optimize = get_method("optimize")
    for cam in args.cameras:
        val = args.work / cam / "val"
        if not val.is_dir():
            raise SystemExit(f"{val}: missing; run benchmarks/general.py --cameras {cam} once first")
        samples = [load_sample(p) for p in list_samples(val)[: args.num]]
        seconds = {True: [], False: []}
        narrowed = 0
        for rep in range(args.reps + 1):          # pass 0 warms up (kernel caches, allocator)
            for s in samples:
                for evidence in (True, False):
                    t0 = time.perf_counter()
                    p = optimize(s, SimpleNamespace(threads=2, range_from_evidence=evidence))
                    if rep:
                        seconds[evidence].append(time.perf_counter() - t0)
                    if rep == 1 and evidence:
                        narrowed += p.extras["depth_range_m"] != p.extras["stated_depth_range_m"]
        print(json.dumps({"camera": cam, "stacks": len(samples),
                          "seconds_evidence_range": round(sum(seconds[True]) / len(seconds[True]), 3),
                          "seconds_stated_range": round(sum(seconds[False]) / len(seconds[False]), 3),
                          "ranges_narrowed": narrowed}), flush=True)


if __name__ == "__main__":
    main()
