"""RGB-D sources: all-in-focus images with metric depth, to synthesise focal stacks from.

One mechanism for every dataset: a source is an :class:`RGBDSource` — a list of
:class:`RGBDRecord` (name, image path, depth path, how to turn the depth file into metres) plus
the default camera for its native resolution. ``SOURCES`` maps a name to a builder
``builder(root, **options) -> RGBDSource``; :func:`get_source` is the one entry point.
Iterating a source yields ``(name, aif [3,H,W] float32 in [0,1], depth_m [H,W] float32)``,
invalid depth = 0.

Sources (roots default to ``<data root>/<folder>``, see :func:`default_data_root`):

* ``dslr_indoor`` — Carvalho et al. 2018 (``dfd_indoor_carvalho2018``): the f/8 photograph
  (nearly all-in-focus) with the Xtion depth (16-bit PNG, millimetres), paired by the folder's
  ``pairs.csv`` (nearest capture timestamp). File names are timestamps that differ between RGB
  and depth, so never pair by name or by sorted order. The f/2.8 image of each scene is kept in
  ``record.extra["rgb_f2_8"]``; :func:`dslr_pairs` lists all three paths per scene.
* ``middlebury`` — Middlebury 2014 Motorcycle, quarter resolution
  (``middlebury2014_motorcycle_quarter``): left image + left disparity (px, +inf/NaN invalid),
  ``Z = baseline·f/(disp + doffs)`` with the calib.json of the *downsampled* images.
* ``nyuv2`` — NYU Depth v2 labelled sample(s) (``nyuv2_sample_0045``): ``rgb_<id>.png`` +
  ``depth_<id>.png``, uint16 in units of 0.1 mm (÷ 1e4 → metres).
* ``folder`` — any folder of ``<name>.png|jpg|jpeg`` + ``<name>_depth.npy|png``. ``.npy`` depth is
  metres (times ``depth_scale`` if given); PNG depth needs ``depth_scale`` = metres per unit
  (e.g. 0.001 for millimetre PNGs) — there is no silent default. Depth 0/NaN = invalid.

Default synthesis cameras (at the native resolution; use ``camera.resized(f)`` after resizing):

* DSLR: :data:`DSLR_SYNTH_CAMERA` — the set's own 35 mm lens and ~36 µm pixel at 645×432
  (preset "dslr_indoor") at its real wide aperture f/2.8, focused at 0.8, 1.2, 1.7, 2.5, 4.0 m
  (≈ even in inverse depth). Over the 1st–99th depth percentiles of the set (0.72–7.8 m) the
  Gaussian σ stays ≤ 3.6 px (CoC ≤ 14.3 px); the rare spurious Xtion depths < 0.5 m get larger
  blur truncated by the render window. Depth range 0.5–10 m (the set's training range).
* Middlebury: :data:`MIDDLEBURY_SYNTH_CAMERA` — f = 50 mm with the pixel pitch that keeps the
  calibrated 994.978 px focal length (50.25 µm), f/1.4, focus 2.2–4.8 m over the scene's 2.1–5.0 m:
  σ ≤ 2.4 px.
* NYUv2: preset "nyuv2_dered" (the core paper's synthesis, defined at 320×240) resized to 640×480.
* folder: preset "procedural" (pass a camera that matches your data).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..optics.camera import FocalStackCamera
from ..optics.presets import get_preset
from ..optics.thin_lens import ThinLens
from .io import SampleError, read_image

DATA_FOLDERS = {
    "dslr_indoor": "dfd_indoor_carvalho2018",
    "middlebury": "middlebury2014_motorcycle_quarter",
    "nyuv2": "nyuv2_sample_0045",
}

DSLR_SYNTH_CAMERA = FocalStackCamera(
    ThinLens(35e-3, 2.8, 36e-6), (0.8, 1.2, 1.7, 2.5, 4.0), depth_range_m=(0.5, 10.0),
    source="focalstack DSLR-indoor synthesis: 35 mm, f/2.8, 36 µm at 645x432, focus 0.8/1.2/1.7/2.5/4.0 m")

MIDDLEBURY_SYNTH_CAMERA = FocalStackCamera(
    ThinLens(50e-3, 1.4, 50e-3 / 994.978), (2.2, 2.6, 3.1, 3.8, 4.8), depth_range_m=(2.0, 5.5),
    source="focalstack Middlebury synthesis: 50 mm, f/1.4, 50.25 µm (f = 994.978 px) at 741x500, focus 2.2-4.8 m")


def default_data_root() -> Path:
    """``$FOCALSTACK_DATA`` if set, else ``<repo>/../shared/data`` (next to the checkout)."""
    env = os.environ.get("FOCALSTACK_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for base in (here.parents[3], Path.cwd()):
        cand = (base / ".." / "shared" / "data").resolve()
        if cand.is_dir():
            return cand
    return (here.parents[3] / ".." / "shared" / "data").resolve()


# ---- records and the source ---------------------------------------------------------------------
@dataclass(frozen=True)
class RGBDRecord:
    """One RGB-D pair. depth_format: "png" / "npy" (value × depth_scale = metres) or
    "disparity_npz" (extra["calib"] holds baseline_mm, focal_length_px, doffs_px)."""

    name: str
    rgb: Path
    depth: Path
    depth_format: str
    depth_scale: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def read_depth_m(rec: RGBDRecord) -> torch.Tensor:
    """The record's depth as float32 [H,W] metres; invalid pixels (holes, inf disparity) = 0."""
    import cv2

    p = Path(rec.depth)
    if not p.is_file():
        raise SampleError(f"{p}: depth file not found")
    if rec.depth_format == "png":
        arr = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise SampleError(f"{p}: not a readable depth image")
        if arr.ndim == 3:
            arr = arr[..., 0]
        d = arr.astype(np.float64) * rec.depth_scale
    elif rec.depth_format == "npy":
        from .io import read_depth
        d = read_depth(p).numpy().astype(np.float64) * rec.depth_scale
    elif rec.depth_format == "disparity_npz":
        try:
            with np.load(p) as z:
                disp = z[z.files[0]].astype(np.float64)
        except (OSError, ValueError, IndexError) as e:
            raise SampleError(f"{p}: not a readable disparity .npz ({e})") from None
        c = rec.extra["calib"]
        with np.errstate(divide="ignore", invalid="ignore"):
            d = c["baseline_mm"] * c["focal_length_px"] / (disp + c["doffs_px"]) / 1000.0
    else:
        raise ValueError(f"{p}: unknown depth format {rec.depth_format!r}")
    d = np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(d))


@dataclass
class RGBDSource:
    """A named list of RGB-D records and the default camera of their native resolution."""

    name: str
    root: Path
    records: list[RGBDRecord]
    default_camera: FocalStackCamera

    def __len__(self) -> int:
        return len(self.records)

    def load(self, rec: RGBDRecord | int) -> tuple[str, torch.Tensor, torch.Tensor]:
        """(name, aif [3,H,W], depth_m [H,W]) of one record (checked to have the same size)."""
        if isinstance(rec, int):
            rec = self.records[rec]
        aif = read_image(rec.rgb)
        depth = read_depth_m(rec)
        if tuple(depth.shape) != tuple(aif.shape[1:]):
            raise SampleError(f"{rec.depth}: depth size {tuple(depth.shape)} differs from {rec.rgb}'s "
                              f"{tuple(aif.shape[1:])}")
        return rec.name, aif, depth

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        for rec in self.records:
            yield self.load(rec)


def _need_dir(root: Path, what: str) -> Path:
    root = Path(root)
    if not root.exists():
        raise SampleError(f"{root}: no such folder ({what})")
    if not root.is_dir():
        raise SampleError(f"{root}: not a folder ({what})")
    return root


def _safe_name(stem: str) -> str:
    return "".join(c if (c.isalnum() or c in "-_.") else "-" for c in stem)


# ---- DSLR indoor --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DSLRPair:
    """One DSLR-indoor scene: f/2.8 (defocused) and f/8 (≈ AIF) photographs, Xtion depth (mm)."""

    name: str
    rgb_f2_8: Path
    rgb_f8: Path
    depth: Path
    split: str
    dt_seconds: float


def dslr_pairs(root: str | Path | None = None, split: str | None = None) -> list[DSLRPair]:
    """The scenes of the DSLR indoor set, paired by ``pairs.csv`` (columns split, rgb_file,
    depth_file, dt_seconds), in csv order. ``split`` filters by the csv's split column.
    Depth PNGs are millimetres. Raises SampleError for a missing folder/csv/file."""
    root = _need_dir(Path(root) if root else default_data_root() / DATA_FOLDERS["dslr_indoor"], "DSLR indoor set")
    csv_path = root / "pairs.csv"
    if not csv_path.is_file():
        raise SampleError(f"{csv_path}: missing (the DSLR set must be paired by capture timestamp via "
                          "pairs.csv, never by sorted file names)")
    out = []
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"split", "rgb_file", "depth_file"}
        if not need <= set(reader.fieldnames or ()):
            raise SampleError(f"{csv_path}: needs columns {sorted(need)}, has {reader.fieldnames}")
        for i, row in enumerate(reader, start=2):
            sp = row["split"].strip()
            if split is not None and sp != split:
                continue
            base = root / sp
            pair = DSLRPair(name=_safe_name(Path(row["rgb_file"]).stem), rgb_f2_8=base / "rgb_f2.8" / row["rgb_file"],
                            rgb_f8=base / "rgb_f8" / row["rgb_file"], depth=base / "depth_mm" / row["depth_file"],
                            split=sp, dt_seconds=float(row.get("dt_seconds") or "nan"))
            for p in (pair.rgb_f2_8, pair.rgb_f8, pair.depth):
                if not p.is_file():
                    raise SampleError(f"{csv_path}:{i}: {p} not found")
            out.append(pair)
    if not out:
        raise SampleError(f"{csv_path}: no pairs" + (f" in split {split!r}" if split else ""))
    return out


def dslr_indoor_source(root=None, split: str | None = None, **_) -> RGBDSource:
    root = Path(root) if root else default_data_root() / DATA_FOLDERS["dslr_indoor"]
    recs = [RGBDRecord(p.name, p.rgb_f8, p.depth, "png", 1e-3,
                       extra={"rgb_f2_8": p.rgb_f2_8, "split": p.split, "dt_seconds": p.dt_seconds})
            for p in dslr_pairs(root, split)]
    return RGBDSource("dslr_indoor", root, recs, DSLR_SYNTH_CAMERA)


# ---- Middlebury 2014 ----------------------------------------------------------------------------
def middlebury_source(root=None, **_) -> RGBDSource:
    """Every ``<scene>_disp.npz`` with a ``<scene>_left.png`` and the folder's calib.json."""
    root = _need_dir(Path(root) if root else default_data_root() / DATA_FOLDERS["middlebury"], "Middlebury folder")
    calib_path = root / "calib.json"
    try:
        calib = json.loads(calib_path.read_text())
        calib = {k: float(calib[k]) for k in ("baseline_mm", "focal_length_px", "doffs_px")}
    except FileNotFoundError:
        raise SampleError(f"{calib_path}: missing calibration") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise SampleError(f"{calib_path}: bad calibration ({type(e).__name__}: {e})") from None
    recs = []
    for disp in sorted(root.glob("*_disp.npz")):
        scene = disp.name[: -len("_disp.npz")]
        left = root / f"{scene}_left.png"
        if left.is_file():
            recs.append(RGBDRecord(scene, left, disp, "disparity_npz", extra={"calib": calib}))
    if not recs:
        raise SampleError(f"{root}: no <scene>_disp.npz + <scene>_left.png pairs")
    return RGBDSource("middlebury", root, recs, MIDDLEBURY_SYNTH_CAMERA)


# ---- NYUv2 ----------------------------------------------------------------------------------------
NYU_DEPTH_SCALE = 1e-4  # depth PNG units: 0.1 mm


def nyuv2_source(root=None, **_) -> RGBDSource:
    """``rgb_<id>.png`` + ``depth_<id>.png`` (uint16, 0.1 mm). Default camera: "nyuv2_dered"
    resized from its 320-px width to the images' width."""
    root = _need_dir(Path(root) if root else default_data_root() / DATA_FOLDERS["nyuv2"], "NYUv2 folder")
    recs = []
    for rgb in sorted(root.glob("rgb_*.png")):
        ident = rgb.stem[len("rgb_"):]
        dep = root / f"depth_{ident}.png"
        if dep.is_file():
            recs.append(RGBDRecord(f"nyuv2_{ident}", rgb, dep, "png", NYU_DEPTH_SCALE))
    if not recs:
        raise SampleError(f"{root}: no rgb_<id>.png + depth_<id>.png pairs")
    width = _image_width(recs[0].rgb)
    return RGBDSource("nyuv2", root, recs, get_preset("nyuv2_dered").resized(width / 320.0))


def _image_width(path: Path) -> int:
    from PIL import Image
    with Image.open(path) as im:
        return int(im.size[0])


# ---- generic folder -------------------------------------------------------------------------------
def folder_source(root, depth_scale: float | None = None, **_) -> RGBDSource:
    """Pairs ``<name>.<png|jpg|jpeg>`` + ``<name>_depth.<npy|png>`` in ``root`` (sorted by name).

    ``.npy`` depth is metres × (depth_scale or 1); PNG depth needs ``depth_scale`` (metres per unit)."""
    if root is None:
        raise SampleError("folder source: --input FOLDER is required")
    root = _need_dir(Path(root), "RGB-D folder")
    if depth_scale is not None and not (depth_scale > 0 and math.isfinite(depth_scale)):
        raise ValueError(f"depth scale must be positive, got {depth_scale}")
    recs = []
    for img in sorted(root.iterdir()):
        if img.suffix.lower() not in (".png", ".jpg", ".jpeg") or img.stem.endswith("_depth"):
            continue
        for ext in (".npy", ".png"):
            dep = root / f"{img.stem}_depth{ext}"
            if dep.is_file():
                break
        else:
            continue
        if ext == ".png" and depth_scale is None:
            raise SampleError(f"{dep}: PNG depth needs --depth-scale (metres per unit, e.g. 0.001 for millimetres)")
        recs.append(RGBDRecord(_safe_name(img.stem), img, dep, ext[1:], depth_scale or 1.0))
    if not recs:
        raise SampleError(f"{root}: no <name>.png|jpg + <name>_depth.npy|png pairs")
    return RGBDSource("folder", root, recs, get_preset("procedural"))


SOURCES: dict[str, Callable[..., RGBDSource]] = {
    "dslr_indoor": dslr_indoor_source,
    "middlebury": middlebury_source,
    "nyuv2": nyuv2_source,
    "folder": folder_source,
}


def get_source(name: str, root: str | Path | None = None, **options) -> RGBDSource:
    """Build a registered RGB-D source (``root`` None = its folder under :func:`default_data_root`)."""
    try:
        builder = SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown RGB-D source {name!r}; known: {', '.join(SOURCES)}") from None
    return builder(root, **options)


def iter_rgbd(name: str, root: str | Path | None = None, **options) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """Yield (name, aif [3,H,W], depth_m [H,W]) of a registered source."""
    yield from get_source(name, root, **options)


__all__ = ["RGBDRecord", "RGBDSource", "DSLRPair", "SOURCES", "DSLR_SYNTH_CAMERA", "MIDDLEBURY_SYNTH_CAMERA",
           "default_data_root", "dslr_pairs", "get_source", "iter_rgbd", "read_depth_m"]
