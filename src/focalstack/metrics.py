"""Evaluation metrics for depth maps and all-in-focus (AiF) images.

Units: depths are in **metres**, so ``mae``/``rmse`` are in metres, ``mse`` in m², and
``sq_rel`` in metres; ``abs_rel``, ``rmse_log``, ``log10``, ``sc_inv`` and the δ
accuracies are unit-free. AiF images are intensities in ``[0, data_range]``.

Conventions (all explicit, all tested in ``tests/test_metrics.py``):

* **Per image, then averaged.** Every metric is computed on each image of a batch over
  that image's valid pixels, and the per-image values are averaged with equal weight
  (images without a valid pixel are skipped and not counted in ``n_images``). This is
  *not* the same as pooling all pixels of the batch.
* **Valid pixels**: ``gt > 0`` and finite, ``pred`` finite, ``mask`` true (if given),
  ``gt >= min_depth`` (if given) and ``gt < max_depth`` (if given; e.g.
  ``max_depth=0.5`` gives the field's "< 0.5 m" subset).
* **Non-positive predictions** are clamped to ``EPS_DEPTH_M = 1e-6`` m before anything
  else (before median scaling, logs and ratios; every metric sees the clamped map), so
  logs and ``g/p`` stay finite.
* **Logs**: ``rmse_log`` and ``sc_inv`` use the natural log; ``log10`` uses log10.
* **δ accuracies** are fractions in ``[0, 1]`` (not percent) of the *valid* pixels.

Bugs in peers' evaluation code that these definitions avoid:

* δ divided by *all* pixels instead of the valid ones (DEReD), which deflates δ on
  sparse ground truth;
* AbsRel *summed* over pixels instead of averaged (AiFDepthNet);
* RMSE-log computed with log10 instead of the natural log (DEReD).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["EPS_DEPTH_M", "BUMPINESS_CLIP", "DEPTH_KEYS", "AIF_KEYS", "depth_metrics",
           "bumpiness_map", "aif_metrics", "format_table"]

EPS_DEPTH_M = 1e-6
"""Predictions ``<= 0`` are clamped to this value (metres) before logs and ratios."""

BUMPINESS_CLIP = 0.05
"""Per-pixel clip of the Hessian's Frobenius norm in the DDFF bumpiness."""

DEPTH_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "mae", "mse",
              "delta1", "delta2", "delta3", "sc_inv", "bumpiness")
AIF_KEYS = ("psnr", "ssim", "mae")

# Scharr kernels with scikit-image's normalisation (``skimage.filters.scharr_h/_v``, the
# filters used by the DDFF toolbox): smoothing [3, 10, 3] / 16 across, difference
# [+1, 0, -1] (not halved) along the derivative axis. On a ramp of unit slope one pass
# returns 2 (i.e. 2× the per-pixel derivative), so a Hessian entry is 4× the true second
# derivative per pixel². The sign convention is irrelevant: only squares are used.
_SMOOTH = torch.tensor([3.0, 10.0, 3.0], dtype=torch.float64) / 16.0
_DIFF = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
_SCHARR_Y = torch.outer(_DIFF, _SMOOTH)  # derivative along rows (y), "scharr_h"
_SCHARR_X = torch.outer(_SMOOTH, _DIFF)  # derivative along columns (x), "scharr_v"


def _to_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray) or np.isscalar(x) or isinstance(x, (list, tuple)):
        return torch.as_tensor(np.asarray(x))
    raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")


def _as_depth_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    """[H,W] → [1,H,W]; [B,H,W] stays; [B,1,H,W] → [B,H,W]."""
    if x.ndim == 2:
        return x.unsqueeze(0)
    if x.ndim == 3:
        return x
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    raise ValueError(f"{name} must have shape [H,W] or [B,H,W] (or [B,1,H,W]), got {tuple(x.shape)}")


def _median(v: torch.Tensor) -> torch.Tensor:
    """True median of a 1-D tensor (mean of the two middle values for even length)."""
    s, _ = torch.sort(v)
    n = s.numel()
    if n % 2 == 1:
        return s[n // 2]
    return 0.5 * (s[n // 2 - 1] + s[n // 2])


def _scharr(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Same-size 3×3 correlation of [N,H,W] with edge-replicating padding.

    Replicate padding of width 1 equals ``scipy.ndimage``'s ``mode='reflect'`` (the mode
    scikit-image's Scharr filters use), so this matches ``skimage.filters.scharr_*``.
    """
    k = kernel.to(dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    xp = F.pad(x.unsqueeze(1), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(xp, k).squeeze(1)


def bumpiness_map(diff: torch.Tensor, clip: float = BUMPINESS_CLIP) -> torch.Tensor:
    """Per-pixel clipped Frobenius norm of the Hessian of ``diff`` (DDFF bumpiness).

    ``diff`` is [H,W] or [N,H,W] (prediction − ground truth, metres). The Hessian is
    estimated by applying the Scharr filters twice (d/dx∘d/dx, d/dy∘d/dx, d/dx∘d/dy,
    d/dy∘d/dy; see the normalisation note at ``_SCHARR_X``), each pass same-size with
    edge-replicating padding. Returns ``min(sqrt(dxx² + dxy² + dyx² + dyy²), clip)``.

    Borders: the replicate padding makes the first derivative of a plane drop at the two
    outermost rows/columns, so a planar ``diff`` has zero bumpiness only on pixels at
    least two pixels from the image border (as in the DDFF toolbox with scikit-image).
    """
    squeeze = diff.ndim == 2
    d = diff.unsqueeze(0) if squeeze else diff
    dx = _scharr(d, _SCHARR_X)
    dy = _scharr(d, _SCHARR_Y)
    dxx = _scharr(dx, _SCHARR_X)
    dxy = _scharr(dx, _SCHARR_Y)
    dyx = _scharr(dy, _SCHARR_X)
    dyy = _scharr(dy, _SCHARR_Y)
    norm = torch.sqrt(dxx * dxx + dxy * dxy + dyx * dyx + dyy * dyy).clamp(max=clip)
    return norm[0] if squeeze else norm


_BAND_ROWS = 512


def _banded_bumpiness_sum(diff: torch.Tensor, valid: torch.Tensor) -> float:
    """Σ over valid pixels of :func:`bumpiness_map` of an [H,W] map, computed in bands of rows with a
    2-row halo (the Scharr-twice stencil's reach, so every band row sees its true neighbours): the
    same sum as the whole map's, with temporaries of a band (photo-sized maps: ~0.2 GB, not ~2 GB)."""
    h = diff.shape[0]
    total = 0.0
    for r0 in range(0, h, _BAND_ROWS):
        r1 = min(h, r0 + _BAND_ROWS)
        a, z = max(0, r0 - 2), min(h, r1 + 2)
        band = bumpiness_map(diff[a:z])[r0 - a: r0 - a + (r1 - r0)]
        total += float(band[valid[r0:r1]].sum())
    return total


def depth_metrics(pred, gt, mask=None, *, median_scaling: bool = False,
                  min_depth: float | None = None,
                  max_depth: float | None = None) -> dict[str, float]:
    """Standard depth-error metrics, per image over valid pixels, averaged over images.

    Args:
        pred: predicted depth in metres, [H,W] or [B,H,W] (a [B,1,H,W] tensor is also
            accepted); torch tensor or numpy array.
        gt: ground-truth depth in metres, same shape as ``pred``. Pixels with ``gt <= 0``,
            NaN or ±inf are invalid.
        mask: optional boolean array of the same shape; ``False`` excludes a pixel.
        median_scaling: per image, multiply the prediction by
            ``median(gt_valid) / median(pred_valid)`` first (for relative-depth methods).
            The median of an even count is the mean of the two middle values.
        min_depth: if given, only pixels with ``gt >= min_depth`` (metres) are valid.
        max_depth: if given, only pixels with ``gt < max_depth`` (metres) are valid, e.g.
            ``max_depth=0.5`` evaluates the "< 0.5 m" subset.

    Per image, with p, g the (clamped, optionally scaled) prediction and ground truth
    on the N valid pixels and mean = (1/N)·Σ:

    * ``abs_rel``   mean(|p − g| / g)
    * ``sq_rel``    mean((p − g)² / g)                     [m]
    * ``rmse``      sqrt(mean((p − g)²))                   [m]
    * ``rmse_log``  sqrt(mean((ln p − ln g)²))             natural log
    * ``log10``     mean(|log10 p − log10 g|)
    * ``mae``       mean(|p − g|)                          [m]
    * ``mse``       mean((p − g)²)                         [m²]
    * ``delta{k}``  (#valid pixels with max(p/g, g/p) < 1.25^k) / N, a fraction in [0,1]
    * ``sc_inv``    sqrt(mean(d²) − mean(d)²), d = ln p − ln g (Eigen et al. 2014,
      scale-invariant log error; its square is their λ = 1 variant)
    * ``bumpiness`` DDFF-12 (Hazirbas et al. 2018): 100 · mean over valid pixels of
      min(‖H(p − g)‖_F, 0.05), H the Scharr-twice Hessian (see :func:`bumpiness_map`).
      The difference map is set to 0 where gt is not a positive finite number or p is not
      finite, so holes do not inject NaN; the DDFF toolbox instead keeps ``p − 0`` at gt
      holes. The clip 0.05 is in the units of ``pred``/``gt`` (metres here).

    Predictions ``<= 0`` (and any below ``EPS_DEPTH_M``) are clamped to ``EPS_DEPTH_M``
    = 1e-6 m before median scaling and before every metric.

    Avoided peer bugs: δ over all pixels instead of valid ones (DEReD), AbsRel summed
    instead of averaged (AiFDepthNet), RMSE-log in log10 instead of ln (DEReD).

    Returns:
        dict of plain Python floats with the keys in ``DEPTH_KEYS`` plus ``"n_images"``
        (int): the number of images with at least one valid pixel.

    Raises:
        ValueError: on shape mismatch, or if no image has a valid pixel.
    """
    p_all = _to_tensor(pred, "pred")
    g_all = _to_tensor(gt, "gt")
    if p_all.shape != g_all.shape:
        raise ValueError(f"pred and gt must have the same shape, got {tuple(p_all.shape)} "
                         f"and {tuple(g_all.shape)}")
    p_all = _as_depth_batch(p_all, "pred").to(torch.float64)
    g_all = _as_depth_batch(g_all, "gt").to(device=p_all.device, dtype=torch.float64)

    valid = torch.isfinite(g_all) & (g_all > 0) & torch.isfinite(p_all)
    if mask is not None:
        m = _to_tensor(mask, "mask")
        if m.shape != _to_tensor(gt, "gt").shape:
            raise ValueError(f"mask must have the same shape as gt, got {tuple(m.shape)}")
        valid &= _as_depth_batch(m, "mask").to(p_all.device).bool()
    if min_depth is not None:
        valid &= g_all >= float(min_depth)
    if max_depth is not None:
        valid &= g_all < float(max_depth)

    # Pixels where a depth difference is defined at all (for the bumpiness filter).
    measurable = torch.isfinite(g_all) & (g_all > 0) & torch.isfinite(p_all)

    sums = dict.fromkeys(DEPTH_KEYS, 0.0)
    n_images = 0
    for b in range(p_all.shape[0]):
        v = valid[b]
        n = int(v.sum())
        if n == 0:
            continue
        n_images += 1
        p_img = p_all[b].clamp(min=EPS_DEPTH_M)  # NaN stays NaN; it is never valid
        g_img = g_all[b]
        if median_scaling:
            p_img = p_img * (_median(g_img[v]) / _median(p_img[v]))
        p, g = p_img[v], g_img[v]

        err = p - g
        sq = err * err
        d = torch.log(p) - torch.log(g)
        ratio = torch.maximum(p / g, g / p)
        sums["abs_rel"] += float((err.abs() / g).mean())
        sums["sq_rel"] += float((sq / g).mean())
        sums["mse"] += float(sq.mean())
        sums["rmse"] += math.sqrt(float(sq.mean()))
        sums["rmse_log"] += math.sqrt(float((d * d).mean()))
        sums["log10"] += float((torch.log10(p) - torch.log10(g)).abs().mean())
        sums["mae"] += float(err.abs().mean())
        for k in (1, 2, 3):
            sums[f"delta{k}"] += float((ratio < 1.25 ** k).sum()) / n
        # mean(d²) − mean(d)² written as the (population) variance of d: no cancellation.
        sums["sc_inv"] += math.sqrt(float(((d - d.mean()) ** 2).mean()))

        diff = torch.where(measurable[b], p_img - g_img, torch.zeros_like(g_img))
        sums["bumpiness"] += 100.0 * _banded_bumpiness_sum(diff, v) / n

    if n_images == 0:
        raise ValueError("depth_metrics: no valid pixels in any image (need gt > 0 and "
                         "finite, pred finite, mask true, and gt within "
                         f"[min_depth={min_depth}, max_depth={max_depth}))")
    out: dict[str, float] = {k: s / n_images for k, s in sums.items()}
    out["n_images"] = n_images
    return out


def _as_image_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim == 3:
        return x.unsqueeze(0)
    if x.ndim == 4:
        return x
    raise ValueError(f"{name} must have shape [C,H,W] or [B,C,H,W], got {tuple(x.shape)}")


def aif_metrics(pred, gt, mask=None, data_range: float = 1.0) -> dict[str, float]:
    """PSNR, SSIM and MAE of all-in-focus images, per image then averaged.

    Args:
        pred, gt: images [C,H,W] or [B,C,H,W] with values in ``[0, data_range]``
            (torch or numpy), same shape.
        mask: optional boolean mask over pixels: same shape as the images, or with the
            channel axis of size 1 or absent ([H,W] / [B,H,W]); it applies to all channels.
        data_range: peak value of the intensity range (1.0 for images in [0, 1]).

    Per image (over the masked pixels of all channels, or the whole image):

    * ``psnr`` = 10·log10(data_range² / MSE) in dB (``inf`` when MSE = 0);
    * ``ssim`` = mean of the SSIM map of ``kornia.metrics.ssim`` (Gaussian window 11,
      σ = 1.5, ``max_val=data_range``, same-size output with reflect padding), averaged
      over the mask; images under 6 px on a side use the largest window
      ``2·min(H, W) − 1`` that kornia's reflect padding allows;
    * ``mae``  = mean |pred − gt|.

    Images whose mask is empty are skipped; if all are, ``ValueError`` is raised.
    Returns plain Python floats under the keys ``psnr``, ``ssim``, ``mae``.
    """
    from kornia.metrics import ssim as kornia_ssim

    p = _to_tensor(pred, "pred")
    g = _to_tensor(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {tuple(p.shape)} "
                         f"and {tuple(g.shape)}")
    nd = p.ndim
    p = _as_image_batch(p, "pred").to(torch.float64)
    g = _as_image_batch(g, "gt").to(device=p.device, dtype=torch.float64)
    if mask is None:
        m = torch.ones_like(p, dtype=torch.bool)
    else:
        m = _to_tensor(mask, "mask").to(p.device).bool()
        if m.ndim == nd - 1:  # no channel axis
            m = m.unsqueeze(-3)
        if m.ndim == 3:
            m = m.unsqueeze(0)
        try:
            m = m.expand_as(p)
        except RuntimeError as e:
            raise ValueError(f"mask of shape {tuple(_to_tensor(mask, 'mask').shape)} does not "
                             f"fit images of shape {tuple(p.shape)}") from e

    # kornia reflect-pads by window // 2, which needs window // 2 < H, W: on images
    # smaller than 11 px the window shrinks to the largest odd size that fits.
    window = min(11, 2 * min(p.shape[-2:]) - 1)
    ssim_map = kornia_ssim(p, g, window, max_val=float(data_range))
    err = p - g
    sums = {"psnr": 0.0, "ssim": 0.0, "mae": 0.0}
    n_images = 0
    for b in range(p.shape[0]):
        mb = m[b]
        if not bool(mb.any()):
            continue
        n_images += 1
        mse = float((err[b][mb] ** 2).mean())
        sums["psnr"] += math.inf if mse == 0.0 else 10.0 * math.log10(data_range ** 2 / mse)
        sums["ssim"] += float(ssim_map[b][mb].mean())
        sums["mae"] += float(err[b][mb].abs().mean())
    if n_images == 0:
        raise ValueError("aif_metrics: the mask selects no pixel in any image")
    return {k: s / n_images for k, s in sums.items()}


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, torch.Tensor):
        v = v.item()
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if v == 0.0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:.4f}"
    return f"{v:.3e}"


def format_table(rows: Mapping[str, Mapping[str, float]],
                 keys: Sequence[str] | None = None) -> str:
    """Markdown table: one row per method (the keys of ``rows``), one column per metric.

    ``keys`` selects and orders the columns; by default, every metric key in order of
    first appearance. Floats are printed with 4 decimals (scientific notation outside
    [1e-3, 1e5)), ints as ints; a metric a method lacks is shown as ``–``.
    """
    if keys is None:
        keys = []
        for metrics in rows.values():
            for k in metrics:
                if k not in keys:
                    keys.append(k)
    keys = list(keys)
    lines = ["| method | " + " | ".join(keys) + " |" if keys else "| method |",
             "|---|" + "---:|" * len(keys)]
    for name, metrics in rows.items():
        cells = [_fmt(metrics.get(k)) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |" if cells else f"| {name} |")
    return "\n".join(lines)
