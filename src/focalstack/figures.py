"""Figure helpers (matplotlib, Agg canvas — no display and no global pyplot state is touched).

Every writer renders to a temporary file next to the target and renames it, so an interrupted
run never leaves a truncated image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` atomically (:func:`focalstack.data.io.atomic_write_file`); format from the suffix."""
    import io

    from .data.io import atomic_write_file

    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".").lower() or "png", dpi=dpi, bbox_inches="tight")
    return atomic_write_file(path, buf.getvalue())


def _rgb(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()


def _off(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def plot_sample(sample, path: str | Path, coc: bool = True, max_frames: int | None = None,
                title: str | None = None) -> Path:
    """One figure of a :class:`~focalstack.data.FocalStackSample`: the frames (row 1, titled with
    focus distance and f-number), the AIF and the depth in metres with a colour bar (row 2), and
    per-frame CoC diameter maps in pixels from the camera and the depth (row 3, one shared colour
    bar; invalid depth is grey). Missing AIF/depth panels are left out."""
    frames = sample.frames
    cam = sample.camera
    nf = sample.num_frames if max_frames is None else min(max_frames, sample.num_frames)
    idx = list(np.linspace(0, sample.num_frames - 1, nf).round().astype(int)) if nf < sample.num_frames \
        else list(range(nf))
    has_depth = sample.depth_m is not None
    rows = 1 + int(has_depth or sample.aif is not None) + int(coc and has_depth)
    cols = max(nf, 2)
    h, w = sample.size_hw
    cell = 2.6
    fig = _figure((cols * cell * max(w / h, 0.5) + 0.8, rows * cell + 0.5))
    gs = fig.add_gridspec(rows, cols)
    fns = cam.frame_f_numbers()
    for j, k in enumerate(idx):
        ax = fig.add_subplot(gs[0, j])
        ax.imshow(_rgb(frames[k]))
        ax.set_title(f"frame {k}: {cam.focus_distances_m[k]:g} m, f/{fns[k]:g}", fontsize=8)
        _off(ax)
    r = 1
    if has_depth or sample.aif is not None:
        c = 0
        if sample.aif is not None:
            ax = fig.add_subplot(gs[r, c])
            ax.imshow(_rgb(sample.aif))
            ax.set_title("all-in-focus", fontsize=8)
            _off(ax)
            c += 1
        if has_depth:
            d = sample.depth_m.detach().cpu().float().numpy()
            valid = np.isfinite(d) & (d > 0)
            dm = np.ma.masked_where(~valid, d)
            ax = fig.add_subplot(gs[r, c])
            cmap = _cmap("turbo")
            im = ax.imshow(dm, cmap=cmap, vmin=float(d[valid].min()) if valid.any() else 0,
                           vmax=float(d[valid].max()) if valid.any() else 1)
            ax.set_title("depth", fontsize=8)
            _off(ax)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).set_label("m", fontsize=8)
        r += 1
    if coc and has_depth:
        d = sample.depth_m.detach().cpu().float()
        valid = (torch.isfinite(d) & (d > 0)).numpy()
        cmaps = cam.coc_px(torch.where(torch.from_numpy(valid), d, torch.ones_like(d)).view(1, 1, h, w).double())
        cmaps = cmaps[0, :, 0].numpy()  # [F,H,W]
        vmax = float(np.percentile(cmaps[idx][:, valid], 99.5)) if valid.any() else 1.0  # robust to outliers
        cmap = _cmap("magma")
        im = None
        axes = []
        for j, k in enumerate(idx):
            ax = fig.add_subplot(gs[r, j])
            im = ax.imshow(np.ma.masked_where(~valid, cmaps[k]), cmap=cmap, vmin=0, vmax=max(vmax, 1e-6))
            ax.set_title(f"CoC @ {cam.focus_distances_m[k]:g} m", fontsize=8)
            _off(ax)
            axes.append(ax)
        fig.colorbar(im, ax=axes, fraction=0.02, pad=0.01).set_label("CoC diameter [px]", fontsize=8)
    if title or sample.name:
        fig.suptitle(title or sample.name, fontsize=9)
    return save_figure(fig, path)


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="0.6")



def _read_prediction(pred_dir: Path):
    """(depth [H,W] or None, aif HxWx3 or None, depth_kind) of one prediction folder."""
    import json

    from .data.io import read_image

    depth = aif = None
    kind = "metric"
    if (pred_dir / "depth.npy").is_file():
        depth = np.load(pred_dir / "depth.npy").astype(np.float32)
    if (pred_dir / "aif.png").is_file():
        aif = _rgb(read_image(pred_dir / "aif.png"))
    if (pred_dir / "meta.json").is_file():
        try:
            kind = json.loads((pred_dir / "meta.json").read_text()).get("depth_kind", "metric")
        except ValueError:
            pass
    return depth, aif, kind


def plot_predictions(data_root: str | Path, predictions: dict[str, str | Path], path: str | Path,
                     max_samples: int = 3, max_rel_error: float = 0.5) -> Path:
    """Compare methods on the first ``max_samples`` samples of a dataset folder.

    One row per sample: the middle input frame, the ground-truth AIF and depth, then for every
    method (``{label: prediction root}``, each holding ``<sample name>/depth.npy`` and ``aif.png``
    as written by :func:`focalstack.inference.write_prediction`) its depth — on the ground truth's
    colour scale, titled with its AbsRel —, its error map |d̂ − d|/d (relative depth error, colour
    scale 0 … ``max_rel_error``, black where the ground truth is invalid) and its AIF. Relative
    (non-metric) depth predictions use their own scale and get no error map. Missing predictions
    are shown as empty panels."""
    from .data.format import list_samples, load_sample

    samples = [load_sample(d) for d in list_samples(data_root)[:max_samples]]
    labels = list(predictions)
    cols = 3 + 3 * len(labels)
    h, w = samples[0].size_hw
    cell = 2.4
    fig = _figure((cols * cell * max(w / h, 0.5) + 1.0, len(samples) * cell + 0.6))
    # two narrow extra columns hold the depth and error colour bars of each row
    gs = fig.add_gridspec(len(samples), cols + 2, width_ratios=[1.0] * cols + [0.06, 0.06], wspace=0.35)
    cmap = _cmap("turbo")
    for r, s in enumerate(samples):
        def panel(c, title):
            ax = fig.add_subplot(gs[r, c])
            ax.set_title(title, fontsize=7)
            _off(ax)
            return ax
        mid = s.num_frames // 2
        panel(0, f"{s.name}\nframe {mid} ({s.camera.focus_distances_m[mid]:g} m)").imshow(_rgb(s.frames[mid]))
        ax = panel(1, "true AIF")
        if s.aif is not None:
            ax.imshow(_rgb(s.aif))
        gt = None if s.depth_m is None else s.depth_m.numpy()
        valid = None if gt is None else np.isfinite(gt) & (gt > 0)
        lo, hi = (float(gt[valid].min()), float(gt[valid].max())) if gt is not None and valid.any() else (0.0, 1.0)
        ax = panel(2, "true depth [m]")
        im = None
        if gt is not None:
            im = ax.imshow(np.ma.masked_where(~valid, gt), cmap=cmap, vmin=lo, vmax=hi)
        err_im = None
        for j, label in enumerate(labels):
            depth, aif, kind = _read_prediction(Path(predictions[label]) / s.name)
            title = label
            ax = fig.add_subplot(gs[r, 3 + 3 * j])
            _off(ax)
            ax_err = panel(4 + 3 * j, f"{label}\n|error| / depth")
            if depth is not None and depth.shape == (h, w):
                if kind == "metric":
                    ax.imshow(depth, cmap=cmap, vmin=lo, vmax=hi)
                    if gt is not None and valid.any():
                        ok = valid & np.isfinite(depth)
                        rel = np.zeros_like(gt, dtype=np.float64)
                        rel[ok] = np.abs(depth[ok] - gt[ok]) / gt[ok]
                        absrel = float(rel[ok].mean()) if ok.any() else float("nan")
                        title += f"\ndepth, AbsRel {absrel:.3f}"
                        err_cmap = _cmap("magma").with_extremes(bad="black")  # black: invalid ground truth
                        err_im = ax_err.imshow(np.ma.masked_where(~ok, rel), cmap=err_cmap,
                                               vmin=0.0, vmax=max_rel_error)
                else:
                    ax.imshow(depth, cmap=cmap)
                    title += "\nrelative inverse depth"
            else:
                title += "\n(no depth)"
            ax.set_title(title, fontsize=7)
            ax = panel(5 + 3 * j, f"{label}\nAIF" if aif is not None else f"{label}\n(no AIF)")
            if aif is not None:
                ax.imshow(aif)
        for k, (mappable, label) in enumerate(((im, "depth [m]"), (err_im, "|error| / depth"))):
            if mappable is not None:
                cax = fig.add_subplot(gs[r, cols + k])
                fig.colorbar(mappable, cax=cax).set_label(label, fontsize=7)
                cax.tick_params(labelsize=6)
    return save_figure(fig, path)


__all__ = ["plot_sample", "plot_predictions", "save_figure"]
