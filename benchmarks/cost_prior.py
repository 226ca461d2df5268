"""Issue 12 ablation: which cost prior should the camera-aware DAIF-Net (and ``--method dfd``) start
from? The soft-argmin (gain 50, as the untrained network) of the relative-blur cost volume under
three ways of combining its aggregated versions (``focalstack.classical.dfd``), no learning:

* ``mean`` — raw, r and 3r averaged (the prior before issue 12's gate; ``cost_aggregation="mean"``);
* ``mean5`` — raw, r, 3r, 6r and 12r averaged: reaches across walls, smears textured depth edges;
* ``gated`` — the five weighted per pixel by the local confidence (``gated_weights``, the default).

    .venv/bin/python benchmarks/cost_prior.py [--scenes 12:16] [--out benchmarks/results/general/cost_prior.md]

Data: the ``general.py`` validation sets (DSLR-indoor validation scenes through the four unseen
cameras; built on first use under bench_work/general/) — ``--scenes`` picks a slice of each, e.g.
12:16, scenes the gate's power was *not* chosen on (it was chosen on 0–11 of these and the two
sets below) — plus the textured-everywhere procedural test stacks of ``supervision.py`` when present.
δ1 / AbsRel against the ground truth, and δ1 on each image's 30 % least textured pixels (as general.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

PRIORS = ("mean", "mean5", "gated")


def soft_argmin_depth(cost: torch.Tensor, inv_depth: torch.Tensor, gain: float = 50.0) -> torch.Tensor:
    """Depth [B,1,H,W] (m) of the untrained network: softmax(−gain·cost) over J, mean inverse depth."""
    p = torch.softmax(-gain * cost, dim=1)
    return 1.0 / (p * inv_depth.view(inv_depth.shape[0], -1, 1, 1)).sum(dim=1, keepdim=True)


def prior_depths(frames: torch.Tensor, camera) -> dict[str, torch.Tensor]:
    """One stack [F,3,H,W] → {prior: depth [H,W] m}."""
    from focalstack.classical.dfd import aggregated_costs, gated_weights, prior_cost, relative_blur_cost
    from focalstack.optics import CameraBatch
    fr = frames.unsqueeze(0)
    vol = relative_blur_cost(fr, CameraBatch.from_cameras([camera]), torch.tensor([camera.effective_depth_range_m()]))
    versions, conf = aggregated_costs(vol, fr)
    costs = {"mean": versions[:, :3].mean(dim=1), "mean5": versions.mean(dim=1),
             "gated": prior_cost(versions, gated_weights(conf))}
    return {k: soft_argmin_depth(c, vol.inv_depth)[0, 0] for k, c in costs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", default="12:16", help="slice of each general.py validation set (default 12:16)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "general" / "cost_prior.md"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    from general import CAMERAS, build, flat_mask

    from focalstack.data import list_samples, load_sample
    from focalstack.metrics import depth_metrics
    from focalstack.render import light
    lo, hi = (int(v) for v in args.scenes.split(":"))
    sets = {cam: list_samples(build(cam))[lo:hi] for cam in CAMERAS}
    proc = ROOT / "bench_work" / "supervision" / "data" / "procedural" / "test"
    if proc.is_dir():
        sets["procedural (supervision.py test)"] = list_samples(proc)[:12]
    rows = {}
    for name, paths in sets.items():
        acc = {k: [] for k in PRIORS}
        for p in paths:
            s = load_sample(p)
            fm = flat_mask(s.frames)
            for k, d in prior_depths(s.frames, s.camera).items():
                m = depth_metrics(d, s.depth_m)
                acc[k].append((m["delta1"], m["abs_rel"], depth_metrics(d, s.depth_m, mask=fm)["delta1"]))
        for k, v in acc.items():
            t = torch.tensor(v).mean(dim=0).tolist()
            rows[f"{name} / {k}"] = {"delta1": t[0], "abs_rel": t[1], "delta1_flat": t[2], "n": len(v)}
            print(name, k, rows[f"{name} / {k}"], flush=True)
    lines = [f"# Cost priors of the untrained camera-aware network (soft-argmin, no learning); scenes {args.scenes} "
             f"of each general.py set, optics in {light.PHYSICS_LIGHT} light", "",
             "| set / prior | δ1 | AbsRel | δ1 flat 30 % | stacks |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {r['delta1']:.3f} | {r['abs_rel']:.3f} | {r['delta1_flat']:.3f} | {r['n']} |" for k, r in rows.items()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
