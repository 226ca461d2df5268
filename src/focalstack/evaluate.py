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


TARGETS = ("depth", "disparity")
BAD_PIXEL_PX = 0.07
"""A disparity error above this (pixels) is a bad pixel (the HCI 4D light-field convention)."""


def disparity_metrics(pred, gt) -> dict[str, float]:
    """Disparity errors of one image, over pixels where both are finite (pixels between views).

    pred, gt: [H,W] disparity in pixels (numpy or tensors), NaN = invalid ground truth.
    ``mse``, ``rmse``, ``mae`` [px², px, px]; ``badpix``: fraction of pixels with |error| >
    :data:`BAD_PIXEL_PX`; ``bumpiness``: the DDFF bumpiness on disparity (100 · mean of the clipped
    Hessian norm of pred − gt, see :func:`focalstack.metrics.bumpiness_map`). When every valid
    ground-truth disparity is positive (DDFF-12) also ``abs_rel``, ``sq_rel``, ``rmse_log`` and
    ``delta1..3`` (:func:`focalstack.metrics.depth_metrics` applied to disparity, the DDFF
    toolbox's convention); HCI disparities change sign, so there they are left out."""
    from .metrics import bumpiness_map

    p = np.asarray(pred.numpy() if isinstance(pred, torch.Tensor) else pred, dtype=np.float64)
    g = np.asarray(gt.numpy() if isinstance(gt, torch.Tensor) else gt, dtype=np.float64)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}")
    valid = np.isfinite(g) & np.isfinite(p)
    if not valid.any():
        raise ValueError("disparity_metrics: no pixel where both disparities are finite")
    e = p[valid] - g[valid]
    out = {"mse": float(np.mean(e * e)), "rmse": float(np.sqrt(np.mean(e * e))), "mae": float(np.mean(np.abs(e))),
           "badpix": float(np.mean(np.abs(e) > BAD_PIXEL_PX))}
    diff = torch.from_numpy(np.where(valid, p - g, 0.0))
    out["bumpiness"] = 100.0 * float(bumpiness_map(diff)[torch.from_numpy(valid)].mean())
    if bool((g[valid] > 0).all()):
        m = depth_metrics(torch.from_numpy(p), torch.from_numpy(g), mask=torch.from_numpy(valid))
        out.update({k: m[k] for k in ("abs_rel", "sq_rel", "rmse_log", "delta1", "delta2", "delta3")})
    return out


def _disparity_sample_metrics(pdir: Path, gdir: Path) -> dict[str, float]:
    """Score a prediction's metric depth as disparity against ``gdir/disparity.npy``, converted by
    the ground truth's import.json (``disparity = px_per_inverse_m / depth + offset_px``)."""
    from .metrics import EPS_DEPTH_M

    dpath, jpath = gdir / "disparity.npy", gdir / "import.json"
    if not dpath.is_file():
        raise SampleError(f"{gdir}: no disparity.npy to evaluate against (import-dataset ddff12 / hci4d write one)")
    try:
        gt = np.load(dpath, allow_pickle=False).astype(np.float64)
    except (ValueError, OSError) as e:
        raise SampleError(f"{dpath}: not a readable .npy array ({e})") from None
    try:
        conv = json.loads(jpath.read_text()).get("disparity") if jpath.is_file() else None
        k, c = float(conv["px_per_inverse_m"]), float(conv["offset_px"])
    except (TypeError, KeyError, ValueError, AttributeError):
        raise SampleError(f"{jpath}: no \"disparity\" entry with px_per_inverse_m and offset_px; cannot turn "
                          "depth into disparity") from None
    pred = read_depth(pdir / "depth.npy").numpy().astype(np.float64)
    if pred.shape != gt.shape:
        raise SampleError(f"{pdir / 'depth.npy'}: size {pred.shape} differs from ground truth {gt.shape}")
    meta = json.loads((pdir / "meta.json").read_text()) if (pdir / "meta.json").is_file() else {}
    if meta.get("depth_kind", "metric") != "metric":
        raise SampleError(f"{pdir}: prediction is {meta['depth_kind']} depth; disparity needs metric depth")
    return disparity_metrics(k / np.maximum(pred, EPS_DEPTH_M) + c, gt)


@dataclass
class EvalResult:
    per_sample: dict[str, dict[str, float]]
    mean: dict[str, float]
    n_samples: int


def evaluate(pred_root: str | Path, gt_root: str | Path, align: str = "none",
             min_depth: float | None = None, max_depth: float | None = None, target: str = "depth") -> EvalResult:
    """Score ``pred_root`` against ``gt_root``. ``target="disparity"`` scores the predicted metric
    depth as disparity against each sample's disparity.npy (DDFF-12, HCI 4D; see
    :func:`disparity_metrics`), with ``align="none"`` and no depth limits."""
    pred_root, gt_root = Path(pred_root), Path(gt_root)
    if align not in ALIGNMENTS:
        raise ValueError(f"align must be one of {ALIGNMENTS}, got {align!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if target == "disparity" and (align != "none" or min_depth is not None or max_depth is not None):
        raise ValueError("--target disparity scores metric depth as disparity: no --align, --min-depth or --max-depth")
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
        if target == "disparity":
            per[name] = _disparity_sample_metrics(preds[name], gdir)
            continue
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
