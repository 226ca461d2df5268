"""What every benchmark reader shares: the item a reader yields, the writer of one imported
sample, and the thin-lens camera of a shift-and-add refocused light field (DDFF-12, HCI 4D).

A reader lists :class:`BenchmarkItem` s (split, name, and a ``load`` that reads the files and
returns a :class:`LoadedSample` only when called), so that a resumed import skips finished samples
without reading them. :func:`save_loaded` writes one sample folder atomically through
:func:`focalstack.data.format.save_sample`, plus, where the dataset has them:

* ``disparity.npy`` — float32 [H,W] disparity in **pixels** as the dataset defines it, NaN = no
  ground truth. Scored by ``focalstack eval --target disparity``.
* ``import.json`` — provenance (source file, index, protocol notes) and, with a disparity, the map
  from metric depth to it: ``"disparity": {"px_per_inverse_m": K, "offset_px": c}`` meaning
  ``disparity_px = K / depth_m + c`` (DDFF-12: c = 0; HCI: disparity 0 at the focus plane).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...optics.camera import FocalStackCamera
from ...optics.thin_lens import ThinLens
from ..format import FocalStackSample, save_sample
from ..io import MARKER, SampleError, atomic_write_dir

__all__ = ["BenchmarkItem", "LoadedSample", "save_loaded", "refocus_psf_scale", "refocus_camera", "SampleError",
           "open_hdf5"]


@dataclass
class LoadedSample:
    """One imported sample in memory.

    sample: frames [F,3,H,W] float32 in [0,1], camera, depth_m [H,W] float32 metres (0 = invalid)
        or None, aif [3,H,W] or None.
    disparity: [H,W] float32 pixels (NaN = invalid) or None.
    provenance: JSON-able dict written to import.json (with ``disparity`` conversion if any).
    bit_depth: 8 or 16, the bit depth the source images had.
    """

    sample: FocalStackSample
    disparity: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    bit_depth: int = 8


@dataclass
class BenchmarkItem:
    """One sample a reader found: ``OUT/<split>/<name>`` (``OUT/<name>`` when split is "")."""

    split: str
    name: str
    load: Callable[[], LoadedSample]

    def out_dir(self, root: Path) -> Path:
        return root / self.split / self.name if self.split else root / self.name


def save_loaded(loaded: LoadedSample, out_dir: str | Path, inputs: Sequence = ()) -> Path:
    """Write ``loaded`` as one sample folder, atomically: the sample through
    :func:`focalstack.data.format.save_sample` (staged inside the temporary folder), then
    ``disparity.npy`` and ``import.json`` beside it, then one rename. An existing ``out_dir`` is
    replaced only if focalstack wrote it as a sample (:func:`focalstack.data.io.atomic_write_dir`)."""
    out = Path(out_dir)
    with atomic_write_dir(out, "sample", inputs) as tmp:
        staged = save_sample(loaded.sample, tmp / "staged", bit_depth=loaded.bit_depth, inputs=inputs)
        for p in staged.iterdir():
            if p.name == MARKER:
                p.unlink()
            else:
                p.rename(tmp / p.name)
        staged.rmdir()
        if loaded.disparity is not None:
            d = np.asarray(loaded.disparity, dtype=np.float32)
            if d.shape != tuple(loaded.sample.frames.shape[-2:]):
                hw = tuple(loaded.sample.frames.shape[-2:])
                raise SampleError(f"{out}: disparity is {d.shape} but frames are {hw}")
            np.save(tmp / "disparity.npy", d)
        if loaded.provenance:
            (tmp / "import.json").write_text(json.dumps(loaded.provenance, indent=2) + "\n")
    return out


def open_hdf5(path: Path, what: str):
    """``h5py.File(path, "r")`` with one-line errors: missing file, or not an HDF5 file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found ({what})")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise SampleError(f"{path}: not an HDF5 file ({what} expected)") from None


# ---- the camera of a refocused light field -----------------------------------------------------------
def refocus_psf_scale(n_views: int) -> float:
    """σ per pixel of CoC diameter for shift-and-add over ``n_views`` × ``n_views`` views.

    A point whose disparity differs from the refocus disparity by Δ (px between neighbouring views)
    lands on n equally spaced positions per axis, spanning (n−1)·|Δ| px: that span is the CoC
    diameter, and the per-axis standard deviation of the n positions is |Δ|·sqrt((n²−1)/12).
    So σ = sqrt((n+1) / (12·(n−1))) · CoC — 0.3227 for 9 views (a uniform disk would give 0.25)."""
    if n_views < 2:
        raise ValueError(f"refocusing needs at least 2 views per axis, got {n_views}")
    return math.sqrt((n_views + 1) / (12.0 * (n_views - 1)))


def refocus_camera(f_px: float, baseline_m: float, n_views: int, focus_m: Sequence[float],
                   depth_range_m: tuple[float, float] | None, focal_length_m: float, source: str) -> FocalStackCamera:
    """The thin-lens camera whose blur equals shift-and-add refocusing of a light field.

    Views ``baseline_m`` apart on an n × n grid, focal length ``f_px`` pixels: a point at depth d
    has disparity δ = b·f_px / d (+ a constant) between neighbours, and refocusing at the focus
    distance d_k spreads it over a CoC of (n−1)·b·f_px·|1/d − 1/d_k| pixels — a thin lens with
    aperture A = (n−1)·b. focalstack's thin lens gives (f/N)·f_px·|1/d − 1/d_k|·d_k/(d_k − f), so
    each frame gets its own f-number N_k = f·d_k / (A·(d_k − f)) and the CoC in pixels is exact for
    any focal length (``focal_length_m`` only names the lens; the pixel size is f / f_px).
    ``psf_scale`` is :func:`refocus_psf_scale` (the σ of the n-point grid)."""
    if not (f_px > 0 and baseline_m > 0):
        raise ValueError(f"focal length {f_px} px and baseline {baseline_m} m must be positive")
    aperture = (n_views - 1) * baseline_m
    f = float(focal_length_m)
    fns = tuple(f * d / (aperture * (d - f)) for d in focus_m)
    lens = ThinLens(f, f / aperture, f / f_px, refocus_psf_scale(n_views))
    return FocalStackCamera(lens, tuple(float(d) for d in focus_m), fns, depth_range_m, source=source)
