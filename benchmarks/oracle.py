"""How good is the self-supervised objective itself? Zero-shot optimisation (``focalstack.optimize``,
the re-rendering loss + edge-aware smoothness that DAIF-Net's training and ``--refine`` minimise)
started from the GROUND-TRUTH depth and AIF: where it drifts to is (close to) the objective's own
optimum near the truth. A learned self-supervised model that minimises the same loss cannot be
expected to beat it (Issue #3 asks for δ1 ≥ 0.9 on DSLR-synthesised stacks).

    .venv/bin/python benchmarks/oracle.py DATASET [DATASET ...] [--num 3] [--out FILE.json]

Per sample: δ1 / AbsRel / RMSE of the start (GT, holes filled with the median and clamped into the
camera's depth range) and of the optimised depth, against the GT (holes excluded); the means, and
the re-rendering loss at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def oracle_one(sample_dir: Path, threads: int | None) -> dict:
    from focalstack.classical.dff import DFFResult
    from focalstack.data import load_sample
    from focalstack.metrics import depth_metrics
    from focalstack.optimize import OptimizeConfig, optimize_stack

    s = load_sample(sample_dir)
    gt = s.depth_m
    if gt is None or s.aif is None:
        raise ValueError(f"{sample_dir}: the oracle needs depth.npy and aif.png")
    valid = torch.isfinite(gt) & (gt > 0)
    near, far = s.camera.effective_depth_range_m()
    d = torch.where(valid, gt, gt[valid].median()).clamp(near * 1.05, far * 0.95).view(1, 1, *gt.shape)
    init = DFFResult(depth_m=d, inv_depth=1.0 / d, confidence=torch.ones_like(d),
                     index=torch.zeros_like(d, dtype=torch.long), aif=s.aif.unsqueeze(0),
                     focus=torch.zeros(1, s.frames.shape[0], *gt.shape))
    t0 = time.perf_counter()
    # the reference schedule (every iteration, no early stop): where the objective's own optimum lies
    r = optimize_stack(s.frames, s.camera, OptimizeConfig(threads=threads, schedule="reference"), init=init)
    start, end = depth_metrics(d[0, 0], gt), depth_metrics(r.depth_m.view(*gt.shape), gt)
    keys = ("delta1", "abs_rel", "rmse")
    return {"sample": sample_dir.name, "seconds": time.perf_counter() - t0,
            "start": {k: start[k] for k in keys}, "end": {k: end[k] for k in keys},
            "recon_start": r.recon_before["loss"], "recon_end": r.recon_after["loss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", nargs="+", type=Path)
    ap.add_argument("--num", type=int, default=3, help="first N samples (sorted) of each dataset")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from focalstack.data import list_samples
    result = {}
    for ds in args.datasets:
        rows = [oracle_one(p, args.threads) for p in list_samples(ds)[: args.num]]
        for r in rows:
            print(f"{ds.name}/{r['sample']}: δ1 {r['start']['delta1']:.3f} → {r['end']['delta1']:.3f}, AbsRel "
                  f"{r['start']['abs_rel']:.3f} → {r['end']['abs_rel']:.3f}, recon {r['recon_start']:.4f} → "
                  f"{r['recon_end']:.4f} ({r['seconds']:.0f} s)", flush=True)
        mean = {k: sum(r["end"][k] for r in rows) / len(rows) for k in ("delta1", "abs_rel", "rmse")}
        result[str(ds)] = {"rows": rows, "mean_end": mean}
        print(f"{ds}: mean after optimisation from the ground truth: δ1 {mean['delta1']:.3f}, AbsRel "
              f"{mean['abs_rel']:.3f}, RMSE {mean['rmse']:.3f} m ({len(rows)} samples)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
