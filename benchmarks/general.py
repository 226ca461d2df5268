"""Camera generality (issue 12): every depth method, zero-shot, on validation cameras the learned
models never saw, over indoor scenes they never saw.

    .venv/bin/python benchmarks/general.py [--checkpoint RUN_OR_WEIGHTS ...] [--num 8] [--optimize-num 4]

Validation sets (built on first use under bench_work/general/, deterministic): the DSLR-indoor
RGB-D *validation* scenes (``synth --split 0.2``: never in any training set of this repo) rendered
at 322×216 (``portrait85``: 645×432) through cameras chosen across the range (none is a training
camera: the pretraining cameras are random draws of ``optics.distribution``, the procedural preset
is 12 mm f/2):

* ``dslr35``: 35 mm f/2.8, 72 µm pixels at 322 px (a 24 MP APS-C body downsampled), focus
  1 / 1.4 / 2 / 3 / 4.5 m — weak blur (σ ≤ ~1.5 px over 0.5–10 m);
* ``dslr50``: 50 mm f/2, 60 µm, focus 0.9 / 1.3 / 1.9 / 2.8 / 4.2 m — moderate blur;
* ``mirrorless85``: 85 mm f/4, 120 µm (full frame at 322 px), 7 frames 1.2 … 6 m — strong blur
  (σ up to ~5 px), more frames;
* ``phone``: 6 mm f/1.6, 15 µm (a 1/1.3" phone sensor at 322 px), 3 frames at 0.5 / 1 / 2 m — tiny blur;
* ``nyuv2_dered``: the core paper's NYUv2 synthesis camera (preset ``nyuv2_dered``: 50 mm f/8, 12 µm
  at 320 px, focus 1 / 1.5 / 2.5 / 4 / 6 m) with its stated range 0.1–10 m (DEReD's depth clip) —
  strong blur (σ up to ~6 px over the scene, beyond the pretraining band) and a bracket 20× wider
  in inverse depth than the rooms;
* ``portrait85``: 85 mm f/1.8, 60 µm (full frame at 645 px: these scenes at their native size, not
  halved), focus 1.2 / 1.6 / 2.2 / 3 / 4.2 m — very strong blur (σ up to ~13 px over the scene),
  which ``predict`` brings into the trained band by its automatic working scale.

``--stated-range``: ``dfd``, ``optimize`` and the networks search the cameras' stated ranges as they are, not the
part the stack's defocus evidence supports (``predict --stated-range``); ``--scale 1``: ``dfd`` and the
networks run at the stacks' own size, not the automatic working scale (``predict --scale``). Both together
are ``predict`` as it was before either existed.

``--synth-opt KEY=VALUE`` renders the stacks another way than every training set of this repo (each a
field of ``focalstack.data.SynthConfig``, its own dataset folder): ``psf=disk`` (a pillbox PSF instead of
the Gaussian), ``psf=gaussian_matched`` (a Gaussian whose blur below a pixel has the variance σ² that the
sampled one falls short of), ``occlusion_aware=true`` (layered near-over-far compositing: blur that spills across
depth edges as a real lens does), ``noise=0.03`` — an image formation no method here was built or
trained on, as a camera in the field is.

Methods: ``dff`` and ``dfd`` (training-free), ``optimize`` (zero-shot, on the first
``--optimize-num`` stacks: it is the slow one), and every ``--checkpoint`` zero-shot (``net``),
optionally + ``--refine`` steps; with ``--finetune-minutes M``, `focalstack train` with its defaults
(starting from the shipped model) for M minutes on the camera's own 65 training stacks. Metrics: δ1, AbsRel, RMSE against the Xtion depth (holes excluded),
seconds per stack on this machine (2 threads). Ground truth is used for these metrics only.
Writes results/general.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench_work" / "general"
SHARED = ROOT.parent / "shared" / "data"

CAMERAS = {
    "dslr35": {"focal_length_m": 0.035, "f_number": 2.8, "pixel_size_m": 7.2e-05,
               "focus_distances_m": [1.0, 1.4, 2.0, 3.0, 4.5], "depth_range_m": [0.5, 10.0]},
    "dslr50": {"focal_length_m": 0.05, "f_number": 2.0, "pixel_size_m": 6.0e-05,
               "focus_distances_m": [0.9, 1.3, 1.9, 2.8, 4.2], "depth_range_m": [0.5, 10.0]},
    "mirrorless85": {"focal_length_m": 0.085, "f_number": 4.0, "pixel_size_m": 1.2e-04,
                     "focus_distances_m": [1.2, 1.5, 1.9, 2.5, 3.2, 4.3, 6.0], "depth_range_m": [0.5, 10.0]},
    "phone": {"focal_length_m": 0.006, "f_number": 1.6, "pixel_size_m": 1.5e-05,
              "focus_distances_m": [0.5, 1.0, 2.0], "depth_range_m": [0.3, 10.0]},
    "nyuv2_dered": {"focal_length_m": 0.05, "f_number": 8.0, "pixel_size_m": 1.2e-05,
                    "focus_distances_m": [1.0, 1.5, 2.5, 4.0, 6.0], "depth_range_m": [0.1, 10.0]},
    "portrait85": {"focal_length_m": 0.085, "f_number": 1.8, "pixel_size_m": 6.0e-05,
                   "focus_distances_m": [1.2, 1.6, 2.2, 3.0, 4.2], "depth_range_m": [0.5, 10.0]},
}
RESIZE = {"portrait85": 1.0}
"""The scenes' resize factor per camera (default 0.5: 322×216)."""


def synth_options(pairs: list[str]) -> dict:
    """``--synth-opt KEY=VALUE`` pairs → SynthConfig fields (values parsed as JSON where they parse: 1, true,
    0.02; else kept as text: disk)."""
    from focalstack.data import SynthConfig
    fields = set(SynthConfig.__dataclass_fields__)
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--synth-opt {p!r}: expected KEY=VALUE with KEY a SynthConfig field ({', '.join(sorted(fields))})")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def dataset_dir(name: str, synth_opts: dict) -> Path:
    """WORK/<camera> (the default image formation) or WORK/<camera>__key-value_… for other synth options."""
    return WORK / (name + "".join(f"__{k}-{v}" for k, v in sorted(synth_opts.items())))


def build(name: str, synth_opts: dict | None = None) -> Path:
    """The camera's validation stacks (and its training half beside them), synthesised on first use with
    ``synth_opts`` (SynthConfig fields: another PSF, layered occlusion, noise) on top of the defaults."""
    from bench_common import synth
    synth_opts = synth_opts or {}
    out = dataset_dir(name, synth_opts)
    if not (out / "val").is_dir():
        cam = WORK / f"{name}.json"
        cam.parent.mkdir(parents=True, exist_ok=True)
        cam.write_text(json.dumps(CAMERAS[name]) + "\n")
        synth(**({"out_dir": out, "source": "dslr_indoor", "input": SHARED / "dfd_indoor_carvalho2018", "camera": cam,
                  "resize": RESIZE.get(name, 0.5), "split": 0.2, "seed": 0} | synth_opts))
    return out / "val"


def flat_mask(frames: torch.Tensor) -> torch.Tensor:
    """[H,W] bool: the 30 % of pixels with the least local texture (7-px box of the stack's mean |∇|),
    where defocus carries no evidence and a method must rely on context."""
    g = frames.float().mean(dim=(0, 1))
    gx = torch.nn.functional.pad((g[:, 1:] - g[:, :-1]).abs(), (0, 1))
    gy = torch.nn.functional.pad((g[1:, :] - g[:-1, :]).abs(), (0, 0, 0, 1))
    t = torch.nn.functional.avg_pool2d((gx + gy)[None, None], 7, 1, 3, count_include_pad=False)[0, 0]
    return t <= torch.quantile(t.flatten()[:: max(1, t.numel() // 50000)], 0.3)


def evaluate(method: str, samples, opts) -> dict:
    from focalstack.inference import get_method
    from focalstack.metrics import depth_metrics
    fn = get_method(method)
    rows, flat, secs = [], [], 0.0
    for s in samples:
        t0 = time.perf_counter()
        p = fn(s, opts)
        secs += time.perf_counter() - t0
        d = p.depth_m.view(*s.size_hw)
        rows.append(depth_metrics(d, s.depth_m))
        flat.append(depth_metrics(d, s.depth_m, mask=flat_mask(s.frames))["delta1"])
    n = len(rows)
    return {k: sum(r[k] for r in rows) / n for k in ("delta1", "abs_rel", "rmse")} | \
        {"delta1_flat": sum(flat) / n, "seconds_per_stack": secs / n, "n": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", action="append", default=[], help="run folder or .safetensors (repeatable)")
    ap.add_argument("--refine", type=int, default=0, help="also net + --refine STEPS")
    ap.add_argument("--num", type=int, default=8, help="validation stacks per camera")
    ap.add_argument("--optimize-num", type=int, default=4, help="stacks for the (slow) optimize method")
    ap.add_argument("--finetune-minutes", type=float, default=0,
                    help="also: `focalstack train` with defaults (init: the shipped model) for this many minutes on "
                         "each camera's 65 training stacks (frames + camera.json only), then net on its val stacks")
    ap.add_argument("--finetune-args", default="",
                    help="extra `focalstack train` options of the fine-tune, one string given with '=' (e.g. "
                         "--finetune-args=\"--teacher optimize\"; argparse takes a separate value that starts with "
                         "'--' for an option); the run folder is named after them")
    ap.add_argument("--cameras", nargs="+", default=list(CAMERAS))
    ap.add_argument("--stated-range", action="store_true",
                    help="dfd, optimize and the networks search each camera's stated depth range as it is (module doc)")
    ap.add_argument("--scale", type=float, default=None,
                    help="dfd's and the networks' working scale (predict --scale; default automatic, 1 = the stack's "
                         "own size)")
    ap.add_argument("--synth-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="render the validation (and fine-tune) stacks otherwise than the default per-pixel Gaussian "
                         "render: a SynthConfig field, e.g. psf=disk, occlusion_aware=true, noise=0.02 (repeatable; "
                         "its own dataset folder under --work)")
    ap.add_argument("--methods", nargs="*", default=["dff", "dfd", "optimize"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "general")
    ap.add_argument("--work", type=Path, default=None,
                    help="datasets and fine-tune runs (default bench_work/general; one per light: a dataset made in "
                         "the other light is refused)")
    args = ap.parse_args()
    global WORK
    WORK = (args.work or WORK).resolve()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED}: the shared data folder is missing")
    torch.set_num_threads(2)
    from focalstack.data import list_samples, load_sample
    synth_opts = synth_options(args.synth_opt)
    results = {}
    for cam_name in args.cameras:
        samples = [load_sample(p) for p in list_samples(build(cam_name, synth_opts))[: args.num]]
        # the row names carry the image formation when it is not the default
        cam = cam_name + (f" ({', '.join(f'{k}={v}' for k, v in synth_opts.items())})" if synth_opts else "")
        stated = {"range_from_evidence": False} if args.stated_range else {}
        tag = " (stated range)" if args.stated_range else ""
        net_scale = {} if args.scale is None else {"scale": args.scale}
        tag_net = tag + (f" (scale {args.scale:g})" if args.scale is not None else "")
        for m in args.methods:
            sub = samples[: args.optimize_num] if m == "optimize" else samples
            key = f"{cam} / {m}" + (tag_net if m == "dfd" else tag if m == "optimize" else "")
            results[key] = evaluate(m, sub, SimpleNamespace(threads=2, **stated, **(net_scale if m == "dfd" else {})))
            print(key, results[key], flush=True)
        if args.finetune_minutes:
            from bench_common import FS, sh
            extra = shlex.split(args.finetune_args)
            slug = "".join(c if c.isalnum() else "-" for c in "_".join(a.lstrip("-") for a in extra))
            run = WORK / "finetune" / (dataset_dir(cam_name, synth_opts).name + f"_{args.finetune_minutes:g}min"
                                       + (f"_{slug}" if slug else ""))
            if not (run / "last.json").is_file():
                t0 = time.perf_counter()
                sh(FS + ["train", str(dataset_dir(cam_name, synth_opts) / "train"), "--out", str(run), "--max-minutes",
                         str(args.finetune_minutes), "--no-progress", "--no-tensorboard", *extra])
                (run / "wall_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
            key = f"{cam} / net fine-tuned {args.finetune_minutes:g} min on {cam_name}" + (f" ({args.finetune_args})" if extra else "") + tag_net
            results[key] = evaluate("net", samples, SimpleNamespace(checkpoint=str(run), device="cpu", **stated,
                                                                   **net_scale))
            print(key, results[key], flush=True)
        for ck in args.checkpoint:
            # with --refine: the network alone on all stacks and, like the refinement, on the first
            # --optimize-num (the slow methods' subset), so refine and optimize compare on the same stacks
            runs = [(0, samples)] + ([(0, samples[: args.optimize_num]), (args.refine, samples[: args.optimize_num])]
                                     if args.refine else [])
            for steps, sub in runs:
                key = f"{cam} / net {Path(ck).name}" + (f" + refine {steps}" if steps else "") + \
                    (f" (first {len(sub)})" if args.refine and not steps and len(sub) < len(samples) else "") + tag_net
                results[key] = evaluate("net", sub, SimpleNamespace(checkpoint=ck, refine_steps=steps, device="cpu",
                                                                    **stated, **net_scale))
                print(key, results[key], flush=True)
    from bench_common import physics_light
    lines = [f"Camera generality — {platform.processor() or platform.machine()}, 2 threads, torch {torch.__version__}, "
             f"optics in {physics_light()} light",
             "", "| camera / method | δ1 | AbsRel | RMSE [m] | δ1 flat 30 % | s / stack | stacks |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for k, r in results.items():
        lines.append(f"| {k} | {r['delta1']:.3f} | {r['abs_rel']:.3f} | {r['rmse']:.3f} | {r['delta1_flat']:.3f} | "
                     f"{r['seconds_per_stack']:.2f} | {r['n']} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "general.md").write_text("\n".join(lines) + "\n")
    (args.out / "general.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
