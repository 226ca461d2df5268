"""Depth from focus (DFF): per-pixel peak of a focus measure over the frames.

Pipeline (:func:`depth_from_focus`):

1. focus volume: a focus measure (:mod:`.focus_measures`) of every frame, [B,F,H,W];
2. frames are sorted internally by focus, in **inverse depth** ρ_k = 1/d_k ascending (far → near);
   the camera's frame order does not matter;
3. per-pixel argmax k*, then a sub-frame peak from the 3 samples around k*: a parabola
   (``interp="parabolic"``, the default) or a Gaussian (parabola through log values, ``"gaussian"``) fitted
   at their true, possibly uneven, inverse-depth positions ρ_{k*-1}, ρ_{k*}, ρ_{k*+1} (blur is
   ∝ |1/d − 1/d_k|, so the focus curve is a function of inverse depth). The vertex is clamped to
   [ρ_{k*-1}, ρ_{k*+1}]; at the first/last frame the peak stays at ρ_{k*}. ``"none"`` = plain argmax;
4. depth = 1/ρ (metres);
5. confidence in [0,1): (peak − mean over frames) / (peak + τ), τ = 0.1 × the image's median peak
   (so flat, textureless pixels get low confidence);
6. optional edge-aware refinement (``refine="guided"``): a confidence-weighted guided filter
   (He et al.) of the normalised inverse depth with the fused AIF (grey) as guide,
   q = GF(c·ρ) / GF(c).

:func:`frame_position_to_inverse_depth` maps a fractional frame position in the sorted order to
inverse depth by linear interpolation (the convention used by index-based methods).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..optics.camera import FocalStackCamera
from .focus_measures import DEFAULT_MEASURE, DEFAULT_WINDOW, focus_measure, local_mean, to_grey
from .fusion import fuse

__all__ = ["DFFResult", "depth_from_focus", "focus_order", "frame_position_to_inverse_depth",
           "subframe_peak", "peak_vertex", "focus_confidence", "guided_filter", "guided_upsample",
           "refine_inverse_depth", "INTERPOLATIONS"]

INTERPOLATIONS = ("gaussian", "parabolic", "none")


@dataclass
class DFFResult:
    """Outputs of :func:`depth_from_focus` (batch dimension kept).

    depth_m: [B,1,H,W] metres; inv_depth: [B,1,H,W] 1/m; confidence: [B,1,H,W] in [0,1);
    index: [B,1,H,W] argmax frame in the *camera's* frame order; aif: [B,3,H,W];
    focus: [B,F,H,W] focus volume in the camera's frame order.
    """

    depth_m: torch.Tensor
    inv_depth: torch.Tensor
    confidence: torch.Tensor
    index: torch.Tensor
    aif: torch.Tensor
    focus: torch.Tensor


def focus_order(camera: FocalStackCamera) -> list[int]:
    """Frame indices sorted by inverse focus distance ascending (far → near); stable."""
    fd = camera.focus_distances_m
    return sorted(range(len(fd)), key=lambda i: (1.0 / fd[i], i))


def frame_position_to_inverse_depth(t: torch.Tensor, focus_distances_m) -> torch.Tensor:
    """Fractional frame position t ∈ [0, F−1] in the focus-sorted order (far → near) → inverse
    depth 1/m, linearly interpolated between the frames' inverse focus distances."""
    rho = torch.tensor(sorted(1.0 / float(d) for d in focus_distances_m), dtype=t.dtype, device=t.device)
    if rho.numel() == 1:
        return torch.full_like(t, float(rho[0]))
    t = t.clamp(0, rho.numel() - 1)
    i0 = t.floor().long().clamp(max=rho.numel() - 2)
    w = t - i0.to(t.dtype)
    return rho[i0] * (1 - w) + rho[i0 + 1] * w


def subframe_peak(focus_sorted: torch.Tensor, rho_sorted: torch.Tensor, interp: str = "gaussian"):
    """Peak inverse depth per pixel. focus_sorted [B,F,H,W] (frames ascending in ρ), rho_sorted [F].

    Returns (rho_hat [B,H,W], kmax [B,H,W] index in the sorted order)."""
    if interp not in INTERPOLATIONS:
        raise ValueError(f"interp must be one of {INTERPOLATIONS}, got {interp!r}")
    nf = focus_sorted.shape[1]
    kmax = focus_sorted.argmax(1)
    rho = rho_sorted.to(focus_sorted)
    x1 = rho[kmax]
    if interp == "none" or nf < 3:
        return x1, kmax
    km = (kmax - 1).clamp(min=0)
    kp = (kmax + 1).clamp(max=nf - 1)
    y = torch.log(focus_sorted.clamp_min(0) + 1e-12) if interp == "gaussian" else focus_sorted
    y0 = y.gather(1, km.unsqueeze(1))[:, 0]
    y1 = y.gather(1, kmax.unsqueeze(1))[:, 0]
    y2 = y.gather(1, kp.unsqueeze(1))[:, 0]
    return peak_vertex(y0, y1, y2, kmax, rho, nf), kmax


def peak_vertex(y0: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor, kmax: torch.Tensor, rho: torch.Tensor,
                nf: int) -> torch.Tensor:
    """The sub-frame peak from the 3 focus samples around the argmax (module doc, step 3): y0, y1, y2
    the (log, for "gaussian") focus at sorted frames kmax−1, kmax, kmax+1 (clamped to the stack), any
    shape; rho [F] the sorted inverse focus distances. Returns the vertex inverse depth, kmax's ρ where
    the fit does not apply (first/last frame, not a maximum)."""
    km = (kmax - 1).clamp(min=0)
    kp = (kmax + 1).clamp(max=nf - 1)
    x0, x1, x2 = rho[km], rho[kmax], rho[kp]
    interior = (kmax > 0) & (kmax < nf - 1)
    d01, d02, d12 = x0 - x1, x0 - x2, x1 - x2
    denom = torch.where(interior, d01 * d02 * d12, torch.ones_like(x1))
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / denom
    ok = interior & (a < 0) & torch.isfinite(a) & torch.isfinite(b)
    vertex = -b / (2 * torch.where(ok, a, -torch.ones_like(a)))
    lo, hi = torch.minimum(x0, x2), torch.maximum(x0, x2)
    vertex = torch.minimum(torch.maximum(vertex, lo), hi)
    return torch.where(ok, vertex, x1)


def focus_confidence(focus: torch.Tensor) -> torch.Tensor:
    """[B,F,H,W] → [B,1,H,W]: (peak − mean) / (peak + τ), τ = 0.1 × the per-image median peak."""
    peak = focus.amax(1, keepdim=True)
    mean = focus.mean(1, keepdim=True)
    tau = 0.1 * peak.flatten(1).median(1).values.view(-1, 1, 1, 1) + 1e-12
    return ((peak - mean) / (peak + tau)).clamp(0, 1)


def _guided_coefficients(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float, box_mean):
    """The guided filter's per-window linear model src ≈ a·guide + b (He et al. 2010) and the box mean
    that fitted it: (a, b, mean). ``guide`` grey [B,1,H,W], ``src`` [B,C,H,W]; ``box_mean(t, k)`` the
    k×k box mean with replicated borders (None: :func:`local_mean`)."""
    k = 2 * int(radius) + 1
    mean = (lambda t: local_mean(t, k, "box")) if box_mean is None else (lambda t: box_mean(t, k))  # noqa: E731
    mi, mp = mean(guide), mean(src)
    cov = mean(guide * src) - mi * mp
    var = mean(guide * guide) - mi * mi
    a = cov / (var + eps)
    return a, mp - a * mi, mean


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float = 1e-3,
                  box_mean=None) -> torch.Tensor:
    """Grey guided filter (He et al. 2010): guide [B,1,H,W] (or RGB → grey), src [B,C,H,W].
    ``box_mean(t, k)``: the k×k box mean with replicated borders (default :func:`local_mean`; the
    streaming path passes OpenCV's, ~10× faster on photo-sized images)."""
    guide = to_grey(guide)
    a, b, mean = _guided_coefficients(guide, src, radius, eps, box_mean)
    return mean(a) * guide + mean(b)


def guided_upsample(src: torch.Tensor, guide_low: torch.Tensor, guide: torch.Tensor, radius: int = 2,
                    eps: float = 1e-4, box_mean=None) -> torch.Tensor:
    """Joint upsampling by the fast guided filter (He & Sun 2015): the guided filter's linear
    coefficients a, b of ``src`` [B,C,h,w] with ``guide_low`` [B,1,h,w] (grey, or RGB → grey; the
    full-resolution guide downscaled to h×w) are averaged, upsampled bilinearly and applied to the
    full-resolution ``guide`` [B,1,H,W] → [B,C,H,W]: edges come from the guide, values from ``src``.
    ``radius`` (px at h×w) and ``eps`` as :func:`guided_filter` for a ``src`` in [0,1] (normalise first)."""
    guide = to_grey(guide)
    a, b, mean = _guided_coefficients(to_grey(guide_low), src, radius, eps, box_mean)
    size = tuple(guide.shape[-2:])
    up = lambda t: torch.nn.functional.interpolate(mean(t), size=size, mode="bilinear", align_corners=False)  # noqa: E731
    out = up(a)
    out *= guide
    out += up(b)
    return out


def refine_inverse_depth(inv_depth: torch.Tensor, confidence: torch.Tensor, guide: torch.Tensor,
                         radius: int | None = None, eps: float = 1e-3, box_mean=None) -> torch.Tensor:
    """Confidence-weighted guided filter of inverse depth [B,1,H,W] with an RGB/grey guide
    (``box_mean``: see :func:`guided_filter`)."""
    if radius is None:
        radius = max(2, round(min(inv_depth.shape[-2:]) / 32))
    lo = inv_depth.amin((2, 3), keepdim=True)
    span = (inv_depth.amax((2, 3), keepdim=True) - lo).clamp_min(1e-12)
    n = (inv_depth - lo) / span
    c = confidence.clamp_min(1e-4)
    num = guided_filter(guide, c * n, radius, eps, box_mean)
    den = guided_filter(guide, c, radius, eps, box_mean)
    out = num / den.clamp_min(1e-4)
    out = torch.where(den > 1e-4, out, n).clamp(0, 1)
    return lo + out * span


def depth_from_focus(frames: torch.Tensor, camera: FocalStackCamera, measure: str = DEFAULT_MEASURE,
                     window: int = DEFAULT_WINDOW, aggregate: str = "gaussian", interp: str = "parabolic",
                     refine: str | None = "guided", refine_radius: int | None = None, refine_eps: float = 1e-3,
                     fusion: str = "pyramid") -> DFFResult:
    """Depth from focus of a stack [F,3,H,W] or [B,F,3,H,W] taken with ``camera``.

    Args:
        measure, window, aggregate: the focus measure (see :mod:`.focus_measures`).
        interp: "parabolic" (default), "gaussian" or "none" sub-frame peak (see module doc).
        refine: "guided" (confidence-weighted guided filter on the AIF) or None.
        fusion: AIF fusion, "pyramid" or "soft".
    """
    x = frames.unsqueeze(0) if frames.dim() == 4 else frames
    if x.dim() != 5:
        raise ValueError(f"depth_from_focus: frames must be [F,C,H,W] or [B,F,C,H,W], got {tuple(frames.shape)}")
    nf = x.shape[1]
    if nf != camera.num_frames:
        raise ValueError(f"depth_from_focus: {nf} frames but the camera has {camera.num_frames} focus distances")
    x = x.float()
    fv = focus_measure(x, measure, window, aggregate)[:, :, 0]                          # [B,F,H,W]
    order = focus_order(camera)
    rho_sorted = torch.tensor([1.0 / camera.focus_distances_m[i] for i in order], dtype=torch.float64)
    fs = fv[:, order].double()
    rho, kmax = subframe_peak(fs, rho_sorted, interp)
    rho = rho.float().unsqueeze(1)
    conf = focus_confidence(fv)
    index = torch.tensor(order, device=kmax.device)[kmax].unsqueeze(1)
    aif = fuse(x, fusion, focus=fv.unsqueeze(2))   # the fusion's weights from the same focus volume
    if refine == "guided" and nf > 1:
        rho = refine_inverse_depth(rho, conf, aif, refine_radius, refine_eps)
    elif refine not in (None, "none", "guided"):
        raise ValueError(f"refine must be 'guided' or None, got {refine!r}")
    return DFFResult(depth_m=1.0 / rho.clamp_min(1e-6), inv_depth=rho, confidence=conf, index=index,
                     aif=aif, focus=fv)
