"""``predict --method net``: a trained model on one focal stack, with tiling/scaling for large
photos and optional test-time refinement through the optical model."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import torch

from ..data.format import FocalStackSample
from .options import NetOptions
from .prediction import Prediction
from .scale import WorkingStack, to_full_size, working_stack

# Stacks whose long side exceeds this are processed in tiles by default (memory stays bounded).
AUTO_TILE_ABOVE_PX = 1024
DEFAULT_TILE_PX = 512
REFINE_LR_DEPTH = 0.05   # --refine's Adam step on the inverse-depth logit (see predict_net)

_CACHE: dict[tuple[str, str], tuple] = {}


def default_checkpoint() -> Path:
    """The checkpoint shipped inside the package (see src/focalstack/weights/README.md)."""
    from ..checkpoint import shipped_checkpoint
    return shipped_checkpoint()


def load_cached(checkpoint: str | Path | None, device: str = "cpu"):
    """The model of a checkpoint (run folder, .safetensors, or ``shipped`` / ``shipped:NAME`` for the
    package's own), loaded once per process."""
    from ..checkpoint import load_model, shipped_path

    ck = str(shipped_path(checkpoint) or checkpoint or default_checkpoint())
    key = (ck, str(device))
    if key not in _CACHE:
        _CACHE[key] = load_model(ck, device)
    return _CACHE[key]


def _model_depth_range(meta: dict, sample: FocalStackSample) -> tuple[float, float]:
    dr = meta.get("depth_range_m")
    return tuple(dr) if dr else sample.camera.effective_depth_range_m()


def _tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    if n <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, n - tile, step)) + [n - tile]
    return sorted(set(starts))


def _ramp(n: int, overlap: int, dtype) -> torch.Tensor:
    """Blending weights along one tile axis: linear ramps over the overlap, 1 inside."""
    w = torch.ones(n, dtype=dtype)
    if overlap > 0 and n > 2 * overlap:
        r = (torch.arange(overlap, dtype=dtype) + 1) / (overlap + 1)
        w[:overlap] = r
        w[-overlap:] = r.flip(0)
    return w


@torch.no_grad()
def run_network(model, frames: torch.Tensor, camera, depth_range, tile: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """frames [F,3,H,W] → (depth [H,W] metres, aif [3,H,W]); ``camera``: the stack's FocalStackCamera
    (focus distances alone [F] serve models that read no lens); tiles of ``tile`` px with 1/4 overlap,
    blended with linear ramps (inverse depth is blended, as defocus is linear in it)."""
    from ..models import predict_batch

    _, _, h, w = frames.shape
    if tile is None or (h <= tile and w <= tile):
        out = predict_batch(model, frames, camera, depth_range)
        return out["depth_m"][0, 0].cpu(), out["aif"][0].cpu()
    overlap = tile // 4
    inv = torch.zeros(h, w)
    aif = torch.zeros(3, h, w)
    wsum = torch.zeros(h, w)
    for y in _tile_starts(h, tile, overlap):
        for x in _tile_starts(w, tile, overlap):
            th, tw = min(tile, h), min(tile, w)
            out = predict_batch(model, frames[..., y:y + th, x:x + tw], camera, depth_range)
            wt = _ramp(th, overlap, torch.float32)[:, None] * _ramp(tw, overlap, torch.float32)[None, :]
            inv[y:y + th, x:x + tw] += wt / out["depth_m"][0, 0].cpu()
            aif[:, y:y + th, x:x + tw] += wt * out["aif"][0].cpu()
            wsum[y:y + th, x:x + tw] += wt
    return 1.0 / (inv / wsum), aif / wsum


def run_network_at(model, ws: WorkingStack, frames: torch.Tensor, camera, tile: int | None = None,
                   refine_steps: int = 0, psf: str = "gaussian"):
    """The network run on the working stack ``ws`` (:func:`working_stack`) of the full stack ``frames``
    [F,3,H,W] through ``camera``, over ``ws.depth_range_m``; refined there by ``refine_steps``
    (``--refine``, :func:`refine_prediction`) and brought back to the full size by :func:`to_full_size`
    when ``ws`` is resized. Returns (depth [H,W] metres, AIF [3,H,W], the refinement's result or None).
    What ``predict --method net`` and the distillation teacher both run; ``psf``: the refinement's
    render PSF (the teacher of a ``train --psf`` run refines with the run's).

    The refinement runs at the working scale too: there the blur is inside the band and every step
    costs the working stack's pixels and window. On the portrait camera (85 mm f/1.8 at 645 px, the
    stacks at 0.43–0.49×) ``--refine 100`` at full size scored δ1 0.987 / AbsRel 0.064 in 7.2 s a
    stack, at the working scale 0.990 / 0.037 in 1.5 s (README, "Any camera")."""
    depth, aif = run_network(model, ws.frames, ws.camera, ws.depth_range_m, tile)
    res = None
    if refine_steps > 0:
        res = refine_prediction(ws.frames, ws.camera, ws.depth_range_m, depth, aif, refine_steps, psf)
        depth, aif = res.depth_m.reshape(depth.shape), res.aif.reshape(aif.shape)
    if tuple(depth.shape) != tuple(frames.shape[-2:]):
        depth, aif = to_full_size(depth, frames, camera)
    return depth, aif, res


def refine_config(steps: int, psf: str = "gaussian"):
    """The optimiser's settings for ``--refine steps`` from the network's depth + AIF: the default
    (fast) schedule within the step budget — coarse to fine where the blur allows it, cheaper than
    full-resolution steps and nearer the truth on DSLR-synth stacks (README, "Any camera").

    * Not the fast schedule's 25-step cap on the full-resolution stage: a good start from the
      network needs its detail (with the cap: procedural AbsRel 0.040 → 0.052).
    * But its window rule: past a 21-px render window (wide-blur cameras, where a full-resolution
      step costs ∝ k²) the stage keeps (21/k)² of its steps (DSLR-synth, first 3 scenes: 50 mm
      2.75 → 1.87 s per stack at δ1 0.909 → 0.912, 85 mm 3.02 → 2.10 s at AbsRel 0.123 → 0.129).
    * Smaller depth steps than from optimize's DFF start (lr_depth 0.05, not 0.15): the network
      starts near the answer, and larger steps moved it away (50 mm: δ1 0.910 at 0.05, 0.878 at 0.15).
    """
    from ..optimize import OptimizeConfig
    base = OptimizeConfig(lr_depth=REFINE_LR_DEPTH, psf=psf)
    return replace(base, fine_iters_after_coarse=base.iters[-1]).within(steps)


def refine_prediction(frames: torch.Tensor, camera, depth_range, depth: torch.Tensor, aif: torch.Tensor, steps: int,
                      psf: str = "gaussian"):
    """``--refine steps``: the optimiser's re-rendering objective minimised from a network's depth [H,W]
    (metres) and AIF [3,H,W], inside the (near, far) range the network predicted in; frames [F,3,H,W];
    ``psf``: the renderer's (:data:`focalstack.render.psf.PSFS`).
    Returns :func:`focalstack.optimize.optimize_stack`'s result."""
    from ..optimize import optimize_stack
    # refine inside the range the network predicted in (optimize reads effective_depth_range_m)
    cam_r = replace(camera, depth_range_m=tuple(depth_range))
    init = SimpleNamespace(inv_depth=(1.0 / depth)[None, None], aif=aif[None], depth_m=depth[None, None])
    return optimize_stack(frames.float(), cam_r, refine_config(steps, psf), init=init)


def predict_net(sample: FocalStackSample, opts: NetOptions | None = None) -> Prediction:
    """Depth + AIF from a trained model (:class:`NetOptions`, or any object with some of its fields:
    ``checkpoint``: run folder or .safetensors; default the shipped checkpoint). ``scale`` resizes the
    stack first (camera pixel size follows; None: :func:`working_scale` for checkpoints that read their
    range from the camera, else 1); at another size than the stack's the depth is upsampled in inverse
    depth and the AIF composed from the full-size frames (per pixel the frame in focus at that depth);
    ``tile`` processes tiles; ``refine_steps`` > 0 refines the prediction by optimising the
    self-supervised re-rendering loss from it (focalstack.optimize), at the working scale, and reports
    the error before/after (at that scale).
    The depth range: a fixed-range checkpoint's own, else the camera's stated range narrowed to the
    stack's evidence (:func:`focalstack.classical.dfd.evidence_depth_range`; ``range_from_evidence``)."""
    o = NetOptions.of(opts)
    model, meta = load_cached(o.checkpoint, o.device or "cpu")
    t0 = time.perf_counter()
    from ..classical.dfd import reads_evidence, reuse_cost_volumes
    cam = sample.camera
    stated = _model_depth_range(meta, sample)
    # a checkpoint trained on a fixed range keeps it; one that reads the camera's range (camera-general)
    # gets the depths the stack's evidence points at: its range and its working scale follow from them
    read = not meta.get("depth_range_m") and reads_evidence(cam)
    with reuse_cost_volumes():   # a range left as stated at full size: the network reads the span's own cost volume
        ws = working_stack(sample.frames.float(), cam, stated, o.scale, o.range_from_evidence, read)
        tile = o.tile
        if tile is None and max(ws.frames.shape[-2:]) > AUTO_TILE_ABOVE_PX:
            tile = DEFAULT_TILE_PX
        depth_range, scale, span = ws.depth_range_m, ws.scale, ws.evidence_span_m
        steps = int(o.refine_steps or 0)
        # the whole (resized) camera; --refine at the working scale as well
        depth, aif, res = run_network_at(model, ws, sample.frames, sample.camera, tile, steps)
    seconds = time.perf_counter() - t0
    extras = {"method": "net", "model": meta.get("model"), "checkpoint": str(o.checkpoint or default_checkpoint()),
              "depth_range_m": list(depth_range), "stated_depth_range_m": list(stated),
              "evidence_span_m": list(span) if span else None, "tile_px": tile, "scale": scale,
              "network_seconds": seconds - (res.seconds if res is not None else 0.0), "depth_kind": "metric"}
    if res is not None:   # the re-rendering errors at the working scale; the writer re-renders a resized one
        extras.update(refine_steps=steps, recon_before=res.recon_before, recon_after=res.recon_after,
                      refine_seconds=res.seconds, **({"rendered": res.rendered} if scale == 1.0 else {}))
    extras["seconds"] = seconds
    return Prediction(depth.float(), aif.float().clamp(0, 1), extras)

