"""``focalstack demo``: the README's main job, offline, on 2 CPU cores in a few minutes.

1. synthesise held-out procedural focal stacks (seeds the shipped model never saw);
2. predict depth + AIF with the shipped DAIF-Net checkpoint (or a short training run with
   ``--train-steps``), the same refined through the optical model (``--refine``), and the
   training-free classical depth from focus and camera-aware depth from defocus for comparison;
3. score both against the ground truth (``focalstack eval`` metrics) and draw a figure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

# Test scenes use seeds far from the training seeds (see src/focalstack/weights/README.md).
TEST_SEED0 = 1_000_000
TRAIN_SEED0 = 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="end-to-end demo on embedded procedural data (no downloads)")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--num", type=int, default=6, help="held-out test stacks (default 6)")
    p.add_argument("--size", type=int, nargs=2, default=(192, 192), metavar=("H", "W"))
    p.add_argument("--checkpoint", default=None, help="model to use (default: the shipped checkpoint)")
    p.add_argument("--train-steps", type=int, default=0,
                   help="train a fresh model for this many steps instead of using the shipped one")
    p.add_argument("--train-num", type=int, default=48, help="training stacks for --train-steps")
    p.add_argument("--refine", type=int, default=100, metavar="STEPS",
                   help="also show the network refined by STEPS test-time optimisation steps (0: off; default 100)")
    p.set_defaults(func=run)


def _synth(root: Path, seeds, size) -> None:
    """Procedural stacks of the given scene seeds (the preset camera), resumable."""
    from ..data import SynthConfig, synthesize_dataset

    synthesize_dataset(SynthConfig(out_dir=root, size=tuple(size), scene_seeds=list(seeds)))


def _predict_all(data: Path, out: Path, method: str, checkpoint=None, refine_steps: int = 0) -> float:
    from tqdm import tqdm

    from ..data.format import list_samples, load_sample
    from ..data.io import claim_output_dir
    from ..inference import PredictOptions, get_method, write_prediction

    fn = get_method(method)
    claim_output_dir(out, "predictions")
    total = 0.0
    for sd in tqdm(list_samples(data), desc=f"predict {method}", unit="stack"):
        sample = load_sample(sd, load_depth=False, load_aif=False)
        t0 = time.perf_counter()
        pred = fn(sample, PredictOptions(checkpoint=checkpoint, refine_steps=refine_steps))
        dt = time.perf_counter() - t0
        total += dt
        write_prediction(out / sample.name, sample, pred, meta={"method": method, "seconds": dt})
    return total / max(1, len(list_samples(data)))


def run(args) -> int:
    import torch

    from ..data.io import atomic_write_file, claim_output_dir
    from ..evaluate import evaluate
    from ..figures import plot_predictions
    from ..metrics import format_table

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = claim_output_dir(args.out, "demo", [args.checkpoint])   # re-runs reuse it; a user's folder is refused
    test = out / "data" / "test"
    _synth(test, range(TEST_SEED0, TEST_SEED0 + args.num), args.size)
    checkpoint = args.checkpoint
    if args.train_steps > 0:
        from ..train import TrainConfig, train
        train_dir = out / "data" / "train"
        _synth(train_dir, range(TRAIN_SEED0, TRAIN_SEED0 + args.train_num), args.size)
        run_dir = out / "run"
        crop = (min(128, args.size[0]), min(128, args.size[1]))
        train(TrainConfig(data_dir=str(train_dir), out_dir=str(run_dir), max_steps=args.train_steps,
                          crop_size=crop, num_workers=0, val_interval=max(1, args.train_steps // 4),
                          ckpt_interval=max(1, args.train_steps // 4), tensorboard=False))
        checkpoint = str(run_dir)
    # label: (predict method, checkpoint, test-time refinement steps, prediction folder)
    methods = {"DAIF-Net": ("net", checkpoint, 0, "net"),
               f"DAIF-Net + --refine {args.refine}": ("net", checkpoint, args.refine, "net_refine"),
               "depth from focus (LAPM)": ("dff", None, 0, "dff"),
               "depth from defocus (relative blur)": ("dfd", None, 0, "dfd")}
    if args.refine <= 0:
        methods = {k: v for k, v in methods.items() if v[3] != "net_refine"}
    rows, times = {}, {}
    for label, (method, ck, refine, folder) in methods.items():
        pred_dir = out / "pred" / folder
        times[label] = _predict_all(test, pred_dir, method, ck, refine)
        res = evaluate(pred_dir, test)
        rows[label] = {**res.mean, "sec/stack": times[label]}
    keys = ["delta1", "abs_rel", "rmse", "mae", "aif_psnr", "aif_ssim", "sec/stack"]
    table = format_table(rows, keys)
    fig = plot_predictions(test, {label: out / "pred" / v[3] for label, v in methods.items()},
                           out / "demo.png", max_samples=3)
    atomic_write_file(out / "metrics.md", f"{args.num} held-out procedural stacks, {args.size[0]}×{args.size[1]}, "
                                          f"5 frames\n\n{table}\n")
    atomic_write_file(out / "metrics.json", json.dumps(rows, indent=2) + "\n")
    print(table)
    print(f"figure: {fig}\nmetrics: {out / 'metrics.md'}\npredictions: {out / 'pred'}")
    return 0
