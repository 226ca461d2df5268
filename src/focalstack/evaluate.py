"""Score a folder of predictions against a dataset with ground truth.

Predictions are matched to ground-truth samples by folder name (``focalstack predict`` writes
``OUT/<sample name>/depth.npy``; a single-sample prediction folder matches a single-sample GT).
Metrics are those of :mod:`focalstack.metrics`: computed per sample over its valid pixels, then
averaged over samples.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.encoding import to_working
from .data.format import list_samples, load_camera
from .data.io import SampleError, read_depth, read_image
from .metrics import aif_metrics, depth_metrics

ALIGNMENTS = ("none", "median", "affine_inverse")


def _pred_dirs(pred_root: Path) -> dict[str, Path]:
    if (pred_root / "depth.npy").is_file():
        return {"": pred_root}
    found = {p.name: p for p in sorted(pred_root.iterdir()) if (p / "depth.npy").is_file()} if pred_root.is_dir() else {}
    if not found:
        raise SampleError(f"{pred_root}: no prediction folders (folders holding depth.npy) found")
    return found


def align_affine_inverse(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Least-squares a, b with a·pred + b ≈ 1/gt over valid pixels; returns the metric depth 1/(a·pred + b).
    For predictions known only up to an affine map in inverse depth (DDFS's ambiguity)."""
    x = pred[valid].double()
    y = 1.0 / gt[valid].double()
    A = torch.stack([x, torch.ones_like(x)], 1)
    sol = torch.linalg.lstsq(A, y.unsqueeze(1)).solution.squeeze(1)
    inv = (sol[0] * pred.double() + sol[1]).clamp_min(1e-6)
    return (1.0 / inv).to(pred.dtype)


@dataclass
class EvalResult:
    per_sample: dict[str, dict[str, float]]
    mean: dict[str, float]
    n_samples: int


def evaluate(pred_root: str | Path, gt_root: str | Path, align: str = "none",
             min_depth: float | None = None, max_depth: float | None = None) -> EvalResult:
    pred_root, gt_root = Path(pred_root), Path(gt_root)
    if align not in ALIGNMENTS:
        raise ValueError(f"align must be one of {ALIGNMENTS}, got {align!r}")
    preds = _pred_dirs(pred_root)
    gts = {p.name: p for p in list_samples(gt_root)}
    if "" in preds:  # a single prediction folder
        if len(gts) != 1:
            raise SampleError(f"{pred_root}: a single prediction but {gt_root} holds {len(gts)} samples")
        preds = {next(iter(gts)): preds[""]}
    missing = sorted(set(gts) - set(preds))
    if missing:
        raise SampleError(f"{pred_root}: no prediction for {len(missing)} ground-truth sample(s), e.g. {missing[0]}")
    per: dict[str, dict[str, float]] = {}
    for name, gdir in gts.items():
        if not (gdir / "depth.npy").is_file():
            raise SampleError(f"{gdir}: no depth.npy to evaluate against")
        gt = read_depth(gdir / "depth.npy")
        pdir = preds[name]
        pred = read_depth(pdir / "depth.npy")
        if pred.shape != gt.shape:
            raise SampleError(f"{pdir / 'depth.npy'}: size {tuple(pred.shape)} differs from ground truth {tuple(gt.shape)}")
        meta = {}
        if (pdir / "meta.json").is_file():
            meta = json.loads((pdir / "meta.json").read_text())
        if meta.get("depth_kind", "metric") != "metric" and align == "none":
            raise SampleError(f"{pdir}: prediction is {meta['depth_kind']} depth; evaluate it with "
                              f"--align affine_inverse (or median)")
        valid = torch.isfinite(gt) & (gt > 0) & torch.isfinite(pred)
        if align == "affine_inverse":
            pred = align_affine_inverse(pred, gt, valid)
        m = depth_metrics(pred, gt, median_scaling=(align == "median"), min_depth=min_depth, max_depth=max_depth)
        if (pdir / "aif.png").is_file() and (gdir / "aif.png").is_file():
            # predicted aif.png is sRGB; the ground truth is in its sample's encoding: compare in the working one
            gt_aif = to_working(read_image(gdir / "aif.png"), load_camera(gdir).encoding)
            a = aif_metrics(to_working(read_image(pdir / "aif.png"), "srgb"), gt_aif)
            m.update({f"aif_{k}": v for k, v in a.items()})
        m.pop("n_images", None)
        per[name] = m
    keys = list(next(iter(per.values())).keys())
    mean = {k: float(np.mean([v[k] for v in per.values() if k in v and math.isfinite(v[k])] or [math.nan]))
            for k in keys}
    return EvalResult(per, mean, len(per))
