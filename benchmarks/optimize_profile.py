"""Where the time of ``predict --method optimize`` goes (issue 15: profile first).

    .venv/bin/python benchmarks/optimize_profile.py [--out benchmarks/results] [--threads 2] [--kornia]

One stack per set — a 192² procedural stack, a 322×216 stack synthesised from a DSLR RGB-D pair
(the source's 35 mm f/2.8 camera, 5 frames, small blur) and the same scene through the 50 mm f/2
camera of ``benchmarks/general.py`` (σ up to 9 px over its range; both skipped when
../shared/data is absent) — optimised under ``torch.profiler`` with the ``reference`` schedule
(the optimiser before issue 15) and the default ``fast`` one, fused SSIM (``--kornia``: also the
reference schedule with kornia's SSIM, the implementation before the fused one). Time is split
into: DFF initialisation, SSIM (forward + backward), renderer (forward + backward), Adam, other
tensor ops (L1, smoothness, sigmoid, resizing), and the rest (Python, autograd engine) = wall −
ops; and per coarse-to-fine stage: seconds, iterations, and the step after which the loss stays
within 1 % of the stage's final loss. Writes optimize_profile.{md,json}.
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
DATA = ROOT / ".." / "shared" / "data"


def stacks():
    from focalstack.data.procedural import make_procedural_sample
    out = {"procedural 192×192": make_procedural_sample(1_000_000, size_hw=(192, 192))}
    src_dir = DATA / "dfd_indoor_carvalho2018"
    if src_dir.is_dir():
        from focalstack.data.rgbd import get_source
        from focalstack.data.synthesis import make_sample, resize_rgbd
        src = get_source("dslr_indoor", src_dir)
        name, aif, depth = next(iter(src))
        aif, depth = resize_rgbd(aif, depth, 0.5)
        out["DSLR-synth 322×216, 35 mm f/2.8"] = make_sample(aif, depth, src.default_camera.resized(0.5), name,
                                                             noise_std=0.01, seed=[0])
        import sys
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from general import CAMERAS
        from focalstack.optics import FocalStackCamera
        cam50 = FocalStackCamera.from_dict(CAMERAS["dslr50"])
        out["DSLR-synth 322×216, 50 mm f/2"] = make_sample(aif, depth, cam50, name, noise_std=0.01, seed=[0])
    return out


def category(name: str) -> str | None:
    n = name.lower()
    if "ssim" in n or "convolution" in n or "conv2d" in n or "reflection_pad" in n:
        return "ssim"
    if "defocus" in n:
        return "renderer"
    if "adam" in n or "_foreach" in n:
        return "adam"
    return None


def converged_at(losses: list[float], tol: float = 0.01) -> int:
    """1-based step after which every loss is within tol (relative) of the last one."""
    final = losses[-1]
    for i in range(len(losses)):
        if all(abs(v - final) <= tol * abs(final) for v in losses[i:]):
            return i + 1
    return len(losses)


def profile_one(sample, fused: bool, schedule: str) -> dict:
    import focalstack.ssim as fs
    from focalstack.classical import depth_from_focus
    from focalstack.optimize import OptimizeConfig, optimize_stack
    from torch.profiler import ProfilerActivity, profile

    real = fs._fused_ok
    if not fused:
        fs._fused_ok = lambda *a, **k: False
    try:
        cfg = OptimizeConfig(schedule=schedule)
        t0 = time.perf_counter()
        init = depth_from_focus(sample.frames.unsqueeze(0), sample.camera, measure=cfg.measure, window=cfg.window,
                                refine=cfg.refine)
        t_dff = time.perf_counter() - t0
        optimize_stack(sample.frames, sample.camera, OptimizeConfig(levels=(1,), iters=(2,)), init=init)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            stamps = []
            t0 = time.perf_counter()
            res = optimize_stack(sample.frames, sample.camera, cfg, init=init,
                                 progress=lambda i, n, loss: stamps.append(time.perf_counter()))
            wall = time.perf_counter() - t0
    finally:
        fs._fused_ok = real
    cats = {"ssim": 0.0, "renderer": 0.0, "adam": 0.0, "other tensor ops": 0.0}
    for ev in prof.key_averages():
        c = category(ev.key) or "other tensor ops"
        cats[c] += ev.self_cpu_time_total / 1e6
    ops = sum(cats.values())
    stages: dict[int, list[float]] = {}
    stage_s: dict[int, float] = {}
    prev = t0
    for (s, loss), t in zip(res.history, stamps):
        stages.setdefault(s, []).append(loss)
        stage_s[s] = stage_s.get(s, 0.0) + t - prev
        prev = t
    return {"dff_init_s": t_dff, "optimize_s": wall, **{f"{k}_s": v for k, v in cats.items()},
            "python_autograd_s": max(0.0, wall - ops), "iterations": len(res.history),
            "stages": [{"level": s, "iters": len(v), "seconds": stage_s[s], "converged_at": converged_at(v),
                        "first_loss": v[0], "final_loss": v[-1]} for s, v in stages.items()],
            "recon_after": res.recon_after["loss"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kornia", action="store_true", help="also the reference schedule with kornia's SSIM")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    for name, sample in stacks().items():
        runs = [(False, "reference")] if args.kornia else []
        for fused, schedule in runs + [(True, "reference"), (True, "fast")]:
            label = f"{name}, {schedule}" + ("" if fused else ", kornia SSIM")
            print(label, flush=True)
            rows[label] = profile_one(sample, fused, schedule)
    keys = ["dff_init_s", "optimize_s", "ssim_s", "renderer_s", "adam_s", "other tensor ops_s", "python_autograd_s"]
    lines = ["| stack, schedule | DFF init (s) | optimize (s) | SSIM fwd+bwd | renderer fwd+bwd | Adam | other ops | "
             "Python + autograd | per stage 1/s: seconds, iterations (converged at) | final recon loss |",
             "|---|" + "---:|" * 9]
    for label, r in rows.items():
        st = ", ".join(f"1/{s['level']}: {s['seconds']:.2f} s, {s['iters']} ({s['converged_at']})" for s in r["stages"])
        cells = [f"{r[k]:.2f}" for k in keys[:2]]
        cells += [f"{r[k]:.2f} ({100 * r[k] / r['optimize_s']:.0f} %)" for k in keys[2:]]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {st} | {r['recon_after']:.4f} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    from focalstack.data.io import atomic_write_file
    meta = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
            "torch": torch.__version__}
    atomic_write_file(out / "optimize_profile.json", json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    atomic_write_file(out / "optimize_profile.md", f"Optimiser profile ({args.threads} threads, torch "
                                                   f"{torch.__version__})\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
