"""Issue 12: the camera-aware DAIF-Net's AIF prior. The untrained network's AIF is a softmax over the
input frames with logits ``−gain·σ_k(d̂)`` (σ of frame k at the predicted depth, px); this script
scores that AIF (PSNR against the true AIF) for several gains, beside the hard pick of the frame in
focus (``--method dfd``'s AIF, ``losses.coarse_aif``). The depth does not depend on the gain.

    .venv/bin/python benchmarks/aif_prior.py [--num 6] [--refine 100] [--out benchmarks/results/general/aif_prior.md]

Data: the *training* halves of the ``general.py`` camera sets (DSLR-indoor training scenes through
the four cameras; the gain was chosen on these) and the procedural training stacks of
``models.py`` when present, then the validation halves (reported, not chosen on). First ``--num``
stacks of each. The shipped general checkpoint with its ``log_aif_gain`` overwritten per row.
A second table: ``--refine N`` from the network at the shipped gain and at a sharper one (``--sharp``,
default 5), on the first 3 validation stacks of each camera (general.py's refine subset): the refined
AIF's PSNR and the refined depth's δ1 / AbsRel — what the start's AIF changes for the refinement.
(Why the shipped gain stays soft: ``focalstack.models.daifnet.AIF_PRIOR_GAIN``.)
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

GAINS = (1.5, 3.0, 4.0, 5.0, 6.0, 12.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num", type=int, default=6, help="stacks per set")
    ap.add_argument("--refine", type=int, default=100, help="refinement steps of the second table (0: skip it)")
    ap.add_argument("--sharp", type=float, default=5.0, help="the sharper gain the second table compares")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "general" / "aif_prior.md"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    from general import CAMERAS, WORK, build

    from focalstack.data import list_samples, load_sample
    from focalstack.inference.network import _model_depth_range, load_cached, refine_prediction, run_network
    from focalstack.losses import coarse_aif
    from focalstack.metrics import aif_metrics, depth_metrics
    from focalstack.optics import CameraBatch

    model, meta = load_cached(None)
    shipped_gain = float(model.log_aif_gain.exp())
    sets = []
    proc = ROOT / "bench_work" / "models" / "data" / "procedural" / "train"
    if proc.is_dir():
        sets.append(("procedural (train)", proc))
    for cam in CAMERAS:
        build(cam)
        sets.append((f"{cam} (train)", WORK / cam / "train"))
    for cam in CAMERAS:
        sets.append((f"{cam} (val)", WORK / cam / "val"))

    rows = []
    for name, d in sets:
        samples = [load_sample(p) for p in list_samples(d)[: args.num]]
        psnr = {g: 0.0 for g in GAINS}
        hard = 0.0
        for s in samples:
            rng = _model_depth_range(meta, s)
            for g in GAINS:
                with torch.no_grad():
                    model.log_aif_gain.fill_(math.log(g))
                depth, aif = run_network(model, s.frames, s.camera, rng)
                psnr[g] += aif_metrics(aif[None].clamp(0, 1), s.aif[None])["psnr"] / len(samples)
            pick, _ = coarse_aif(s.frames[None], depth.reshape(1, 1, *depth.shape[-2:]), CameraBatch.from_cameras([s.camera]))
            hard += aif_metrics(pick, s.aif[None])["psnr"] / len(samples)
        rows.append((name, psnr, hard))
        print(name, {g: round(v, 2) for g, v in psnr.items()}, round(hard, 2), flush=True)
    refined = []
    for cam in CAMERAS if args.refine else ():
        samples = [load_sample(p) for p in list_samples(WORK / cam / "val")[:3]]
        for g in (shipped_gain, args.sharp):
            with torch.no_grad():
                model.log_aif_gain.fill_(math.log(g))
            acc = {"net_psnr": 0.0, "psnr": 0.0, "delta1": 0.0, "abs_rel": 0.0}
            for s in samples:
                rng = _model_depth_range(meta, s)
                depth, aif = run_network(model, s.frames, s.camera, rng)
                r = refine_prediction(s.frames, s.camera, rng, depth, aif, args.refine)
                hw = depth.shape[-2:]
                dm = depth_metrics(r.depth_m.reshape(1, 1, *hw), s.depth_m.reshape(1, 1, *hw))
                acc["net_psnr"] += aif_metrics(aif[None].clamp(0, 1), s.aif[None])["psnr"] / len(samples)
                acc["psnr"] += aif_metrics(r.aif.reshape(1, 3, *hw).clamp(0, 1), s.aif[None])["psnr"] / len(samples)
                acc["delta1"] += dm["delta1"] / len(samples)
                acc["abs_rel"] += dm["abs_rel"] / len(samples)
            refined.append((cam, g, acc))
            print(cam, g, {k: round(v, 3) for k, v in acc.items()}, flush=True)
    with torch.no_grad():
        model.log_aif_gain.fill_(math.log(shipped_gain))

    lines = [f"# Untrained camera-aware DAIF-Net: AIF PSNR (dB) against the AIF prior's gain — {platform.machine()}, "
             f"torch {torch.__version__}", "",
             f"First {args.num} stacks per set; shipped gain {shipped_gain:g}. 'hard pick' = the frame in focus "
             "at the network's depth (`--method dfd`'s AIF rule).", "",
             "| set | " + " | ".join(f"gain {g:g}" for g in GAINS) + " | hard pick |",
             "|---|" + "---:|" * (len(GAINS) + 1)]
    for name, psnr, hard in rows:
        lines.append(f"| {name} | " + " | ".join(f"{psnr[g]:.2f}" for g in GAINS) + f" | {hard:.2f} |")
    if refined:
        lines += ["", f"`--refine {args.refine}` from the network at each gain (first 3 validation stacks per camera):", "",
                  "| camera | gain | net AIF PSNR | refined AIF PSNR | refined δ1 | refined AbsRel |", "|---|---:|---:|---:|---:|---:|"]
        for cam, g, acc in refined:
            lines.append(f"| {cam} | {g:g} | {acc['net_psnr']:.2f} | {acc['psnr']:.2f} | {acc['delta1']:.3f} | {acc['abs_rel']:.3f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
