"""Depth from defocus by relative blur: a camera-aware cost volume over inverse-depth hypotheses.

For a hypothesis ``d_j`` the thin lens predicts the Gaussian σ (pixels) of every frame,
``σ_kj = camera.sigma_px(d_j)``. Under the Gaussian PSF model two frames of the same scene
point obey ``I_k = G(√(σ_kj² − σ_rj²)) ∗ I_r`` whenever frame r is sharper (Gaussians compose
by adding variances). So per hypothesis the sharpest frame ``r_j = argmin_k σ_kj`` is re-blurred
into every other frame and the mismatch, averaged over a local window, is the cost::

    cost_j(x) = Σ_k box_w(|G(√(σ_kj² − σ_rj²)) ∗ I_r − I_k|)(x) / (F · (texture(x) + ε))

with ``texture`` the local mean absolute gradient of the stack (so the cost is contrast-invariant,
and flat, textureless pixels show a flat cost curve instead of a confident wrong minimum).
The true depth minimises the cost up to noise, for any camera: the camera enters only through
σ_kj — focal length, f-number(s), pixel pitch, per-frame focus distances, PSF scale. This is
what makes the camera-aware DAIF-Net (:mod:`focalstack.models.daifnet`) camera-general: it reads
this volume, not the camera's raw numbers.

Hypotheses are uniform in inverse depth over the depth range (blur is linear in 1/d). With two
frames at one focus distance (two apertures) the cost cannot tell near from far of the focus
plane: the volume then has two minima, and so does any method.

:func:`depth_from_defocus` is the training-free method (``predict --method dfd``): the normalised
cost, aggregated over image-guided neighbourhoods at four radii (confidence-weighted cost-volume
filtering: flat regions take the evidence of the textured pixels of their surface), the versions
weighted per pixel by the local confidence (:func:`gated_weights`: the pixel's own evidence where
it has some, its surface's where it has none), per-pixel argmin with a parabolic sub-hypothesis
fit (the same fit as DFF's sub-frame peak). Grey frames; shapes and units in each docstring.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

import torch
import torch.nn.functional as F

from ..optics.camera import CameraBatch, FocalStackCamera
from ..render.light import to_linear
from .dff import guided_filter
from . import opencv_planes
from .focus_measures import local_mean

__all__ = ["DefocusCostVolume", "inverse_depth_hypotheses", "hypothesis_sigmas", "gaussian_blur_per_plane",
           "blur_radius_px", "relative_blur_cost", "reuse_cost_volumes", "normalised_cost", "aggregate_cost",
           "aggregation_radii", "aggregated_costs", "gated_weights", "prior_cost", "AGGREGATION_SCALES",
           "decisiveness", "evidence_depth_span", "widened_depth_range", "evidence_depth_range",
           "depth_from_defocus", "has_defocus_evidence", "reads_evidence", "DEFAULT_HYPOTHESES",
           "MAX_BLUR_RADIUS_PX", "MIN_EVIDENCE",
           "EVIDENCE_RANGE_QUANTILE", "EVIDENCE_RANGE_MIN_SHARE", "EVIDENCE_RANGE_MAX_SIDE_PX", "MIN_RANGE_CHANGE"]

DEFAULT_HYPOTHESES = 32
# Extra blur beyond this radius (σ > 5 px) is truncated: wider blur carries little depth signal at the
# working resolution, and the cost of the separable filter grows with the radius.
MAX_BLUR_RADIUS_PX = 15
_CHUNK_BYTES = 256 * 2 ** 20   # re-blurred planes per chunk of hypotheses in relative_blur_cost


@dataclass
class DefocusCostVolume:
    """cost [B,J,H,W] (≥ 0, lower = hypothesis fits better); inv_depth [B,J] 1/m ascending
    (far → near); texture [B,1,H,W] local mean |∇I| of the stack (grey levels per pixel)."""

    cost: torch.Tensor
    inv_depth: torch.Tensor
    texture: torch.Tensor


def inverse_depth_hypotheses(depth_range_m: torch.Tensor, n: int = DEFAULT_HYPOTHESES) -> torch.Tensor:
    """[B,2] (near, far) metres → [B,n] inverse depths (1/m), uniform from 1/far to 1/near."""
    if n < 2:
        raise ValueError(f"need at least 2 depth hypotheses, got {n}")
    t = torch.linspace(0.0, 1.0, n, dtype=depth_range_m.dtype, device=depth_range_m.device).view(1, n)
    inv_near, inv_far = 1.0 / depth_range_m[:, 0:1], 1.0 / depth_range_m[:, 1:2]
    return inv_far + t * (inv_near - inv_far)


def hypothesis_sigmas(camera: CameraBatch, inv_depth: torch.Tensor) -> torch.Tensor:
    """σ (px) of every frame at every hypothesis: camera [B] with F frames, inv_depth [B,J] → [B,F,J]."""
    b, j = inv_depth.shape
    s = camera.sigma_px((1.0 / inv_depth).view(b, 1, 1, j))     # [B,F,1,1,J]
    return s.view(b, -1, j)


def _gaussian_taps(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Normalised 1-D Gaussian taps [N, 2R+1] for σ [N] px (σ ≈ 0 → the identity tap)."""
    x = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device).view(1, -1)
    s = sigma.clamp_min(1e-3).view(-1, 1)
    w = torch.exp(-0.5 * (x / s) ** 2)
    return w / w.sum(dim=1, keepdim=True)


def blur_radius_px(sigma_max_px: float, max_radius: int = MAX_BLUR_RADIUS_PX) -> int:
    """The window radius (px) :func:`gaussian_blur_per_plane` uses for the largest σ: ⌈3σ⌉, at most
    ``max_radius``."""
    return int(min(max_radius, math.ceil(3.0 * sigma_max_px)))


def gaussian_blur_per_plane(x: torch.Tensor, sigma_px: torch.Tensor, max_radius: int = MAX_BLUR_RADIUS_PX,
                            radius: int | None = None) -> torch.Tensor:
    """Blur every plane of x [N,P,H,W] with its own Gaussian σ [N,P] (px), reflect borders, one
    separable depthwise convolution; σ beyond ``max_radius``/3 is truncated to that window.
    ``radius``: the window radius to use (default :func:`blur_radius_px` of the largest σ here; a
    caller blurring in chunks passes the whole volume's, so every chunk has the same window)."""
    n, p, h, w = x.shape
    smax = float(sigma_px.max()) if sigma_px.numel() else 0.0
    r = blur_radius_px(smax, max_radius) if radius is None else int(radius)
    r = min(r, h - 1, w - 1)
    if r < 1:
        return x
    taps = _gaussian_taps(sigma_px.reshape(-1), r)                  # [N·P, 2r+1]
    if opencv_planes.serves(x, sigma_px):
        return opencv_planes.separable_blur(x, taps, r)
    y = F.pad(x.reshape(1, n * p, h, w), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, taps.view(n * p, 1, 1, -1), groups=n * p)
    y = F.conv2d(y, taps.view(n * p, 1, -1, 1), groups=n * p)
    return y.view(n, p, h, w)


def has_defocus_evidence(camera: FocalStackCamera) -> bool:
    """True when at least two frames differ in focus distance or f-number (identical frames carry no
    relative blur: the cost volume is then flat everywhere)."""
    return len(set(zip(camera.focus_distances_m, camera.frame_f_numbers()))) >= 2


def reads_evidence(camera: FocalStackCamera) -> bool:
    """Whether a stack through ``camera`` has defocus evidence to read: a known lens and focus
    distances, and frames that differ in blur (:func:`has_defocus_evidence`). Without it a stack keeps
    its stated range (:func:`evidence_depth_span`) and its size (``inference.scale``)."""
    return bool(camera.lens_known and camera.focus_known and has_defocus_evidence(camera))


TEXTURE_EPS = 2e-3
"""Added to the local texture (grey levels / px) that divides the relative-blur mismatch: keeps the
cost finite on flat pixels."""
MIN_EVIDENCE = 1.0 / 255.0
"""Default ``min_evidence`` of :func:`decisiveness` (grey levels): one 8-bit code value."""


_REUSED: list | None = None   # (key, frames, volume) while reuse_cost_volumes() is active


@contextmanager
def reuse_cost_volumes():
    """Inside this block :func:`relative_blur_cost` computes each volume once: a second call with the
    same frames tensor (same storage, shape, strides and version: not modified in place), the same
    camera values, range and settings returns the first call's volume. ``predict`` estimates the
    depth range from the volume over the stated range (:func:`evidence_depth_range`), and when that
    range stays the stated one the network reads the very same volume. Exact: the same inputs, the
    same numbers; the cached frames are held, so their storage cannot be reused for other data."""
    global _REUSED
    outer = _REUSED
    _REUSED = [] if outer is None else outer
    try:
        yield
    finally:
        _REUSED = outer


def _volume_key(frames: torch.Tensor, camera: CameraBatch, depth_range_m: torch.Tensor, *settings) -> tuple:
    cam = tuple(tuple(getattr(camera, k).detach().float().cpu().flatten().tolist()) for k in CameraBatch.KEYS)
    return (frames.data_ptr(), frames.device, frames.dtype, tuple(frames.shape), tuple(frames.stride()),
            frames._version, cam, tuple(depth_range_m.detach().float().cpu().flatten().tolist()), settings)


@torch.no_grad()
def relative_blur_cost(frames: torch.Tensor, camera: CameraBatch, depth_range_m: torch.Tensor,
                       num_hypotheses: int = DEFAULT_HYPOTHESES, window: int = 7,
                       max_radius: int = MAX_BLUR_RADIUS_PX, eps: float = TEXTURE_EPS) -> DefocusCostVolume:
    """The relative-blur cost volume (module docstring).

    Args:
        frames: [B,F,3,H,W] (or [B,F,1,H,W]) in [0,1], F ≥ 2.
        camera: the batch's cameras (F frames each).
        depth_range_m: [B,2] (near, far) metres; hypotheses are uniform in 1/d inside it.
        num_hypotheses: J.
        window: side of the box window (px) that aggregates the per-pixel mismatch.
        eps: added to the texture (grey levels / px) before normalising.

    Returns: :class:`DefocusCostVolume` (cost [B,J,H,W] float32).
    """
    if _REUSED is not None:
        key = _volume_key(frames, camera, depth_range_m, num_hypotheses, window, max_radius, eps)
        for k, _, vol in _REUSED:
            if k == key:
                return vol
        vol = _relative_blur_cost(frames, camera, depth_range_m, num_hypotheses, window, max_radius, eps)
        _REUSED.append((key, frames, vol))
        return vol
    return _relative_blur_cost(frames, camera, depth_range_m, num_hypotheses, window, max_radius, eps)


def _relative_blur_cost(frames: torch.Tensor, camera: CameraBatch, depth_range_m: torch.Tensor,
                        num_hypotheses: int = DEFAULT_HYPOTHESES, window: int = 7,
                        max_radius: int = MAX_BLUR_RADIUS_PX, eps: float = TEXTURE_EPS) -> DefocusCostVolume:
    """The computation of :func:`relative_blur_cost` (no reuse)."""
    if frames.dim() != 5:
        raise ValueError(f"relative_blur_cost: frames must be [B,F,C,H,W], got {tuple(frames.shape)}")
    b, f, _, h, w = frames.shape
    if f < 2:
        raise ValueError("relative_blur_cost: defocus needs at least 2 frames")
    grey = to_linear(frames.float()).mean(dim=2)          # [B,F,H,W]; re-blurring models optics: radiance
    cam = camera.to(frames.device, torch.float32)
    inv = inverse_depth_hypotheses(depth_range_m.to(frames.device, torch.float32), num_hypotheses)  # [B,J]
    sig = hypothesis_sigmas(cam, inv)                                          # [B,F,J]
    ref = sig.argmin(dim=1)                                                    # [B,J]
    sig_ref = sig.gather(1, ref.unsqueeze(1))                                  # [B,1,J]
    extra = (sig.pow(2) - sig_ref.pow(2)).clamp_min(0).sqrt()                  # [B,F,J]
    j = num_hypotheses
    extra = extra.transpose(1, 2)                                              # [B,J,F]
    r = blur_radius_px(float(extra.max()), max_radius)
    if opencv_planes.serves(grey, extra) and 1 <= r < min(h, w):
        err = _relative_blur_error_opencv(grey, ref, extra, r)
    else:
        err = _relative_blur_error(grey, ref, extra, r, max_radius)
    gx = (grey[..., :, 1:] - grey[..., :, :-1]).abs().mean(dim=1, keepdim=True)
    gy = (grey[..., 1:, :] - grey[..., :-1, :]).abs().mean(dim=1, keepdim=True)
    tex = F.pad(gx, (0, 1, 0, 0), mode="replicate") + F.pad(gy, (0, 0, 0, 1), mode="replicate")
    tex = local_mean(tex, window, "box")
    cost = local_mean(err, window, "box") / (tex + eps)
    return DefocusCostVolume(cost=cost, inv_depth=inv, texture=tex)


def _relative_blur_error(grey: torch.Tensor, ref: torch.Tensor, extra: torch.Tensor, r: int,
                         max_radius: int) -> torch.Tensor:
    """Σ-mean over frames of |G(extra_jk) ∗ I_ref(j) − I_k|: grey [B,F,H,W], ref [B,J] (the sharpest
    frame per hypothesis), extra [B,J,F] σ px, window radius r → [B,J,H,W]. Torch ops (any device)."""
    b, f, h, w = grey.shape
    j = ref.shape[1]
    err = grey.new_empty(b, j, h, w)
    # hypotheses in chunks: the re-blurred frames of all of them at once are J·F planes (GBs for
    # many frames); each chunk is the same computation on its hypotheses, with the same window
    jc = max(1, int(_CHUNK_BYTES // max(1, b * f * h * w * 4)))
    for j0 in range(0, j, jc):
        jj = min(j, j0 + jc) - j0
        g_ref = grey.gather(1, ref[:, j0:j0 + jj].reshape(b, jj, 1, 1).expand(b, jj, h, w))   # [B,jj,H,W]
        pred = gaussian_blur_per_plane(g_ref.unsqueeze(2).expand(b, jj, f, h, w).reshape(b, jj * f, h, w),
                                       extra[:, j0:j0 + jj].reshape(b, jj * f), max_radius, radius=r)
        err[:, j0:j0 + jj] = (pred.view(b, jj, f, h, w) - grey.unsqueeze(1)).abs().mean(dim=2)
    return err


def _relative_blur_error_opencv(grey: torch.Tensor, ref: torch.Tensor, extra: torch.Tensor, r: int) -> torch.Tensor:
    """:func:`_relative_blur_error` on CPU through OpenCV, one plane at a time: no J·F re-blurred planes
    in memory, and the reference frame's own term (exactly 0) is skipped. Same values to float32
    rounding. (Spreading the planes over two threads gained < 15 % on an idle 2-core machine and lost
    several-fold when another job held a core: OpenCV's filters already use its own threads.)"""
    import cv2
    b, f, h, w = grey.shape
    j = ref.shape[1]
    g = grey.detach().float().contiguous().numpy()
    taps = _gaussian_taps(extra.detach().float().reshape(-1), r).numpy().reshape(b, j, f, -1)
    refs = ref.cpu().numpy()
    out = torch.zeros(b, j, h, w, dtype=torch.float32)
    acc = out.numpy()

    pred = np.empty((h, w), np.float32)
    for bi in range(b):
        for ji in range(j):
            src = g[bi, refs[bi, ji]]
            for k in range(f):
                if k == refs[bi, ji]:
                    continue
                t = taps[bi, ji, k]
                if t[r] >= 1.0 - 1e-7:     # no extra blur: the reference frame itself
                    cv2.absdiff(src, g[bi, k], dst=pred)
                else:
                    cv2.sepFilter2D(src, -1, t, t, dst=pred, borderType=cv2.BORDER_REFLECT_101)
                    cv2.absdiff(pred, g[bi, k], dst=pred)
                cv2.add(acc[bi, ji], pred, dst=acc[bi, ji])
    out *= 1.0 / f
    return out


def normalised_cost(vol: DefocusCostVolume, out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ĉ = cost / mean_j cost [B,J,H,W], confidence [B,1,H,W] ∈ [0,1]): the confidence is how far the
    best hypothesis stands below the mean, (mean − min)/mean — ~0 on flat, textureless pixels.
    ``out``: a [B,J,H,W] tensor that receives ĉ."""
    mean = vol.cost.mean(dim=1, keepdim=True)
    conf = ((mean - vol.cost.amin(dim=1, keepdim=True)) / (mean + 1e-6)).clamp(0, 1)
    return torch.div(vol.cost, mean + 1e-6, out=out), conf


def aggregate_cost(cost: torch.Tensor, confidence: torch.Tensor, guide: torch.Tensor, radius: int,
                   eps: float = 1e-2, out: torch.Tensor | None = None) -> torch.Tensor:
    """Confidence-weighted cost-volume filtering (Hosni et al. 2013, with He et al.'s guided filter):
    every hypothesis slice of cost [B,J,H,W] is filtered with the grey guide [B,1,H,W] (edges of the
    image stop the filter), weighted by the confidence [B,1,H,W], so textured pixels lend their
    evidence to flat neighbours on the same surface: GF(c·ĉ_j) / GF(c). ``out`` receives it."""
    num = guided_filter(guide, confidence * cost, radius, eps)
    den = guided_filter(guide, confidence, radius, eps)
    return torch.div(num, den.clamp_min(1e-4), out=out)


AGGREGATION_SCALES = (1, 3, 6, 12)
"""Radii of the aggregated cost versions, in units of the base radius ``r = min(H,W)/32`` (≥ 2 px):
a nearby surface (r, 3r) and most of a wall or a floor (6r, 12r ≈ 0.4·min(H,W))."""
CONFIDENCE_GATE_POWER = 2.0
"""u = (1 − c)^p: how fast the wide versions take over as the local confidence c falls (:func:`gated_weights`)."""
_MIN_COARSE_PX = 16   # a wide version runs at 1/f resolution while the short side stays ≥ this


def aggregation_radii(h: int, w: int, scales=AGGREGATION_SCALES) -> tuple[int, ...]:
    """The guided-filter radii (px) of :func:`aggregated_costs`: ``r·scales`` with r = min(H,W)/32 (≥ 2)."""
    r = max(2, round(min(h, w) / 32))
    return tuple(int(k) * r for k in scales)


def _coarse_factor(radius_px: int, h: int, w: int) -> int:
    """Resolution factor for filtering at ``radius_px``: the largest power of two that leaves the
    radius ≥ 9 px in the coarse image and its short side ≥ ``_MIN_COARSE_PX``; the wide filters are
    smooth, so they lose little at low resolution and cost 1/f² of the work."""
    f = 1
    while radius_px // (2 * f) >= 9 and min(h, w) // (2 * f) >= _MIN_COARSE_PX:
        f *= 2
    return f


def aggregated_costs(vol: DefocusCostVolume, frames: torch.Tensor,
                     scales=AGGREGATION_SCALES) -> tuple[torch.Tensor, torch.Tensor]:
    """(versions [B,1+S,J,H,W], confidence [B,1,H,W]): the normalised cost ĉ (raw), then ĉ aggregated
    by :func:`aggregate_cost` at each radius of :func:`aggregation_radii` (``scales``, S of them);
    frames [B,F,C,H,W] give the guide (their mean, grey). The radii after the first are filtered at
    a lower resolution (:func:`_coarse_factor`) and upsampled bilinearly. Every version is written
    straight into the one output volume (it is 1+S times the cost volume: no stacked copies)."""
    b, j, h, w = vol.cost.shape
    radii = aggregation_radii(h, w, scales)
    out = vol.cost.new_empty(b, 1 + len(radii), j, h, w)
    cn, conf = normalised_cost(vol, out=out[:, 0])
    guide = frames.float().mean(dim=(1, 2)).unsqueeze(1)
    pooled = {1: (cn, conf, guide)}
    for i, radius in enumerate(radii):
        f = 1 if i == 0 else _coarse_factor(radius, h, w)   # the nearest one keeps full-resolution edges
        if f == 1:
            aggregate_cost(cn, conf, guide, radius, out=out[:, i + 1])
            continue
        if f not in pooled:
            pooled[f] = tuple(F.avg_pool2d(t, f, ceil_mode=True) for t in pooled[1])
        a = aggregate_cost(*pooled[f], max(1, radius // f))
        _upsample_bilinear(a, out[:, i + 1])
    return out, conf


def _upsample_bilinear(x: torch.Tensor, out: torch.Tensor) -> None:
    """Bilinear upsampling (half-pixel centres, = ``F.interpolate(..., align_corners=False)``) of
    x [B,C,h,w] into out [B,C,H,W]; on CPU float32 through OpenCV, one plane at a time (~2× torch's)."""
    if opencv_planes.serves(x) and opencv_planes.serves(out):
        opencv_planes.resize_bilinear_into(x, out)
        return
    out.copy_(F.interpolate(x, size=tuple(out.shape[-2:]), mode="bilinear", align_corners=False))


def gated_weights(confidence: torch.Tensor, window: int = 7, power: float = CONFIDENCE_GATE_POWER) -> torch.Tensor:
    """Per-pixel weights [B,5,1,H,W] (summing to 1) of the five cost versions of
    :func:`aggregated_costs` (raw, r, 3r, 6r, 12r) for confidence [B,1,H,W]:
    ``((1−u)/3, (1−u)/3, 1/3, u/3, u/3)`` with ``u = (1 − c̄)^power``, c̄ the confidence's
    ``window``-px box mean. Where the pixel's own evidence is confident (textured) its depth comes
    from the local versions and depth edges stay sharp; where it is not (a wall, a floor) the
    evidence of the whole surface decides. A fixed mean of all five would over-smooth textured
    scenes; the local versions alone leave flat regions to noise (module docstring)."""
    c = local_mean(confidence.clamp(0, 1), window, "box")
    u = (1.0 - c).pow(power)
    third = torch.full_like(u, 1.0 / 3.0)
    return torch.stack([(1 - u) / 3, (1 - u) / 3, third, u / 3, u / 3], dim=1)


def prior_cost(versions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_v weights_v · versions_v: versions [B,V,J,H,W], weights [B,V,1,H,W] → [B,J,H,W]."""
    return (weights * versions).sum(dim=1)


def _parabolic_min(cost: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """Sub-hypothesis minimum: parabola through the 3 costs around the argmin (uniform spacing in
    1/d), vertex clamped to ±½ step; cost [B,J,H,W], inv [B,J] → inverse depth [B,1,H,W]."""
    b, j, h, w = cost.shape
    k = cost.argmin(dim=1, keepdim=True)                                       # [B,1,H,W]
    km, kp = (k - 1).clamp(0, j - 1), (k + 1).clamp(0, j - 1)
    c0, cm, cp = cost.gather(1, k), cost.gather(1, km), cost.gather(1, kp)
    den = cm - 2 * c0 + cp
    off = torch.where(den > 1e-12, 0.5 * (cm - cp) / den.clamp_min(1e-12), torch.zeros_like(den))
    off = torch.where((k == 0) | (k == j - 1), torch.zeros_like(off), off.clamp(-0.5, 0.5))
    step = (inv[:, 1:2] - inv[:, 0:1]).view(b, 1, 1, 1)
    return inv[:, 0].view(b, 1, 1, 1) + (k.to(cost.dtype) + off) * step


def decisiveness(vol: DefocusCostVolume, cost_at: torch.Tensor, min_evidence: float = MIN_EVIDENCE) -> torch.Tensor:
    """How decisively the defocus evidence singles out a depth, per pixel, ∈ [0,1]: *distinctness* ×
    *evidence*. ``cost_at`` [B,1,H,W] is the cost of that depth (e.g. a teacher's, or the volume's
    minimum); ``gain`` = mean_j c_j − cost_at, how far it stands below the mean over all hypotheses.

    * distinctness ``clamp(gain / mean_j c_j, 0, 1)``: ~0 on flat, textureless surfaces, where every
      depth re-renders the stack equally well;
    * evidence: the same margin in absolute grey levels (the cost is the window's mismatch over
      texture + :data:`TEXTURE_EPS`: that is undone), ramped up to ``min_evidence`` (default one 8-bit
      code value; 0 = no ramp). Distinctness is a ratio, so on a camera whose blur barely changes
      with depth (a phone lens, σ < 1 px) a textured pixel looks decisive while its margin is below
      what an 8-bit frame can even record.

    The one definition that the distillation teacher's trust (:func:`focalstack.train.teacher.label_weight`)
    and :func:`evidence_depth_range` read."""
    mean = vol.cost.mean(dim=1, keepdim=True)
    gain = mean - cost_at
    d = (gain / (mean + 1e-6)).clamp(0, 1)
    if min_evidence > 0:
        d = d * (gain * (vol.texture + TEXTURE_EPS) / min_evidence).clamp(0, 1)
    return d


EVIDENCE_RANGE_QUANTILE = 0.02
""":func:`evidence_depth_range` keeps the inverse depths between this quantile and 1 − it of the
decisive pixels (a few stray pixels must not decide the range)."""
EVIDENCE_RANGE_MIN_SHARE = 0.01
"""… and leaves the stated range as it is when the decisive weight sums to less than this share of the
pixels (a textureless or nearly blur-free stack: too little evidence to narrow anything)."""
EVIDENCE_RANGE_MAX_SIDE_PX = 1024
"""… computed on a copy whose long side is at most this (the cost volume is J·H·W floats; at photo
sizes the blur is many pixels, so a smaller copy keeps the evidence)."""


MIN_RANGE_CHANGE = 0.1
""":func:`widened_depth_range` narrows a stated range only when it removes at least this share of its
inverse-depth extent."""


def _range_slack() -> float:
    # the widest bracket the pretraining cameras state around their scene: a range narrowed to the
    # evidence × this is one the camera-general network was trained to read (optics.distribution, step 6)
    from ..optics.distribution import CAMERA_DISTRIBUTIONS
    return float(CAMERA_DISTRIBUTIONS["general"].range_slack[1])


def _weighted_quantiles(x: torch.Tensor, w: torch.Tensor, qs) -> list[float]:
    order = x.argsort()
    cw = w[order].cumsum(0)
    idx = torch.searchsorted(cw, torch.tensor([float(q) for q in qs], dtype=cw.dtype) * cw[-1])
    return x[order][idx.clamp(max=x.numel() - 1)].tolist()


@torch.no_grad()
def evidence_depth_span(frames: torch.Tensor, camera: FocalStackCamera, depth_range_m=None,
                        quantile: float = EVIDENCE_RANGE_QUANTILE, num_hypotheses: int = DEFAULT_HYPOTHESES,
                        window: int = 7, min_evidence: float = MIN_EVIDENCE) -> tuple[float, float] | None:
    """The depths (near, far) metres the stack's defocus evidence points at, inside the stated range:
    the relative-blur cost volume over ``depth_range_m`` (default the camera's effective range), the
    depth of its minimum per pixel (parabolic sub-step), and the ``quantile`` and 1 − it quantiles of
    that inverse depth, each pixel weighted by its :func:`decisiveness`. None for a stack without
    defocus evidence (one frame, identical frames, lens or focus unknown) or with too little
    (:data:`EVIDENCE_RANGE_MIN_SHARE`). frames [F,3,H,W] in [0,1]; camera: the stack's
    :class:`FocalStackCamera`. Stacks larger than :data:`EVIDENCE_RANGE_MAX_SIDE_PX` are read from a
    resized copy (the camera's pixel pitch scaled with it)."""
    from ..render.light import resize_stack
    stated = tuple(float(x) for x in (depth_range_m if depth_range_m is not None else camera.effective_depth_range_m()))
    if frames.dim() != 4 or frames.shape[0] < 2 or not reads_evidence(camera):
        return None
    x = frames.float()
    if max(x.shape[-2:]) > EVIDENCE_RANGE_MAX_SIDE_PX:
        x, camera = resize_stack(x, camera, EVIDENCE_RANGE_MAX_SIDE_PX / max(x.shape[-2:]))
    rng = torch.tensor([stated], dtype=torch.float32)
    vol = relative_blur_cost(x.unsqueeze(0), CameraBatch.from_cameras([camera]), rng, num_hypotheses, window)
    weight = decisiveness(vol, vol.cost.amin(dim=1, keepdim=True), min_evidence).flatten()
    if float(weight.sum()) < EVIDENCE_RANGE_MIN_SHARE * weight.numel():
        return None
    inv = _parabolic_min(vol.cost, vol.inv_depth).flatten()
    lo, hi = _weighted_quantiles(inv, weight, (quantile, 1.0 - quantile))
    return 1.0 / hi, 1.0 / lo


def widened_depth_range(span: tuple[float, float] | None, stated: tuple[float, float],
                        slack: float | None = None) -> tuple[float, float]:
    """An evidence span (near, far) widened by ``slack`` at each end (near/slack, far·slack; default 3,
    the widest bracket the pretraining cameras state around their scene, so the result is a range the
    camera-general network was trained to read), never beyond the stated range; the stated range
    itself when there is no span, or when the result would be less than :data:`MIN_RANGE_CHANGE`
    narrower in inverse depth (the hypotheses would hardly move, and the stated range's cost volume,
    already computed for the span, is reused: :func:`reuse_cost_volumes`)."""
    stated = tuple(float(x) for x in stated)
    if span is None:
        return stated
    slack = _range_slack() if slack is None else float(slack)
    near, far = max(stated[0], span[0] / slack), min(stated[1], span[1] * slack)
    if (1.0 / near - 1.0 / far) > (1.0 - MIN_RANGE_CHANGE) * (1.0 / stated[0] - 1.0 / stated[1]):
        return stated   # hardly narrower: the same hypotheses nearly, and the cost volume already made
    return near, far


def evidence_depth_range(frames: torch.Tensor, camera: FocalStackCamera, depth_range_m=None,
                         slack: float | None = None, quantile: float = EVIDENCE_RANGE_QUANTILE,
                         num_hypotheses: int = DEFAULT_HYPOTHESES, window: int = 7,
                         min_evidence: float = MIN_EVIDENCE) -> tuple[float, float]:
    """The part of a stated depth range that the stack's defocus evidence supports, (near, far) metres:
    :func:`evidence_depth_span` widened by :func:`widened_depth_range`.

    A camera.json states a bracket, often far wider than the scene (DEReD's NYUv2 protocol clips
    depth to 0.1–10 m; a room spans ~1–5 m). Hypotheses spread uniformly in 1/d over such a range
    leave a handful inside the scene, and the rest — depths with tens of pixels of blur — fit flat
    regions as well as the truth does: on 8 unseen indoor scenes through the NYUv2 camera (50 mm f/8,
    12 µm at 322 px) stated as 0.1–10 m, the shipped network scored δ1 0.56 and ``--method dfd`` 0.85,
    against 0.95 and 0.94 over this range (``benchmarks/general.py``, camera ``nyuv2_dered``).

    frames [F,3,H,W] in [0,1]; camera: the stack's :class:`FocalStackCamera`; depth_range_m (near,
    far) metres, default the camera's effective range."""
    stated = tuple(float(x) for x in (depth_range_m if depth_range_m is not None else camera.effective_depth_range_m()))
    span = evidence_depth_span(frames, camera, stated, quantile, num_hypotheses, window, min_evidence)
    return widened_depth_range(span, stated, slack)


@torch.no_grad()
def depth_from_defocus(frames: torch.Tensor, camera: FocalStackCamera | CameraBatch,
                       depth_range_m=None, num_hypotheses: int = DEFAULT_HYPOTHESES,
                       window: int = 7, aggregate: bool = True) -> tuple[torch.Tensor, DefocusCostVolume]:
    """Training-free depth: argmin of :func:`relative_blur_cost` with a parabolic sub-step; with
    ``aggregate`` (default) the argmin of the confidence-gated prior cost (:func:`aggregated_costs`,
    :func:`gated_weights`, :func:`prior_cost`), which fills flat regions from their textured surroundings.

    frames [B,F,3,H,W] (or one stack [F,3,H,W]) in [0,1]; camera one FocalStackCamera (shared) or a
    CameraBatch; depth_range_m (near, far) or [B,2], default the camera's effective range.
    Returns (depth [B,1,H,W] metres, the cost volume)."""
    if frames.dim() == 4:
        frames = frames.unsqueeze(0)
    b = frames.shape[0]
    if isinstance(camera, FocalStackCamera):
        if depth_range_m is None:
            depth_range_m = camera.effective_depth_range_m()
        camera = CameraBatch.from_cameras([camera] * b)
    if depth_range_m is None:
        raise ValueError("depth_from_defocus: depth_range_m is required with a CameraBatch")
    rng = torch.as_tensor(depth_range_m, dtype=torch.float32)
    rng = rng.view(1, 2).expand(b, 2) if rng.dim() == 1 else rng
    vol = relative_blur_cost(frames, camera, rng, num_hypotheses, window)
    cost = vol.cost
    if aggregate:
        versions, conf = aggregated_costs(vol, frames)
        cost = prior_cost(versions, gated_weights(conf, window))
    inv = _parabolic_min(cost, vol.inv_depth)
    return 1.0 / inv, vol
