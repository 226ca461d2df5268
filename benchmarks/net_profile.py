"""Where the time of ``predict --method net`` goes (issue 12's speed target: 20× faster than ``optimize``).

    .venv/bin/python benchmarks/net_profile.py [--checkpoint shipped:general] [--cameras dslr35 phone]
        [--threads 2] [--repeats 5] [--out benchmarks/results/general]

Times ``inference.network.run_network`` (the network's forward pass, as ``predict`` runs it) on the
first validation stack of each camera of ``benchmarks/general.py`` (run that first: it makes the
stacks under ``bench_work/general``) after 3 warm-up passes, then profiles ``--repeats`` passes
under ``torch.profiler``: time in torch's convolutions, in its other ops, and the rest (the
OpenCV per-plane filters of the cost volume, which torch's profiler does not see, and Python) =
wall − torch ops. Writes net_profile.{md,json}.
"""

from __future__ import annotations

import argparse
import json

import focalstack  # noqa: F401  (first: sets torch's OpenMP wait policy, see focalstack/__init__)
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def profile_stack(model, sample, repeats: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from focalstack.inference.network import run_network
    frames, cam = sample.frames.float(), sample.camera
    rng = cam.effective_depth_range_m()
    for _ in range(3):
        run_network(model, frames, cam, rng)
    t = time.perf_counter()
    for _ in range(repeats):
        run_network(model, frames, cam, rng)
    wall = (time.perf_counter() - t) / repeats
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            run_network(model, frames, cam, rng)
    ops = prof.key_averages()
    conv = sum(e.self_cpu_time_total for e in ops if "convolution" in e.key) / 1e6 / repeats
    torch_ops = sum(e.self_cpu_time_total for e in ops) / 1e6 / repeats
    return {"frames": list(frames.shape), "seconds_per_stack": wall, "convolutions_s": conv,
            "other_torch_ops_s": torch_ops - conv, "rest_s": max(wall - torch_ops, 0.0)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="shipped:general")
    ap.add_argument("--cameras", nargs="+", default=["dslr35", "dslr50", "mirrorless85", "phone"])
    ap.add_argument("--work", default=str(ROOT / "bench_work" / "general"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "general"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from focalstack.data import list_samples, load_sample
    from focalstack.inference.network import load_cached
    model = load_cached(a.checkpoint, "cpu")[0]   # (model, sidecar), as predict loads it
    model.eval()
    rows = {}
    for cam in a.cameras:
        val = Path(a.work) / cam / "val"
        if not val.is_dir():
            raise SystemExit(f"{val}: not found; run benchmarks/general.py first (it makes the validation stacks)")
        sample = load_sample(list_samples(val)[0], load_depth=False, load_aif=False)
        rows[cam] = profile_stack(model, sample, a.repeats)
        print(cam, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[cam].items()})
    head = (f"Network forward pass (`run_network`, {a.checkpoint}) — {platform.machine()}, {a.threads} threads, "
            f"torch {torch.__version__}, mean of {a.repeats} passes after 3 warm-up passes\n\n"
            "| camera | frames | s / stack | torch convolutions [s] | other torch ops [s] | rest: OpenCV + Python [s] |\n"
            "|---|---|---:|---:|---:|---:|\n")
    md = head + "".join(f"| {c} | {'×'.join(map(str, r['frames']))} | {r['seconds_per_stack']:.3f} | "
                        f"{r['convolutions_s']:.3f} | {r['other_torch_ops_s']:.3f} | {r['rest_s']:.3f} |\n"
                        for c, r in rows.items())
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "net_profile.md").write_text(md)
    (out / "net_profile.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
