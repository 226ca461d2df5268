"""The one prediction writer shared by every method.

Output folder of one sample (:func:`write_prediction`, written atomically)::

    depth.npy          float32 H×W, same size as the frames: metres (depth_kind "metric"), or
                       relative inverse depth in [0,1], larger = nearer, affine-ambiguous
                       (depth_kind "relative_inverse": stacks whose focus distances are unknown)
    depth.png          uint16: millimetres (metric, clipped to 65.535 m), or relative inverse depth × 65535
    depth_color.png    colour-mapped depth with a colour bar (matplotlib; a preview, ≤ 2048 px wide)
    aif.png            all-in-focus image (8-bit, sRGB)
    aif.tif            the same at 16 bit in linear light — only for samples whose camera.json says
                       "encoding": "linear" (frames imported from camera RAW)
    points.ply         only with ``export=("ply",)``: coloured point cloud of a metric prediction
                       (binary little-endian; :mod:`focalstack.inference.pointcloud`)
    recon_error.json   re-rendering error of (depth, aif) through the camera vs the input frames:
                       loss = 0.85·(1−SSIM)/2 + 0.15·L1, l1, psnr_db, l1_per_frame
    recon_error.png    per-pixel mean |rendered − frame| over frames and channels (inferno, 0..vmax)
    meta.json          method, seconds, depth_kind, units, options, method extras
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.format import FocalStackSample, SampleFiles
from .prediction import Prediction

__all__ = ["write_prediction", "render_prediction", "check_export", "EXPORTS"]


@torch.no_grad()
def render_prediction(sample: FocalStackSample, prediction: Prediction, max_kernel: int = 31) -> torch.Tensor | None:
    """Re-render the stack [F,3,H,W] from a prediction (None for relative depth without "rendered")."""
    rendered = prediction.extras.get("rendered")
    if rendered is not None:
        return rendered
    if prediction.depth_kind != "metric":
        return None
    from ..render import render_stack
    depth = prediction.depth_m.float().clamp_min(1e-3).view(1, 1, *prediction.depth_m.shape[-2:])
    # each frame with the window of its own largest σ (capped), as the optimiser and training render
    return render_stack(prediction.aif.float().unsqueeze(0).clamp(0, 1), depth, sample.camera,
                        kernel_size=max_kernel, window="per_image")[0]


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


_COLOR_MAX_SIDE_PX = 2048   # depth_color.png is a preview: photo-sized depth maps are area-averaged to this


def _depth_color(path: Path, depth: np.ndarray, kind: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    h, w = depth.shape
    if max(h, w) > _COLOR_MAX_SIDE_PX:
        import cv2
        s = _COLOR_MAX_SIDE_PX / max(h, w)
        h, w = max(1, round(h * s)), max(1, round(w * s))
        depth = cv2.resize(np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0), (w, h), interpolation=cv2.INTER_AREA)
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


EXPORTS = ("ply",)
"""Optional extra outputs of :func:`write_prediction` (``predict --export``)."""


def check_export(export, camera, name: str = "sample", kind: str | None = None) -> None:
    """Raise ValueError (one line naming the sample) when ``export`` asks for something the sample of
    ``camera`` (its :class:`focalstack.optics.FocalStackCamera`) or its prediction of depth ``kind``
    cannot give: a point cloud needs metric depth (known focus; ``kind`` not "relative_inverse") and
    the lens (focal length and pixel pitch, not placeholders). ``kind`` None: judged from the camera
    alone, before predicting."""
    for e in export:
        if e not in EXPORTS:
            raise ValueError(f"unknown export {e!r}; available: {', '.join(EXPORTS)}")
    if "ply" in export:
        where, cam = name or "sample", camera
        if kind == "relative_inverse" or (kind is None and not cam.focus_known):
            raise ValueError(f"{where}: --export ply needs metric depth, but with unknown focus distances the depth is "
                             "relative inverse depth, which has no metric scale")
        if not cam.lens_known:
            raise ValueError(f"{where}: --export ply needs the focal length and pixel size, but camera.json has "
                             "placeholders (lens_known: false)")


def write_prediction(out_dir: str | Path, sample: FocalStackSample | SampleFiles, prediction: Prediction,
                     meta: dict | None = None, inputs=(), export=()) -> Path:
    """Write one sample's outputs atomically into ``out_dir`` (see module doc). An existing
    ``out_dir`` is replaced only if it is empty or a prediction folder focalstack wrote;
    ``inputs``: paths the output must not be, contain or sit inside. ``export``: extra outputs from
    :data:`EXPORTS` ("ply" → points.ply; refused for relative depth, see :func:`check_export`).
    ``sample`` may be a :class:`focalstack.data.format.SampleFiles` (a photo-sized stack that was
    streamed): everything is written but the re-rendering error."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ..data.encoding import from_working
    from ..data.io import atomic_write_dir, write_image
    from ..optimize import recon_metrics

    out = Path(out_dir)
    hw = sample.size_hw
    depth = prediction.depth_m.detach().float().cpu()
    if tuple(depth.shape) != hw:
        raise ValueError(f"prediction depth is {tuple(depth.shape)} but the frames are {hw}")
    aif = prediction.aif.detach().float().cpu().clamp(0, 1)
    kind = prediction.depth_kind
    export = tuple(export or ())
    check_export(export, sample.camera, sample.name, kind)
    d = depth.numpy().astype(np.float32)
    # a photo-sized stack (SampleFiles: frames never held) has no full-resolution re-rendering
    rendered = render_prediction(sample, prediction) if sample.frames is not None else None
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
        write_image(tmp / "aif.png", from_working(aif, "srgb"))
        if sample.camera.encoding == "linear":   # RAW input: keep the linear light at 16 bit
            write_image(tmp / "aif.tif", from_working(aif, "linear"), 16)
        n_points = None
        if "ply" in export:
            from .pointcloud import prediction_points, write_ply
            n_points = write_ply(tmp / "points.ply", *prediction_points(depth, aif, sample.camera))
        vmax = None
        if recon is not None:
            vmax = float(max(np.percentile(err_map, 99), 1e-3))
            plt.imsave(tmp / "recon_error.png", err_map, cmap="inferno", vmin=0.0, vmax=vmax)
        (tmp / "recon_error.json").write_text(json.dumps(
            {**(recon or {"error": "no re-rendering available for this prediction" + (
                "" if sample.frames is not None else
                " (photo-sized stack, streamed: see meta.json recon_after for the working size's)")}),
             "map_png": "recon_error.png: mean |rendered − frame| over frames and channels, "
                        f"colour scale 0..{vmax}" if vmax else None}, indent=2) + "\n")
        extras = {k: v for k, v in prediction.extras.items() if k != "rendered"}
        m = {"sample": sample.name, "depth_kind": kind,
             "depth_units": "metres" if kind == "metric" else "relative inverse depth in [0,1], larger = nearer "
                                                                "(affine-ambiguous; focus distances unknown)",
             "depth_png": "uint16 millimetres" if kind == "metric" else "uint16 relative inverse depth x 65535",
             "size_hw": list(hw), "num_frames": sample.num_frames, "input_encoding": sample.camera.encoding,
             **({"points_ply": {"points": n_points, "units": "metres", "frame": "camera: x right, y down, z forward",
                                "focal_px": sample.camera.lens.focal_length_m / sample.camera.lens.pixel_size_m,
                                "principal_point_px": [(hw[1] - 1) / 2, (hw[0] - 1) / 2]}}
                if n_points is not None else {}),
             **_jsonable(extras), **(meta or {})}
        (tmp / "meta.json").write_text(json.dumps(_jsonable(m), indent=2) + "\n")
    return out
