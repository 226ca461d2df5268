"""The zero-shot optimiser's speed (issue 15): the fast schedule beside the reference one.

    .venv/bin/python benchmarks/optimize_speed.py [--num 8] [--sections accuracy scaling phone refine]
                                                  [--out benchmarks/results]

Sections (each written as it finishes, so a partial run keeps what it measured):

* ``accuracy`` — ``OptimizeConfig(schedule="reference")`` (the optimiser as it was: fixed
  60/40/40 Adam steps per coarse-to-fine stage) and the default ``schedule="fast"`` (each stage
  ends when its loss has converged) on the same stacks from the same DFF start: the DSLR-synth
  validation scenes of ``benchmarks/general.py`` through its four cameras (322×216; 35 mm,
  50 mm, 85 mm, phone) and procedural stacks (192², preset "procedural", seeds 1000…).
  δ1 / AbsRel against ground truth, final re-rendering loss, seconds and Adam steps per stack.
* ``scaling`` — the fast schedule on procedural stacks of {256², 512², 1024²} × {5, 10, 25}
  frames (preset "procedural" lens, focus spread over its range; the camera's pixel pitch is fixed,
  so the blur in pixels — and the render window — is the same at every size): seconds per stack
  and per megapixel-frame.
* ``phone`` — the 25-frame 1280×720 Mobile Depth "balls" stack (unknown focus, imported and
  aligned by ``focalstack import``; the import is not timed), fast (``--phone-reference``: also
  the reference schedule, which takes many minutes).
* ``refine`` — ``--refine 100`` on a 5-frame 256² procedural stack (shipped general model): the
  refinement's own seconds (``optimize_stack``'s, median of 5 runs; the network's are reported apart).

Writes <out>/optimize_speed.{md,json}. Time on this machine, 2 threads, nothing else running.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import focalstack  # noqa: F401  (first: sets torch's OpenMP wait policy, see focalstack/__init__)
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _run(sample, cfg, init=None, known_focus=True):
    from focalstack.optimize import optimize_stack
    t0 = time.perf_counter()
    r = optimize_stack(sample.frames, sample.camera, cfg, known_focus=known_focus, init=init)
    return r, time.perf_counter() - t0


def section_accuracy(num: int) -> dict:
    import general
    from focalstack.classical import depth_from_focus
    from focalstack.data import list_samples, load_sample
    from focalstack.data.procedural import make_procedural_sample
    from focalstack.metrics import depth_metrics
    from focalstack.optimize import OptimizeConfig
    sets = {}
    if SHARED.is_dir():
        for cam in general.CAMERAS:
            sets[f"DSLR-synth {cam}"] = [load_sample(p) for p in list_samples(general.build(cam))[:num]]
    sets["procedural 192²"] = [make_procedural_sample(1000 + i, size_hw=(192, 192), noise_std=0.01)
                               for i in range(num)]
    out = {}
    for name, samples in sets.items():
        inits = [depth_from_focus(s.frames.unsqueeze(0), s.camera) for s in samples]
        for schedule in ("reference", "fast"):
            # untimed first: compiles the render radii this set needs (a cold numba cache costs
            # seconds per radius, which would land on whichever set came first)
            for s, init in zip(samples, inits):
                _run(s, OptimizeConfig(schedule=schedule, iters=(2, 2, 2), stop_rel_tol=0.0), init)
            rows = []
            for s, init in zip(samples, inits):
                r, sec = _run(s, OptimizeConfig(schedule=schedule), init)
                m = depth_metrics(r.depth_m, s.depth_m)
                rows.append({"delta1": float(m["delta1"]), "abs_rel": float(m["abs_rel"]),
                             "loss": r.recon_after["loss"], "seconds": sec, "steps": len(r.history)})
            mean = {k: sum(x[k] for x in rows) / len(rows) for k in rows[0]}
            out[f"{name} | {schedule}"] = mean | {"n": len(rows)}
            print(f"{name:28s} {schedule:9s} δ1 {mean['delta1']:.4f} AbsRel {mean['abs_rel']:.4f} "
                  f"loss {mean['loss']:.5f} {mean['seconds']:.2f} s {mean['steps']:.0f} steps", flush=True)
    return out


def _procedural_camera(frames: int):
    from focalstack.optics import get_preset
    cam = get_preset("procedural")
    near, far = cam.effective_depth_range_m()
    inv = torch.linspace(1 / near, 1 / far, frames + 2)[1:-1]                 # focus spread in 1/d
    from dataclasses import replace
    return replace(cam, focus_distances_m=tuple(float(1 / v) for v in inv), f_numbers=None)


def section_scaling() -> dict:
    from focalstack.data.procedural import make_procedural_sample
    from focalstack.optimize import OptimizeConfig
    out = {}
    for size in (256, 512, 1024):
        for nf in (5, 10, 25):
            s = make_procedural_sample(2000 + size + nf, camera=_procedural_camera(nf), size_hw=(size, size))
            r, sec = _run(s, OptimizeConfig())
            mpf = size * size * nf / 1e6
            out[f"{size}x{size} x {nf}"] = {"seconds": sec, "steps": len(r.history), "s_per_mpix_frame": sec / mpf}
            print(f"{size}² × {nf} frames: {sec:.1f} s ({sec / mpf:.2f} s per Mpx·frame, {len(r.history)} steps)",
                  flush=True)
    return out


def section_phone(work: Path, with_reference: bool) -> dict:
    from focalstack.data import load_sample
    from focalstack.data.importer import import_photos
    from focalstack.optimize import OptimizeConfig
    src = SHARED / "mobile_depth_subset" / "balls"
    if not src.is_dir():
        return {}
    dst = work / "balls"
    if not dst.is_dir():
        import_photos(src, dst)
    s = load_sample(dst)
    out = {}
    for schedule in ("fast", "reference") if with_reference else ("fast",):
        r, sec = _run(s, OptimizeConfig(schedule=schedule), known_focus=False)
        out[schedule] = {"seconds": sec, "steps": len(r.history), "loss": r.recon_after["loss"],
                         "size": list(s.size_hw), "frames": s.num_frames}
        print(f"balls {s.num_frames} frames {s.size_hw}: {schedule} {sec:.1f} s, {len(r.history)} steps, "
              f"loss {r.recon_after['loss']:.5f}", flush=True)
    return out


def section_refine() -> dict:
    from focalstack.data.procedural import make_procedural_sample
    from focalstack.inference import PredictOptions, predict_net
    s = make_procedural_sample(3000, size_hw=(256, 256))
    predict_net(s, PredictOptions(refine_steps=2))                             # warm-up (model load, kernels)
    runs = []
    for _ in range(5):                            # median of 5: single runs vary ±10 % on this machine
        t0 = time.perf_counter()
        p = predict_net(s, PredictOptions(refine_steps=100))
        runs.append({"seconds": time.perf_counter() - t0, "network_seconds": p.extras["network_seconds"],
                     "refine_seconds": p.extras["refine_seconds"]})
    med = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in runs[0]}
    out = {"refine 100": med | {"runs": runs}}
    ref = med["refine_seconds"]
    print(f"--refine 100 on 256² × 5: {ref:.2f} s of refinement", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num", type=int, default=8, help="stacks per accuracy set")
    ap.add_argument("--sections", nargs="+", default=["accuracy", "scaling", "phone", "refine"])
    ap.add_argument("--phone-reference", action="store_true", help="also the reference schedule on the phone stack")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from focalstack.data.io import atomic_write_file
    work = ROOT / "bench_work" / "optimize_speed"
    work.mkdir(parents=True, exist_ok=True)
    path = args.out / "optimize_speed.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    from bench_common import physics_light
    results["meta"] = {"machine": platform.processor() or platform.machine(), "threads": 2,
                       "torch": torch.__version__, "physics_light": physics_light()}
    fns = {"accuracy": lambda: section_accuracy(args.num), "scaling": section_scaling,
           "phone": lambda: section_phone(work, args.phone_reference), "refine": section_refine}
    for name in args.sections:
        results[name] = fns[name]()
        atomic_write_file(path, json.dumps(results, indent=2) + "\n")
    atomic_write_file(args.out / "optimize_speed.md", render_md(results))
    return 0


def render_md(res: dict) -> str:
    lines = [f"Zero-shot optimiser, reference vs fast schedule ({res['meta']['threads']} threads, "
             f"torch {res['meta']['torch']}, optics in {res['meta'].get('physics_light', 'encoded')} light)", ""]
    if res.get("accuracy"):
        lines += ["| stacks | schedule | δ1 | AbsRel | final loss | s / stack | Adam steps |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for key, r in res["accuracy"].items():
            name, sched = key.split(" | ")
            lines.append(f"| {name} ({r['n']}) | {sched} | {r['delta1']:.4f} | {r['abs_rel']:.4f} | {r['loss']:.5f} | "
                         f"{r['seconds']:.2f} | {r['steps']:.0f} |")
        lines.append("")
    if res.get("scaling"):
        lines += ["| size × frames (fast) | s / stack | s per Mpx·frame | Adam steps |", "|---|---:|---:|---:|"]
        for key, r in res["scaling"].items():
            lines.append(f"| {key} | {r['seconds']:.1f} | {r['s_per_mpix_frame']:.2f} | {r['steps']} |")
        lines.append("")
    if res.get("phone"):
        lines += ["| Mobile Depth balls (unknown focus) | s | Adam steps | final loss |", "|---|---:|---:|---:|"]
        for key, r in res["phone"].items():
            lines.append(f"| {r['frames']} × {r['size'][1]}×{r['size'][0]}, {key} | {r['seconds']:.1f} | {r['steps']} | "
                         f"{r['loss']:.5f} |")
        lines.append("")
    if res.get("refine"):
        r = res["refine"]["refine 100"]
        lines += [f"`--refine 100`, 5-frame 256² stack: {r['refine_seconds']:.2f} s of refinement "
                  f"(network {r['network_seconds']:.2f} s)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
