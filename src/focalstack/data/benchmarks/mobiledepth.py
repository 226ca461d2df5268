"""Mobile Depth — "Depth from Focus with Your Mobile Phone" (Suwajanakorn, Hernandez & Seitz,
CVPR 2015): real phone focal stacks, no ground-truth depth.

**The files** (the authors' download, as DDFS lays it out): the aligned frames
``Aligned/Figure*/<scene>/a00.jpg, a01.jpg, …`` and per scene ``calibration/<scene>/calibrated.txt``
with one line per frame, ``focus_distance aperture``, for frame ``aNN`` on line NN+1, then one last
line holding the focal length. Four scenes have another name under ``calibration/``:
``zeromotion`` → ``GT``, ``largemotion`` → ``GTLarge``, ``smallmotion`` → ``GTSmall``,
``metals`` → ``metal``. A ``calibrated.txt`` in the scene folder itself is used first. PATH may be
the download root (every scene found below it is imported to ``OUT/<scene>``) or one scene folder.

**Units and sign convention.** calibrated.txt comes from the authors' self-calibration. Focus
distances and the focal length share one arbitrary length unit, positive in front of the lens
(larger = farther; a value ≤ 0 is refused); DFV and DEReD read the unit as inches and divide by
39.37 (``--unit-scale``, default 1/39.37 m per unit; DDFS instead scales by 0.05 to its training
range). The aperture is the aperture diameter **in pixels** of the frames: the CoC diameter in
pixels of a point at distance d is ``aperture · |d − d_f| / d · f / (d_f − f)`` (DDFS's reading of
the file), which is invariant to the length unit. camera.json therefore holds the scaled focal
length and focus distances, a nominal f/2, and the pixel pitch f / (2 · aperture) that makes
f / (N · pixel) equal the calibrated aperture — the blur in pixels, the only thing the model sees,
is exact; the pitch itself is not a measured sensor value. Frames are ordered by their calibrated
focus (nearest first), never by file order: the file order runs the other way in some scenes
(DEReD reverses ``metals`` by hand), which needs no special case here.

**Import** goes through ``focalstack import`` (:func:`focalstack.data.importer.import_photos`) with
the calibrated focus, focal length, f-number and pixel pitch: the ``a*.jpg`` are already aligned, so
they are not re-aligned unless ``--align`` is given. A scene without calibrated.txt — such as the
unaligned frames in ``shared/data/mobile_depth_subset`` — is imported exactly as ``focalstack
import`` does it without focus information: ECC alignment, placeholder focus with
``focus_known: false`` (``predict --method optimize`` then gives relative inverse depth), frames
assumed near → far in file order.

**Ground truth**: none in the release (the core paper evaluates Mobile Depth only qualitatively and
calls its camera parameters unknown — calibrated.txt is the authors' estimate, not a measurement).
DDFS distributes depth maps for 11 scenes separately (``depth/<calibration scene>/depth.csv``,
comma-separated, in the calibration unit — the unit its script scales like the focus); when such a
file is found (in the scene folder or as ``depth/<scene>/depth.csv`` above it) it becomes
``depth.npy`` (× ``--unit-scale``, cropped like the frames).
"""

from __future__ import annotations

import json
import math
import re
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..format import load_sample
from ..photo_meta import PHOTO_SUFFIXES
from .common import BenchmarkItem, LoadedSample, SampleError

NAME = "mobiledepth"
OPTIONS = ("unit_scale", "align")
DEFAULT_UNIT_SCALE = 1.0 / 39.37
NOMINAL_F_NUMBER = 2.0
CALIBRATION_NAMES = {"zeromotion": "GT", "largemotion": "GTLarge", "smallmotion": "GTSmall", "metals": "metal"}
ALIGNED_RE = re.compile(r"^a(\d+)\.jpe?g$", re.IGNORECASE)


def parse_calibrated(path: Path) -> tuple[list[float], list[float], float]:
    """calibrated.txt → (focus distances, apertures (px), focal length), in the file's unit; one per frame."""
    path = Path(path)
    try:
        lines = [(i, ln.split()) for i, ln in enumerate(path.read_text().splitlines(), start=1) if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise SampleError(f"{path}: not a readable text file ({e})") from None
    if len(lines) < 3:
        raise SampleError(f"{path}: needs one 'focus_distance aperture' line per frame (≥ 2) and a last line "
                          "with the focal length")
    focus, aperture = [], []
    for i, parts in lines[:-1]:
        try:
            fd, ap = float(parts[0]), float(parts[1])
        except (IndexError, ValueError):
            raise SampleError(f"{path}:{i}: expected 'focus_distance aperture', got {' '.join(parts)!r}") from None
        if not (math.isfinite(fd) and fd > 0 and math.isfinite(ap) and ap > 0):
            raise SampleError(f"{path}:{i}: focus distance and aperture must be positive numbers, got {fd:g} {ap:g}")
        focus.append(fd)
        aperture.append(ap)
    i, parts = lines[-1]
    try:
        focal = float(parts[0]) if len(parts) == 1 else float("nan")
    except ValueError:
        focal = float("nan")
    if not (math.isfinite(focal) and focal > 0):
        raise SampleError(f"{path}:{i}: the last line must hold the focal length alone, got {' '.join(parts)!r}")
    if min(focus) <= focal:
        raise SampleError(f"{path}: a focus distance ({min(focus):g}) is not beyond the focal length ({focal:g})")
    return focus, aperture, focal


def _photos(folder: Path) -> list[Path]:
    from ..photo_meta import _natural_key

    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES
                   and not p.name.startswith(".")), key=_natural_key)


def _frames(folder: Path) -> tuple[list[Path], bool]:
    """The scene's frames and whether they are the authors' aligned ``aNN.jpg`` (sorted by NN)."""
    photos = _photos(folder)
    aligned = sorted((int(m.group(1)), p) for p in photos if (m := ALIGNED_RE.match(p.name)))
    if aligned:
        return [p for _, p in aligned], True
    return photos, False


def _find_up(scene: Path, root: Path, sub: str, names: list[str], fname: str) -> Path | None:
    """``<scene>/<fname>``, else ``<ancestor>/<sub>/<name>/<fname>`` for the scene's ancestors up to
    ``root``, and at least 3 levels up (``Aligned/Figure*/<scene>`` given alone still finds the
    download's ``calibration/``)."""
    if (scene / fname).is_file():
        return scene / fname
    here, top = scene.resolve(), root.resolve()
    ups = [scene, *here.parents]
    depth = len(here.relative_to(top).parts) if here.is_relative_to(top) else 0
    for d in ups[:max(depth, 3) + 1]:
        for n in names:
            cand = d / sub / n / fname
            if cand.is_file():
                return cand
    return None


def find_scenes(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: Mobile Depth folder not found")
    if len(_frames(root)[0]) >= 2:
        return [root]
    skip = {"calibration", "depth"}
    scenes = [d for d in sorted(root.rglob("*"))
              if d.is_dir() and not skip & set(d.relative_to(root).parts) and len(_frames(d)[0]) >= 2]
    if not scenes:
        raise SampleError(f"{root}: no scene folders (with aNN.jpg frames, or ≥ 2 photos) found")
    names = [d.name for d in scenes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SampleError(f"{root}: two scene folders are named {dup[0]!r}; import them one at a time")
    return scenes


def load(scene: Path, root: Path, name: str, unit_scale: float, align: bool) -> LoadedSample:
    from ..importer import import_photos

    frames, aligned = _frames(scene)
    calib_names = [scene.name] + ([CALIBRATION_NAMES[scene.name]] if scene.name in CALIBRATION_NAMES else [])
    calib = _find_up(scene, root, "calibration", calib_names, "calibrated.txt")
    depth_csv = _find_up(scene, root, "depth", calib_names, "depth.csv")
    do_align = align or not aligned
    prov_extra: dict = {"dataset": "mobiledepth", "scene": scene.name, "aligned_frames": aligned}
    with tempfile.TemporaryDirectory(prefix="focalstack-mobiledepth-") as td:
        links = Path(td) / "photos"
        links.mkdir()
        for p in frames:
            (links / p.name).symlink_to(p.resolve())
        out = Path(td) / "sample"
        if calib is not None:
            focus, apertures, focal = parse_calibrated(calib)
            if len(focus) != len(frames):
                raise SampleError(f"{calib}: {len(focus)} frame lines but {scene} has {len(frames)} frames "
                                  f"({frames[0].name} … {frames[-1].name})")
            f_m = focal * unit_scale
            a_ref = statistics.median(apertures)
            pixel_m = f_m / (NOMINAL_F_NUMBER * a_ref)
            import_photos(links, out, focus=[x * unit_scale for x in focus], focal_length_mm=f_m * 1e3,
                          f_number=NOMINAL_F_NUMBER, pixel_size_um=pixel_m * 1e6, align=do_align)
            prov_extra.update(calibration=str(calib.resolve()), unit_scale_m=unit_scale,
                              calibrated={"focus": focus, "aperture_px": apertures, "focal_length": focal},
                              note="aperture in px of the frames; pixel pitch = f/(2*aperture) makes f/(N*pixel) "
                                   "= aperture at the nominal f/2")
        else:
            import warnings
            warnings.warn(f"{scene}: no calibrated.txt found; imported with unknown focus (focus_known: false), "
                          "as `focalstack import` does", stacklevel=2)
            import_photos(links, out, align=do_align, order="name")
            prov_extra["calibration"] = None
        sample = load_sample(out)
        prov = json.loads((out / "import.json").read_text())
    prov["source"] = str(scene.resolve())
    prov.update(prov_extra)
    if calib is not None:
        by_name = dict(zip((p.name for p in frames), apertures))
        fns = [f_m / (by_name[n] * pixel_m) for n in prov["frames"]]
        if max(fns) > min(fns) * 1.0001:
            sample.camera = replace(sample.camera, f_numbers=tuple(fns))
    if depth_csv is not None:
        try:
            d = np.loadtxt(depth_csv, delimiter=",", dtype=np.float64, ndmin=2)
        except ValueError as e:
            raise SampleError(f"{depth_csv}: not a comma-separated depth table ({e})") from None
        y0, y1, x0, x1 = prov.get("crop_yyxx") or (0, d.shape[0], 0, d.shape[1])
        d = d[y0:y1, x0:x1] * unit_scale
        if d.shape != tuple(sample.frames.shape[-2:]):
            raise SampleError(f"{depth_csv}: depth is {d.shape} but the frames are {tuple(sample.frames.shape[-2:])}")
        sample.depth_m = torch.from_numpy(np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32))
        prov["depth"] = f"{depth_csv.resolve()} x {unit_scale:g} (DDFS's depth maps, not part of the original release)"
    sample.name = name
    return LoadedSample(sample, None, prov, 16 if prov.get("bit_depth") == 16 else 8)


def items(path: Path, unit_scale: float | None = None, align: bool | None = None,
          limit: int | None = None) -> list[BenchmarkItem]:
    path = Path(path)
    scale = DEFAULT_UNIT_SCALE if unit_scale is None else float(unit_scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"--unit-scale must be a positive number, got {unit_scale}")
    scenes = find_scenes(path)
    if limit:
        scenes = scenes[:limit]
    return [BenchmarkItem("", s.name, lambda s=s: load(s, path, s.name, scale, bool(align))) for s in scenes]


def settings(unit_scale: float | None = None, align: bool | None = None, **_) -> dict:
    return {"unit_scale_m": DEFAULT_UNIT_SCALE if unit_scale is None else unit_scale, "align": bool(align),
            "nominal_f_number": NOMINAL_F_NUMBER}
