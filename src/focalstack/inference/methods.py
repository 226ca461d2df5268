"""The training-free prediction methods: ``dff`` (depth from focus, :mod:`focalstack.classical`),
``dfd`` (depth from defocus by relative blur over depth hypotheses, :mod:`focalstack.classical.dfd`)
and ``optimize`` (zero-shot per-stack optimisation, :mod:`focalstack.optimize`)."""

from __future__ import annotations

import time

import torch

from ..data.format import FocalStackSample
from .options import DFDOptions, DFFOptions, OptimizeOptions, sample_focus_known
from .prediction import Prediction

__all__ = ["predict_dff", "predict_dfd", "predict_optimize", "dff_prediction", "check_method"]


def check_method(sample, method: str) -> None:
    """Raise ValueError (one line naming the sample) when ``method`` cannot run on the stack of
    ``sample`` (anything with ``.camera`` and ``.name``) — before any work, so that a photo-sized
    stack is refused before it is streamed."""
    from ..classical.dfd import has_defocus_evidence
    cam, name = sample.camera, sample.name or "sample"
    if method == "dff" and len(set(cam.focus_distances_m)) < 2:
        raise ValueError(f"{name}: depth from focus needs frames at ≥ 2 focus distances "
                         "(two-aperture stacks: use --method optimize)")
    if method == "dfd":
        if not (cam.focus_known and cam.lens_known):
            raise ValueError(f"{name}: --method dfd needs the lens and the focus distances "
                             "(camera.json has placeholders); use --method optimize")
        if not has_defocus_evidence(cam):
            raise ValueError(f"{name}: --method dfd needs ≥ 2 frames that differ in focus or aperture")


def predict_dff(sample: FocalStackSample, opts: DFFOptions | None = None) -> Prediction:
    """Depth from focus (metric when the focus distances are known, else relative inverse depth)
    and the fused AIF. ``opts``: :class:`DFFOptions` (or any object with some of its fields)."""
    from ..classical import depth_from_focus
    o = DFFOptions.of(opts)
    cam = sample.camera
    check_method(sample, "dff")
    t0 = time.perf_counter()
    r = depth_from_focus(sample.frames, cam, measure=o.measure, window=o.window, interp=o.interp,
                         refine="guided" if o.guided_filter else None, fusion=o.fusion)
    return dff_prediction(r, sample, o, time.perf_counter() - t0)


def dff_prediction(r, sample, o: DFFOptions, seconds: float) -> Prediction:
    """A :class:`focalstack.classical.DFFResult` (B = 1) as the ``dff`` method's prediction: metric depth
    when the focus distances are known, else relative inverse depth in [0,1] over the focus range."""
    cam = sample.camera
    extras: dict = {"measure": o.measure, "window": o.window, "mean_confidence": float(r.confidence.mean())}
    if sample_focus_known(sample, o):
        depth = r.depth_m[0, 0]
        extras["depth_kind"] = "metric"
    else:
        rho = torch.tensor([1.0 / d for d in cam.focus_distances_m])
        lo, hi = float(rho.min()), float(rho.max())
        depth = ((r.inv_depth[0, 0] - lo) / (hi - lo)).clamp(0, 1)
        extras["depth_kind"] = "relative_inverse"
    extras["seconds_method"] = seconds
    return Prediction(depth, r.aif[0], extras)


def predict_dfd(sample: FocalStackSample, opts: DFDOptions | None = None) -> Prediction:
    """Camera-aware depth from defocus (metric; needs the lens and the focus distances): the argmin of
    the relative-blur cost volume after image-guided cost aggregation, over the part of the camera's
    range the stack's evidence supports (``range_from_evidence``, default; else the stated range), on
    the stack downscaled when its blur exceeds what the cost volume models (``scale``, default
    :func:`focalstack.inference.scale.working_scale` with a 5 px band); AIF = per pixel the
    full-size frame with the smallest blur at that depth."""
    from ..classical.dfd import MAX_BLUR_RADIUS_PX, depth_from_defocus, normalised_cost, reuse_cost_volumes
    from .scale import to_full_size, working_stack
    from ..losses import coarse_aif
    from ..optics.camera import CameraBatch
    cam = sample.camera
    check_method(sample, "dfd")
    o = DFDOptions.of(opts)
    t0 = time.perf_counter()
    stated = cam.effective_depth_range_m()
    frames = sample.frames.float()
    with reuse_cost_volumes():   # a range left as stated at full size: one cost volume for the span and the depth
        # blur beyond what the cost volume models (σ > MAX_BLUR_RADIUS_PX / 3) is read at a smaller size
        ws = working_stack(frames, cam, stated, o.scale, o.range_from_evidence,
                           max_sigma_px=MAX_BLUR_RADIUS_PX / 3, num_hypotheses=int(o.hypotheses))
        depth, vol = depth_from_defocus(ws.frames.unsqueeze(0), ws.camera, ws.depth_range_m,
                                        num_hypotheses=int(o.hypotheses))
    _, conf = normalised_cost(vol)
    if ws.scale != 1.0:
        depth, aif = to_full_size(depth[0, 0], frames, cam)
        depth, aif = depth[None, None], aif[None]
    else:
        aif, _ = coarse_aif(frames.unsqueeze(0), depth, CameraBatch.from_cameras([cam]))
    span = ws.evidence_span_m
    extras = {"depth_kind": "metric", "mean_confidence": float(conf.mean()), "depth_range_m": list(ws.depth_range_m),
              "stated_depth_range_m": list(stated), "evidence_span_m": list(span) if span else None,
              "scale": ws.scale, "seconds_method": time.perf_counter() - t0}
    return Prediction(depth[0, 0], aif[0], extras)


def predict_optimize(sample: FocalStackSample, opts: OptimizeOptions | None = None) -> Prediction:
    """Zero-shot per-stack optimisation from the DFF initialisation. ``opts``: :class:`OptimizeOptions`
    (or any object with some of its fields).

    With known focus its inverse depth lives inside a depth range (the sigmoid bracket of
    :mod:`focalstack.optimize`): the part of the camera's stated range the stack's defocus evidence
    supports, as for ``dfd`` and ``net`` (``range_from_evidence``, default; else the stated range). A
    loose bracket (DEReD's NYUv2 protocol states 0.1–10 m for rooms of 1–5 m) otherwise lets flat regions
    settle on depths far outside the scene that re-render them as well (README, "Any camera")."""
    from dataclasses import replace

    from ..classical.dfd import reads_evidence
    from ..optimize import OptimizeConfig, optimize_stack
    from .scale import working_stack
    o = OptimizeOptions.of(opts)
    cfg = OptimizeConfig(measure=o.measure, window=o.window, refine="guided" if o.guided_filter else None,
                         threads=o.threads, schedule=o.schedule)
    scale = float(o.iters_scale)
    if scale != 1.0:
        cfg = cfg.scaled(scale)
    known = sample_focus_known(sample, o)
    cam, ranges = sample.camera, {}
    t0 = time.perf_counter()
    if known and o.range_from_evidence and reads_evidence(cam):
        stated = cam.effective_depth_range_m()
        # the range only, at scale 1: the optimiser has its own coarse-to-fine levels
        ws = working_stack(sample.frames.float(), cam, stated, scale=1.0)
        cam = replace(cam, depth_range_m=tuple(ws.depth_range_m))
        span = ws.evidence_span_m
        ranges = {"depth_range_m": list(ws.depth_range_m), "stated_depth_range_m": list(stated),
                  "evidence_span_m": list(span) if span else None}
    seconds_range = time.perf_counter() - t0
    bar = None
    if o.progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(cfg.iters), desc="optimize", leave=False, unit="step", disable=None)
    try:
        r = optimize_stack(sample.frames, cam, cfg, known_focus=known,
                           progress=(lambda i, n, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.4f}")))
                           if bar else None)
    finally:
        if bar:
            bar.close()
    extras = {"depth_kind": r.depth_kind, "recon_before": _strip(r.recon_before), "recon_after": _strip(r.recon_after),
              "levels": list(cfg.levels), "iters": list(cfg.iters), "seconds_method": seconds_range + r.seconds,
              "rendered": r.rendered, **ranges}
    if r.depth_kind == "relative_inverse":
        extras.update(focus_positions_relative=r.focus_positions, blur_scale_px=r.blur_scale_px,
                      blur_offset_px=r.blur_offset_px)
        depth = r.inv_depth
    else:
        depth = r.depth_m
    return Prediction(depth, r.aif, extras)


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "l1_per_frame"}
