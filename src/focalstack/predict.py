"""Prediction methods and the one prediction writer shared by every method.

``PREDICTORS`` maps a method name to ``fn(sample: FocalStackSample, opts) -> Prediction``.
Built in: ``dff`` (depth from focus, :mod:`focalstack.classical`) and ``optimize`` (zero-shot
per-stack optimisation, :mod:`focalstack.optimize`). ``net`` (the trained model) is registered
by :mod:`focalstack.models` through :func:`register_predictor`.

Output folder of one sample (:func:`write_prediction`, written atomically)::

    depth.npy          float32 H×W, same size as the frames: metres (depth_kind "metric"), or
                       relative inverse depth in [0,1], larger = nearer, affine-ambiguous
                       (depth_kind "relative_inverse": stacks whose focus distances are unknown)
    depth.png          uint16: millimetres (metric, clipped to 65.535 m), or relative inverse depth × 65535
    depth_color.png    colour-mapped depth with a colour bar (matplotlib)
    aif.png            all-in-focus image (8-bit)
    recon_error.json   re-rendering error of (depth, aif) through the camera vs the input frames:
                       loss = 0.85·(1−SSIM)/2 + 0.15·L1, l1, psnr_db, l1_per_frame
    recon_error.png    per-pixel mean |rendered − frame| over frames and channels (inferno, 0..vmax)
    meta.json          method, seconds, depth_kind, units, options, method extras
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .data.format import FocalStackSample

__all__ = ["Prediction", "PredictOptions", "PREDICTORS", "register_predictor", "get_predictor",
           "write_prediction", "predict_dff", "predict_optimize", "render_prediction", "sample_focus_known"]


@dataclass
class Prediction:
    """depth_m: [H,W] (metres, or relative inverse depth if extras["depth_kind"] == "relative_inverse");
    aif: [3,H,W] in [0,1]; extras: JSON-able values for meta.json, plus optionally "rendered"
    ([F,3,H,W] re-rendered stack, used for the reconstruction error instead of render_stack)."""

    depth_m: torch.Tensor
    aif: torch.Tensor
    extras: dict = field(default_factory=dict)

    @property
    def depth_kind(self) -> str:
        return self.extras.get("depth_kind", "metric")


@dataclass
class PredictOptions:
    """Options every predictor reads (unknown ones are ignored by methods that do not use them)."""

    measure: str = "lapm"
    window: int = 9
    interp: str = "parabolic"
    refine: str | None = "guided"
    fusion: str = "pyramid"
    iters_scale: float = 1.0            # optimize: × the default iterations
    threads: int | None = None
    focus_known: bool | None = None     # None: read "focus_known" from the sample's camera.json
    sample_dir: str | None = None       # set by the CLI per sample
    checkpoint: str | None = None       # net
    refine_steps: int = 0               # net: test-time optimisation steps
    tile: int | None = None             # net
    scale: float | None = None          # net
    device: str = "cpu"
    progress: bool = False


PREDICTORS: dict[str, Callable[[FocalStackSample, Any], Prediction]] = {}


def register_predictor(name: str, fn: Callable[[FocalStackSample, Any], Prediction]) -> None:
    PREDICTORS[name] = fn


def get_predictor(name: str) -> Callable[[FocalStackSample, Any], Prediction]:
    if name not in PREDICTORS and name == "net":
        try:  # the trained model registers itself on import, when present
            import importlib
            importlib.import_module("focalstack.models")
        except ImportError:
            pass
    if name not in PREDICTORS:
        hint = " (the trained-model method is not available in this installation)" if name == "net" else ""
        raise ValueError(f"unknown method {name!r}{hint}; available: {', '.join(sorted(PREDICTORS))}")
    return PREDICTORS[name]


def sample_focus_known(opts) -> bool:
    known = getattr(opts, "focus_known", None)
    if known is not None:
        return bool(known)
    sd = getattr(opts, "sample_dir", None)
    if sd:
        from .optimize import focus_known
        return focus_known(sd)
    return True


def _opt(opts, name, default):
    v = getattr(opts, name, default) if opts is not None else default
    return default if v is None and default is not None else v


# ---- built-in methods ---------------------------------------------------------------------------

def predict_dff(sample: FocalStackSample, opts=None) -> Prediction:
    from .classical import depth_from_focus
    cam = sample.camera
    if len(set(cam.focus_distances_m)) < 2:
        raise ValueError(f"{sample.name or 'sample'}: depth from focus needs frames at ≥ 2 focus distances "
                         "(two-aperture stacks: use --method optimize)")
    t0 = time.perf_counter()
    r = depth_from_focus(sample.frames, cam, measure=_opt(opts, "measure", "lapm"), window=_opt(opts, "window", 9),
                         interp=_opt(opts, "interp", "parabolic"), refine=_opt(opts, "refine", "guided"),
                         fusion=_opt(opts, "fusion", "pyramid"))
    extras: dict = {"measure": _opt(opts, "measure", "lapm"), "window": _opt(opts, "window", 9),
                    "mean_confidence": float(r.confidence.mean())}
    if sample_focus_known(opts):
        depth = r.depth_m[0, 0]
        extras["depth_kind"] = "metric"
    else:
        rho = torch.tensor([1.0 / d for d in cam.focus_distances_m])
        lo, hi = float(rho.min()), float(rho.max())
        depth = ((r.inv_depth[0, 0] - lo) / (hi - lo)).clamp(0, 1)
        extras["depth_kind"] = "relative_inverse"
    extras["seconds_method"] = time.perf_counter() - t0
    return Prediction(depth, r.aif[0], extras)


def predict_optimize(sample: FocalStackSample, opts=None) -> Prediction:
    from .optimize import OptimizeConfig, optimize_stack
    cfg = OptimizeConfig(measure=_opt(opts, "measure", "lapm"), window=_opt(opts, "window", 9),
                         refine=_opt(opts, "refine", "guided"), threads=_opt(opts, "threads", None))
    scale = float(_opt(opts, "iters_scale", 1.0))
    if scale != 1.0:
        cfg = cfg.scaled(scale)
    known = sample_focus_known(opts)
    bar = None
    if _opt(opts, "progress", False):
        from tqdm import tqdm
        bar = tqdm(total=sum(cfg.iters), desc="optimize", leave=False, unit="step", disable=None)
    try:
        r = optimize_stack(sample.frames, sample.camera, cfg, known_focus=known,
                           progress=(lambda i, n, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.4f}")))
                           if bar else None)
    finally:
        if bar:
            bar.close()
    extras = {"depth_kind": r.depth_kind, "recon_before": _strip(r.recon_before), "recon_after": _strip(r.recon_after),
              "levels": list(cfg.levels), "iters": list(cfg.iters), "seconds_method": r.seconds,
              "rendered": r.rendered}
    if r.depth_kind == "relative_inverse":
        extras.update(focus_positions_relative=r.focus_positions, blur_scale_px=r.blur_scale_px,
                      blur_offset_px=r.blur_offset_px)
        depth = r.inv_depth
    else:
        depth = r.depth_m
    return Prediction(depth, r.aif, extras)


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "l1_per_frame"}


register_predictor("dff", predict_dff)
register_predictor("optimize", predict_optimize)


# ---- writer -------------------------------------------------------------------------------------

@torch.no_grad()
def render_prediction(sample: FocalStackSample, prediction: Prediction, max_kernel: int = 31) -> torch.Tensor | None:
    """Re-render the stack [F,3,H,W] from a prediction (None for relative depth without "rendered")."""
    rendered = prediction.extras.get("rendered")
    if rendered is not None:
        return rendered
    if prediction.depth_kind != "metric":
        return None
    from .optimize import _render_metric
    depth = prediction.depth_m.float().clamp_min(1e-3).view(1, 1, *prediction.depth_m.shape[-2:])
    return _render_metric(prediction.aif.float().unsqueeze(0).clamp(0, 1), 1.0 / depth, sample.camera,
                          max_kernel, "gaussian")


def _jsonable(v):
    if isinstance(v, torch.Tensor):
        return v.tolist() if v.numel() <= 64 else None
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items() if _jsonable(x) is not None or x is None}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if is_dataclass(v):
        return _jsonable(asdict(v))
    if isinstance(v, Path):
        return str(v)
    return v


def _depth_color(path: Path, depth: np.ndarray, kind: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    h, w = depth.shape
    fig_w = 6.0
    fig, ax = plt.subplots(figsize=(fig_w, fig_w * h / w * 0.9 + 0.3), dpi=max(100, int(w / fig_w)))
    finite = depth[np.isfinite(depth)]
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0, 1))
    if kind == "metric":
        im = ax.imshow(depth, cmap="turbo_r", vmin=lo, vmax=hi)
        label = "depth [m]"
    else:
        im = ax.imshow(depth, cmap="turbo", vmin=lo, vmax=hi)
        label = "relative inverse depth (larger = nearer)"
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label=label)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def write_prediction(out_dir: str | Path, sample: FocalStackSample, prediction: Prediction,
                     meta: dict | None = None, inputs=()) -> Path:
    """Write one sample's outputs atomically into ``out_dir`` (see module doc). An existing
    ``out_dir`` is replaced only if it is empty or a prediction folder focalstack wrote;
    ``inputs``: paths the output must not be, contain or sit inside."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .data.io import atomic_write_dir, write_image
    from .optimize import recon_metrics

    out = Path(out_dir)
    hw = sample.size_hw
    depth = prediction.depth_m.detach().float().cpu()
    if tuple(depth.shape) != hw:
        raise ValueError(f"prediction depth is {tuple(depth.shape)} but the frames are {hw}")
    aif = prediction.aif.detach().float().cpu().clamp(0, 1)
    kind = prediction.depth_kind
    d = depth.numpy().astype(np.float32)
    rendered = render_prediction(sample, prediction)
    recon = None
    err_map = None
    if rendered is not None:
        rendered = rendered.detach().float().cpu()
        recon = recon_metrics(rendered, sample.frames.float())
        err_map = (rendered - sample.frames.float()).abs().mean(dim=(0, 1)).numpy()
    with atomic_write_dir(out, "prediction", inputs) as tmp:
        np.save(tmp / "depth.npy", d)
        if kind == "metric":
            png = np.clip(np.nan_to_num(d, nan=0.0, posinf=0.0) * 1000.0, 0, 65535)
        else:
            png = np.clip(np.nan_to_num(d, nan=0.0) * 65535.0, 0, 65535)
        import cv2
        cv2.imwrite(str(tmp / "depth.png"), np.round(png).astype(np.uint16))
        _depth_color(tmp / "depth_color.png", d, kind)
        write_image(tmp / "aif.png", aif)
        vmax = None
        if recon is not None:
            vmax = float(max(np.percentile(err_map, 99), 1e-3))
            plt.imsave(tmp / "recon_error.png", err_map, cmap="inferno", vmin=0.0, vmax=vmax)
        (tmp / "recon_error.json").write_text(json.dumps(
            {**(recon or {"error": "no re-rendering available for this prediction"}),
             "map_png": "recon_error.png: mean |rendered − frame| over frames and channels, "
                        f"colour scale 0..{vmax}" if vmax else None}, indent=2) + "\n")
        extras = {k: v for k, v in prediction.extras.items() if k != "rendered"}
        m = {"sample": sample.name, "depth_kind": kind,
             "depth_units": "metres" if kind == "metric" else "relative inverse depth in [0,1], larger = nearer "
                                                                "(affine-ambiguous; focus distances unknown)",
             "depth_png": "uint16 millimetres" if kind == "metric" else "uint16 relative inverse depth x 65535",
             "size_hw": list(hw), "num_frames": sample.num_frames, **_jsonable(extras), **(meta or {})}
        (tmp / "meta.json").write_text(json.dumps(_jsonable(m), indent=2) + "\n")
    return out
