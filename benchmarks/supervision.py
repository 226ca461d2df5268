"""Issue #3 results: the same DAIF-Net, data and step budget, trained self-supervised vs
depth-supervised vs AIF-supervised, on (a) procedural stacks and (b) stacks synthesised from the
DSLR indoor RGB-D training pairs (our own scene split); plus inference latency, training
throughput and the renderer's share of a training step.

    .venv/bin/python benchmarks/supervision.py --steps 1000 --out benchmarks/results/supervision

Everything goes through the public CLI (synth → train → predict → eval), so the numbers are what
a user gets. Writes OUT/supervision.md and OUT/supervision.json. Resumable: finished runs and
predictions are reused.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_common import FS, sh, synth_dslr, synth_procedural

MODES = ("self", "depth", "aif")


def datasets(out: Path, shared: Path, n_proc: int) -> dict[str, tuple[Path, Path]]:
    d = out / "data"
    synth_procedural(d, "procedural", n_proc, 24, 192)
    sets = {"procedural": (d / "procedural" / "train", d / "procedural" / "test")}
    pair = synth_dslr(d, shared)
    if pair:
        sets["dslr_synth"] = pair
    return sets


def train_eval(name: str, mode: str, train_dir: Path, test_dir: Path, out: Path, steps: int, crop: int,
               width: int) -> dict:
    run = out / "runs" / f"{name}_{mode}"
    if not (run / "last.json").is_file() or json.loads((run / "last.json").read_text()).get("step", 0) < steps:
        t0 = time.perf_counter()
        sh(FS + ["train", str(train_dir), "--out", str(run), "--supervision", mode, "--max-steps", str(steps),
                 "--crop", str(crop), str(crop), "--width", str(width), "--variant", "paper",
                 "--val-interval", str(max(50, steps // 4)),
                 "--ckpt-interval", str(max(50, steps // 4)), "--workers", "1", "--no-progress", "--no-tensorboard",
                 "--ssim-alpha", "0.85"])   # the core paper's loss, the default when this table was made
        (run / "wall_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    # the last checkpoint: every mode gets exactly `steps` steps (best-by-val differs in meaning per mode)
    pred = out / "pred" / f"{name}_{mode}"
    if not pred.is_dir():
        sh(FS + ["predict", str(test_dir), "--method", "net", "--checkpoint", str(run / "last.safetensors"),
                 "-o", str(pred)])
    sh(FS + ["eval", str(pred), str(test_dir), "--name", f"{name}/{mode}"])
    m = json.loads((pred / "metrics.json").read_text())["mean"]
    m["train_seconds"] = float((run / "wall_seconds.txt").read_text()) if (run / "wall_seconds.txt").is_file() else None
    return m


def dff_baseline(name: str, test_dir: Path, out: Path) -> dict:
    pred = out / "pred" / f"{name}_dff"
    if not pred.is_dir():
        sh(FS + ["predict", str(test_dir), "--method", "dff", "-o", str(pred)])
    sh(FS + ["eval", str(pred), str(test_dir), "--name", f"{name}/dff"])
    return json.loads((pred / "metrics.json").read_text())["mean"]


def speed(checkpoint: Path, train_dir: Path, crop: int) -> dict:
    """Latency of one 5×256×256 stack (CPU, after warm-up, median of 5), training throughput
    (stacks/s, batch 4) and the renderer's share of a training step."""
    import torch

    from focalstack.data import FocalStackDataset, StackAugment
    from focalstack.losses import LossConfig, compute_losses
    from focalstack.models import predict_batch
    from focalstack.optics import CameraBatch, get_preset
    from focalstack.render import render_stack
    from focalstack.checkpoint import load_model

    model, _ = load_model(checkpoint)
    cam = get_preset("procedural")
    x = torch.rand(5, 3, 256, 256)
    for _ in range(2):
        predict_batch(model, x, cam)
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        predict_batch(model, x, cam)
        ts.append(time.perf_counter() - t0)
    latency = sorted(ts)[2]

    ds = FocalStackDataset(train_dir, StackAugment(crop_size=(crop, crop)))
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    cb = CameraBatch.from_dict(batch["camera"])
    near, far = cam.effective_depth_range_m()
    rng = torch.tensor([[near, far]] * 4)

    def step(backend: str):
        out = model(batch["frames"], cb, rng)
        total, _ = compute_losses(out, batch, LossConfig(render_backend=backend, alpha=0.85))   # with its SSIM term
        opt.zero_grad()
        total.backward()
        opt.step()
        return out

    def step_time(backend: str) -> float:
        for _ in range(2):
            step(backend)
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            step(backend)
            ts.append(time.perf_counter() - t0)
        return sorted(ts)[2]

    # a training step with the eager reference renderer (before issue #4) and with the default
    # ("auto" → fused cpu) backend
    step_ref_s = step_time("reference")
    step_s = step_time("auto")
    # the same step with kornia's SSIM (before focalstack.ssim fused it)
    import focalstack.ssim as fs
    fused_ok = fs._fused_ok
    fs._fused_ok = lambda *a, **k: False
    try:
        step_kornia_ssim_s = step_time("auto")
    finally:
        fs._fused_ok = fused_ok
    out = step("auto")
    aif = out["aif"].detach().requires_grad_()
    depth = out["depth_m"].detach().requires_grad_()
    from focalstack.train.trainer import choose_kernel_size
    k = choose_kernel_size([cam], [(near, far)])
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        r = render_stack(aif, depth, cb, kernel_size=k)
        r.sum().backward()
        ts.append(time.perf_counter() - t0)
    render_s = sorted(ts)[2]
    return {"latency_5x256x256_s": latency, "train_step_s": step_s, "train_step_reference_renderer_s": step_ref_s,
            "train_step_kornia_ssim_s": step_kornia_ssim_s, "train_stacks_per_s": 4 / step_s,
            "render_fwd_bwd_s": render_s, "render_share": render_s / step_s, "kernel_size": k,
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/supervision")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--work", default="bench_work/supervision",
                    help="datasets, runs and predictions (large; git-ignored)")
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--width", type=int, default=8, help="DAIF-Net width (8 = the shipped model)")
    ap.add_argument("--num-procedural", type=int, default=320)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    ap.add_argument("--only", nargs="*", help="dataset names to run (default all)")
    ap.add_argument("--speed-only", action="store_true",
                    help="re-measure only the speed table (shipped checkpoint, same architecture; the "
                         "accuracy rows are kept from OUT/supervision.json)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    if args.speed_only:
        # speed does not depend on the weights: the shipped checkpoint has the benchmark's architecture
        from focalstack.checkpoint import shipped_checkpoint
        prev = json.loads((out / "supervision.json").read_text())
        rows, args.steps = prev["rows"], prev["steps"]
        synth_procedural(work / "data", "speed", 8, 0, 192)
        sp = speed(shipped_checkpoint("procedural"), work / "data" / "speed" / "train", args.crop)
    else:
        sets = datasets(work, Path(args.shared), args.num_procedural)
        for name, (tr, te) in sets.items():
            if args.only and name not in args.only:
                continue
            rows[f"{name} / DFF (LAPM, no training)"] = dff_baseline(name, te, work)
            for mode in MODES:
                rows[f"{name} / DAIF-Net {mode}-supervised"] = train_eval(name, mode, tr, te, work, args.steps,
                                                                          args.crop, args.width)
        sp = speed(work / "runs" / "procedural_self" / "last.safetensors", sets["procedural"][0], args.crop)
    from focalstack.metrics import format_table
    keys = ["delta1", "delta2", "abs_rel", "rmse", "mae", "aif_psnr", "train_seconds"]
    table = format_table(rows, keys)
    import platform

    import torch
    from bench_common import physics_light
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
               f"optics in {physics_light()} light")
    md = [f"# Supervision comparison (DAIF-Net width {args.width}, {args.steps} steps each, batch 4, {args.crop}² crops)", "",
          f"Machine: {machine}", "", table, "",
          "| speed | value |", "|---|---|",
          f"| inference latency, 5×256×256 stack (s) | {sp['latency_5x256x256_s']:.3f} |",
          f"| training throughput (stacks/s, batch 4, {args.crop}²) | {sp['train_stacks_per_s']:.2f} |",
          f"| training step, eager reference renderer (s) | {sp['train_step_reference_renderer_s']:.3f} |",
          f"| training step, fused renderer, kornia SSIM (s) | {sp['train_step_kornia_ssim_s']:.3f} |",
          f"| training step, fused renderer, fused SSIM (default) (s) | {sp['train_step_s']:.3f} |",
          f"| renderer fwd+bwd per step (s, k={sp['kernel_size']}) | {sp['render_fwd_bwd_s']:.3f} |",
          f"| renderer share of a step | {100 * sp['render_share']:.0f} % |"]
    (out / "supervision.md").write_text("\n".join(md) + "\n")
    (out / "supervision.json").write_text(json.dumps({"rows": rows, "speed": sp, "steps": args.steps,
                                                      "machine": machine}, indent=2) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
