"""The working scale of a stack: the size at which a method reads its blur, and the way back.

σ in pixels scales with the image. A method that reads blur through a bounded band — the
camera-general network was pretrained on σ ≤ 5 px (:mod:`focalstack.optics.distribution`), the
relative-blur cost volume models σ ≤ 5 px (``classical.dfd.MAX_BLUR_RADIUS_PX`` / 3) — misreads a
stack whose blur lies beyond it: run it on the stack downscaled until the blur fits
(:func:`working_scale`, :func:`focalstack.render.light.resize_stack`; with the depth range to search:
:func:`working_stack`), then bring its depth back to the stack's size in inverse depth and compose
the AIF from the full-size frames (:func:`to_full_size`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..render.light import resize_stack

__all__ = ["working_scale", "working_stack", "WorkingStack", "resize_stack", "to_full_size", "trained_blur_px",
           "MIN_WORKING_SIDE_PX", "MIN_SCALE_CHANGE"]

MIN_WORKING_SIDE_PX = 128
"""The automatic working scale never makes the stack's long side smaller than this (px)."""
MIN_SCALE_CHANGE = 0.1
"""… and leaves the stack at its own size when it would shrink it by less than this share."""


def trained_blur_px() -> float:
    """The largest Gaussian σ (px) a camera-general network saw over a training scene: the top of the
    pretraining distribution's band (:mod:`focalstack.optics.distribution`, step 4)."""
    from ..optics.distribution import CAMERA_DISTRIBUTIONS
    return float(CAMERA_DISTRIBUTIONS["general"].sigma_max_px[1])


def working_scale(camera, scene_range_m: tuple[float, float], size_hw: tuple[int, int],
                  max_sigma_px: float | None = None, min_size_hw: tuple[int, int] | None = None) -> float:
    """The resize factor (≤ 1) that brings a camera's blur into a band: the largest σ any frame shows
    over ``scene_range_m`` (near, far metres: the depths the stack's evidence points at, else the
    stated range) scaled to ``max_sigma_px`` (default :func:`trained_blur_px`, 5 px, the band the
    camera-general network was trained on; ``dfd`` passes its cost volume's 5 px); 1 when it is
    already inside or nearly (:data:`MIN_SCALE_CHANGE`); never below :data:`MIN_WORKING_SIDE_PX` on
    the long side, nor below ``min_size_hw`` (h, w) px (training: the crop); ``size_hw`` (H, W) px.
    σ in pixels scales with the image, and beyond the band the
    network reads blur it never saw while the cost volume truncates it (σ > 5 px:
    ``classical.dfd.MAX_BLUR_RADIUS_PX``): an 85 mm f/1.8 stack at 645 px (σ up to 13 px over the
    scene) scored δ1 0.943 at full size and 0.961 at the working scale (0.44), 2.7× faster
    (``benchmarks/working_scale.py``)."""
    band = trained_blur_px() if max_sigma_px is None else float(max_sigma_px)
    smax = camera.max_sigma_px(tuple(scene_range_m))
    scale = max(band / smax, min(1.0, MIN_WORKING_SIDE_PX / max(size_hw))) if smax > band else 1.0
    if min_size_hw is not None:
        scale = max(scale, min(1.0, max(m / n for m, n in zip(min_size_hw, size_hw))))
    # a resize by less than this changes little of what the network sees, and costs a second cost volume
    return 1.0 if scale > 1.0 - MIN_SCALE_CHANGE else scale


@dataclass
class WorkingStack:
    """What a cost-volume method reads: ``frames`` [F,3,h,w] and ``camera`` at the working ``scale``, the
    ``depth_range_m`` (near, far) to search, and the stack's ``evidence_span_m`` (None: not read)."""

    frames: torch.Tensor
    camera: object
    depth_range_m: tuple[float, float]
    scale: float
    evidence_span_m: tuple[float, float] | None


def working_stack(frames: torch.Tensor, camera, stated_range_m: tuple[float, float], scale: float | None = None,
                  range_from_evidence: bool = True, read_evidence: bool = True,
                  max_sigma_px: float | None = None, num_hypotheses: int | None = None,
                  min_size_hw: tuple[int, int] | None = None) -> WorkingStack:
    """The stack [F,3,H,W] as ``dfd`` and the camera-general network read it: the depths its defocus
    evidence points at (:func:`focalstack.classical.dfd.evidence_depth_span` over ``stated_range_m``),
    the working scale from them (``scale`` None: :func:`working_scale` with ``max_sigma_px`` and
    ``min_size_hw``; else that
    factor) and the range to search (the span widened, :func:`focalstack.classical.dfd.widened_depth_range`,
    unless ``range_from_evidence`` is False: the stated one). ``read_evidence`` False (a checkpoint
    trained on a fixed range, or no lens, focus or defocus to read): no span, the stated range, and
    ``scale`` or 1. Run it inside :func:`focalstack.classical.dfd.reuse_cost_volumes`: a range left as
    stated at full size then costs the method no second cost volume."""
    from ..classical.dfd import DEFAULT_HYPOTHESES, evidence_depth_span, widened_depth_range
    stated = tuple(float(x) for x in stated_range_m)
    span = evidence_depth_span(frames, camera, stated, num_hypotheses=num_hypotheses or DEFAULT_HYPOTHESES) \
        if read_evidence else None
    if scale is None:
        scale = working_scale(camera, span or stated, tuple(frames.shape[-2:]), max_sigma_px, min_size_hw) \
            if read_evidence else 1.0
    rng = widened_depth_range(span, stated) if read_evidence and range_from_evidence else stated
    if scale != 1.0:
        frames, camera = resize_stack(frames, camera, scale)
    return WorkingStack(frames, camera, rng, float(scale), span)


def to_full_size(depth: torch.Tensor, frames: torch.Tensor, camera) -> tuple[torch.Tensor, torch.Tensor]:
    """(depth [H,W] metres, AIF [3,H,W]) at the size of the full stack ``frames`` [F,3,H,W] from a depth
    [h,w] found at a working scale: the depth upsampled bilinearly in inverse depth (defocus is linear
    in it), the AIF per pixel the full-size frame in focus at that depth — an upsampled AIF would lose
    what the full size shows (85 mm f/1.8 at 0.44×: 31.9 dB against 27.8 dB; full size 32.2 dB;
    ``benchmarks/working_scale.py``)."""
    from ..losses import coarse_aif
    from ..optics.camera import CameraBatch
    h, w = frames.shape[-2:]
    inv = F.interpolate((1.0 / depth)[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    depth = 1.0 / inv
    aif = coarse_aif(frames.float()[None], depth[None, None], CameraBatch.from_cameras([camera]))[0][0]
    return depth, aif
