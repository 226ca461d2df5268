"""The view a training stack is read at: the depth range and the working scale ``predict`` gives it.

``predict`` (``dfd`` and every checkpoint that reads its range from the camera) searches the depths
a stack's own defocus evidence points at, and brings blur beyond the pretraining band (σ ≤ 5 px)
down to a working scale (:func:`focalstack.inference.scale.working_stack`). A network fine-tuned
on a camera has to be trained on those same inputs: trained over the stated range at full size, it
learns on cost volumes that ``predict`` never shows it, and its anchor labels (the initial
network's depth, ``--teacher refine``) are the ones the stated range spoils. On the NYUv2
camera stated as 0.1–10 m, for rooms of about 1–5 m, the shipped network scores δ1 0.56 over the
stated range and 0.95 over the evidence range, and a default 12-minute fine-tune on that camera
scored δ1 0.543 without the views and 0.951 with them (README, "Any camera").

So a run whose range comes from the cameras (no ``--depth-range``, no ``--stated-range``) reads
every training and validation stack once through the same function as ``predict``, with one
addition: the scale never makes a stack smaller than the training crop (training on whole frames,
``--crop 0 0``, whose batches need equal sizes: every stack keeps its size, only the range is
read, and ``predict`` may still run such a stack at a working scale). The views are kept in
``RUN/views.json`` (``{"settings": …, "train": {name: view}, "val": {name: view}}``), so a resumed
run reads the views it started with. The dataset resizes each stack by its scale before cropping
(:meth:`focalstack.data.dataset.FocalStackDataset.set_scales`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["StackView", "stack_view", "dataset_views", "view_settings", "read_views", "write_views", "VIEWS_FILE"]

VIEWS_FILE = "views.json"


@dataclass(frozen=True)
class StackView:
    """``depth_range_m`` (near, far) metres the model reads the stack over, and the ``scale`` (≤ 1) it
    is resized by first (1: its own size)."""

    depth_range_m: tuple[float, float]
    scale: float = 1.0

    def to_dict(self) -> dict:
        return {"depth_range_m": [float(x) for x in self.depth_range_m], "scale": float(self.scale)}

    @classmethod
    def from_dict(cls, d: dict) -> "StackView":
        return cls(tuple(float(x) for x in d["depth_range_m"]), float(d.get("scale", 1.0)))


def stack_view(frames, camera, stated_range_m: tuple[float, float],
               min_size_hw: tuple[int, int] | None = None) -> StackView:
    """The view ``predict`` reads one stack [F,3,H,W] at (:func:`focalstack.inference.scale.working_stack`
    over ``stated_range_m``), its scale never bringing the stack below ``min_size_hw`` (h, w) px (the
    training crop). A stack without readable evidence (placeholder lens or focus, identical frames)
    keeps the stated range at its own size."""
    from ..classical.dfd import reads_evidence
    from ..inference.scale import working_stack
    ws = working_stack(frames.float(), camera, stated_range_m, read_evidence=reads_evidence(camera),
                       min_size_hw=min_size_hw)
    return StackView(tuple(float(x) for x in ws.depth_range_m), ws.scale)


def view_settings(crop_size: tuple[int, int] | None) -> dict:
    """What a view depends on besides the stack: a cache made with other settings is not reused. (The
    light it was read in is the run's own: a run refuses to resume in the other light.)"""
    from ..classical import dfd
    from ..inference.scale import MIN_SCALE_CHANGE, MIN_WORKING_SIDE_PX, trained_blur_px
    return {"crop_size": list(crop_size) if crop_size else None, "band_px": trained_blur_px(),
            "min_side_px": MIN_WORKING_SIDE_PX, "min_scale_change": MIN_SCALE_CHANGE,
            "quantile": dfd.EVIDENCE_RANGE_QUANTILE, "min_share": dfd.EVIDENCE_RANGE_MIN_SHARE,
            "min_range_change": dfd.MIN_RANGE_CHANGE, "hypotheses": dfd.DEFAULT_HYPOTHESES}


def dataset_views(paths: Sequence[Path], keys: Sequence[str], stated: Sequence[tuple[float, float]],
                  crop_size: tuple[int, int] | None, cached: dict | None = None, progress: bool = False,
                  desc: str = "views", keep_size: bool = False) -> list[StackView]:
    """One :class:`StackView` per sample folder in ``paths`` (its key in ``keys``, its stated range in
    ``stated``), never smaller than ``crop_size``; ``keep_size``: every stack at its own size (training on
    whole frames, whose batches need equal sizes). A view found in ``cached`` (key → view dict, from
    ``RUN/views.json``) is taken as it is."""
    from ..data import load_sample
    cached = cached or {}
    todo = [i for i, k in enumerate(keys) if k not in cached]
    bar = None
    if progress and todo:
        from tqdm import tqdm
        bar = tqdm(total=len(paths), initial=len(paths) - len(todo), desc=desc, unit="stack", file=sys.stderr,
                   dynamic_ncols=True)
    out: list[StackView | None] = [StackView.from_dict(cached[k]) if k in cached else None for k in keys]
    for i in todo:
        s = load_sample(paths[i], load_depth=False, load_aif=False)
        out[i] = stack_view(s.frames, s.camera, stated[i], tuple(s.size_hw) if keep_size else crop_size)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out   # type: ignore[return-value]


def read_views(path: Path, settings: dict) -> dict | None:
    """The cached views in ``path`` ({"train": {key: view}, "val": {key: view}}), None without the file;
    a file made with other ``settings`` is an error naming it (a resumed run reads the views it began with)."""
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    if d.get("settings") != settings:
        raise ValueError(f"{path}: views made with other settings {d.get('settings')} (this version: {settings}); "
                         "resume with the version that made them, or --restart")
    return d


def write_views(path: Path, settings: dict, train: dict, val: dict) -> None:
    from ..data.io import atomic_write_file
    atomic_write_file(path, json.dumps({"settings": settings, "train": train, "val": val}, indent=1) + "\n")
