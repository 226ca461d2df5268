"""Photo files and their metadata for ``focalstack import``: listing and reading the frames
(EXIF orientation, 8/16 bit; camera RAW through rawpy/LibRaw as linear light), the optical EXIF of
each photo (exifread; for RAW files that exifread cannot parse, LibRaw's focal length and f-number),
focus sidecars, and the resolution of lens and focus values from options → sidecar → EXIF (see
:mod:`.importer`)."""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["PhotoImportError", "PhotoMeta", "list_photos", "read_photo", "read_exif", "read_focus_sidecar",
           "resolve_lens", "resolve_focus", "LensValues", "PHOTO_SUFFIXES", "RAW_SUFFIXES", "PLACEHOLDER_FOCUS_RANGE_M",
           "PLACEHOLDER_LENS", "is_raw", "read_raw"]

RAW_SUFFIXES = (".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".raf")
"""Camera RAW files (by extension), decoded with rawpy (LibRaw) as linear light (:func:`read_raw`)."""
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff") + RAW_SUFFIXES
PLACEHOLDER_FOCUS_RANGE_M = (0.2, 2.0)
PLACEHOLDER_LENS = dict(focal_length_m=4.3e-3, f_number=2.0, pixel_size_m=1.5e-6)


class PhotoImportError(ValueError):
    """Missing or inconsistent photos/metadata; one line naming the file."""


@dataclass
class PhotoMeta:
    path: Path
    width: int = 0
    height: int = 0
    focal_length_m: float | None = None
    f_number: float | None = None
    focus_distance_m: float | None = None
    pixel_size_m: float | None = None
    focal_35mm_mm: float | None = None
    pixel_size_source: str = ""
    has_exif: bool = False


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def list_photos(photos_dir: str | Path) -> list[Path]:
    d = Path(photos_dir)
    if not d.is_dir():
        raise PhotoImportError(f"{d}: photo folder not found")
    photos = sorted((p for p in d.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES
                     and not p.name.startswith(".")), key=_natural_key)
    if not photos:
        raise PhotoImportError(f"{d}: no images (.jpg/.jpeg/.png/.tif/.tiff or camera RAW "
                               f"{'/'.join(RAW_SUFFIXES)}) found")
    return photos


def is_raw(path: str | Path) -> bool:
    """Whether ``path`` is a camera RAW file, by its extension (:data:`RAW_SUFFIXES`)."""
    return Path(path).suffix.lower() in RAW_SUFFIXES


def _rawpy(path: Path):
    try:
        import rawpy
    except ImportError:
        raise PhotoImportError(f"{path}: reading camera RAW files needs the rawpy package "
                               "(pip install rawpy)") from None
    return rawpy


def read_raw(path: str | Path) -> tuple[np.ndarray, int]:
    """A camera RAW file → (HxWx3 float32 RGB in [0,1], 16), **linear light**: LibRaw's demosaic
    with the camera's as-shot white balance, the camera → sRGB-primaries colour matrix, no gamma
    (``gamma=(1,1)``), no auto-brightening, 16-bit output; 1.0 = the sensor's white level after white
    balance. The orientation recorded in the file is applied."""
    path = Path(path)
    rawpy = _rawpy(path)
    try:
        with rawpy.imread(str(path)) as raw:
            rgb = raw.postprocess(use_camera_wb=True, gamma=(1, 1), no_auto_bright=True, output_bps=16)
    except (rawpy.LibRawError, OSError, ValueError) as e:
        arg = e.args[0] if e.args else ""
        why = (arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)).strip()
        why = why or "LibRaw could not decode it"
        raise PhotoImportError(f"{path}: not a readable camera RAW file ({type(e).__name__}: {why})") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise PhotoImportError(f"{path}: LibRaw decoded an array of shape {rgb.shape}, not an RGB image")
    out = rgb.astype(np.float32)
    del rgb
    out /= 65535.0   # in place: one float copy of a photo-sized frame at a time (importer streams)
    return out, 16


def read_photo(path: str | Path) -> tuple[np.ndarray, int]:
    """HxWx3 float32 RGB in [0,1] with EXIF orientation applied, and the source bit depth (8/16).
    Camera RAW files (:func:`is_raw`) are decoded by :func:`read_raw` into linear light; all other
    files are returned as stored (sRGB-encoded)."""
    import cv2
    path = Path(path)
    if is_raw(path):
        return read_raw(path)
    arr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if arr is None:
        raise PhotoImportError(f"{path}: not a readable image (corrupt or unsupported format)")
    if arr.dtype == np.uint8:
        bits, scale = 8, 255.0
    elif arr.dtype == np.uint16:
        bits, scale = 16, 65535.0
    elif arr.dtype in (np.float32, np.float64):
        bits, scale = 16, 1.0
    else:
        raise PhotoImportError(f"{path}: unsupported pixel type {arr.dtype}")
    rgb = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    del arr
    rgb = rgb.astype(np.float32)   # then in place: at most one float copy of a photo-sized frame
    rgb /= scale
    np.clip(rgb, 0, 1, out=rgb)
    return rgb, bits


def _ratio(v) -> float | None:
    try:
        x = v.values[0] if hasattr(v, "values") else v
        if hasattr(x, "num"):
            return float(x.num) / float(x.den) if float(x.den) != 0 else None
        return float(x)
    except (TypeError, ValueError, IndexError, ZeroDivisionError):
        return None


_FP_UNITS_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 1e-3}


def read_exif(path: str | Path, size_wh: tuple[int, int] | None = None) -> PhotoMeta:
    """Optical EXIF of one photo (values None where absent). ``size_wh`` = decoded size (W,H)."""
    import logging

    import exifread
    path = Path(path)
    meta = PhotoMeta(path)
    log = logging.getLogger("exifread")   # it warns once per file without EXIF; the import summarises instead
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with open(path, "rb") as fh:
            tags = exifread.process_file(fh, details=True)
    except Exception:  # noqa: BLE001  (exifread raises many things on odd files; EXIF is optional)
        tags = {}
    finally:
        log.setLevel(level)
    meta.has_exif = bool(tags)
    if size_wh:
        meta.width, meta.height = size_wh
    f = _ratio(tags.get("EXIF FocalLength"))
    meta.focal_length_m = f * 1e-3 if f and f > 0 else None
    n = _ratio(tags.get("EXIF FNumber"))
    meta.f_number = n if n and n > 0 else None
    fd = _ratio(tags.get("EXIF SubjectDistance"))
    if not fd or not math.isfinite(fd) or fd <= 0 or fd > 1e5:
        fd = None
        for k, v in tags.items():
            if k.endswith("FocusDistance") and k.startswith("MakerNote"):
                x = _ratio(v)
                if x and math.isfinite(x) and 0 < x < 1e5:
                    fd = x
                    break
    meta.focus_distance_m = fd
    f35 = _ratio(tags.get("EXIF FocalLengthIn35mmFilm"))
    if is_raw(path) and (meta.focal_length_m is None or meta.f_number is None):
        _raw_lens_fallback(path, meta)
    meta.focal_35mm_mm = f35 if f35 and f35 > 0 else None
    res = _ratio(tags.get("EXIF FocalPlaneXResolution"))
    unit = _ratio(tags.get("EXIF FocalPlaneResolutionUnit")) or 2
    exif_w = _ratio(tags.get("EXIF ExifImageWidth"))
    exif_h = _ratio(tags.get("EXIF ExifImageLength"))
    long_side = max(meta.width, meta.height) if size_wh else None
    if res and res > 0 and int(unit) in _FP_UNITS_MM:
        px = _FP_UNITS_MM[int(unit)] / res * 1e-3
        if long_side and exif_w and exif_h and max(exif_w, exif_h) > 0:
            px *= max(exif_w, exif_h) / long_side
        meta.pixel_size_m, meta.pixel_size_source = px, "EXIF FocalPlaneXResolution"
    elif meta.focal_35mm_mm and meta.focal_length_m and size_wh:
        crop = meta.focal_35mm_mm / (meta.focal_length_m * 1e3)
        diag_mm = math.hypot(36.0, 24.0) / crop
        meta.pixel_size_m = diag_mm * 1e-3 / math.hypot(meta.width, meta.height)
        meta.pixel_size_source = "EXIF FocalLengthIn35mmFilm (crop factor)"
    return meta


def _raw_lens_fallback(path: Path, meta: PhotoMeta) -> None:
    """Focal length / f-number from LibRaw's own metadata parser, for RAW files whose EXIF exifread
    cannot read (e.g. CR3); fills only values that are still missing."""
    try:
        rawpy = _rawpy(path)
        with rawpy.imread(str(path)) as raw:
            other = raw.other
    except Exception:  # noqa: BLE001  (metadata is optional; an unreadable file fails in read_raw, one line)
        return
    fl, n = float(getattr(other, "focal_length", 0) or 0), float(getattr(other, "aperture", 0) or 0)
    if meta.focal_length_m is None and math.isfinite(fl) and fl > 0:
        meta.focal_length_m = fl * 1e-3
    if meta.f_number is None and math.isfinite(n) and n > 0:
        meta.f_number = n
    meta.has_exif = meta.has_exif or bool(meta.focal_length_m or meta.f_number)


def read_focus_sidecar(photos_dir: Path, names: Sequence[str]) -> dict[str, float] | None:
    """focus.csv (``file,focus_m``; header optional) or focus.json → {file name: metres}; None if absent."""
    csv_path, json_path = photos_dir / "focus.csv", photos_dir / "focus.json"
    out: dict[str, float] = {}
    if csv_path.is_file():
        with open(csv_path, newline="") as fh:
            for i, row in enumerate(csv.reader(fh)):
                if not row or row[0].strip().startswith("#"):
                    continue
                if len(row) < 2:
                    raise PhotoImportError(f"{csv_path}: line {i + 1}: expected 'file,focus_m'")
                try:
                    out[row[0].strip()] = float(row[1])
                except ValueError:
                    if i == 0:
                        continue  # header
                    raise PhotoImportError(f"{csv_path}: line {i + 1}: focus {row[1]!r} is not a number") from None
        where = csv_path
    elif json_path.is_file():
        try:
            data = json.loads(json_path.read_text())
        except json.JSONDecodeError as e:
            raise PhotoImportError(f"{json_path}: malformed JSON ({e.msg} at line {e.lineno})") from None
        if isinstance(data, list):
            if len(data) != len(names):
                raise PhotoImportError(f"{json_path}: {len(data)} focus distances but {len(names)} images")
            data = dict(zip(names, data))
        if not isinstance(data, dict):
            raise PhotoImportError(f"{json_path}: expected an object {{file: focus_m}} or a list")
        try:
            out = {str(k): float(v) for k, v in data.items()}
        except (TypeError, ValueError):
            raise PhotoImportError(f"{json_path}: focus values must be numbers (metres)") from None
        where = json_path
    else:
        return None
    missing = [n for n in names if n not in out]
    if missing:
        raise PhotoImportError(f"{where}: no focus distance for {missing[0]}"
                               + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    extra = [k for k in out if k not in names]
    if extra:
        raise PhotoImportError(f"{where}: lists {extra[0]}, which is not an image in {photos_dir}")
    return {n: out[n] for n in names}


@dataclass
class LensValues:
    """Lens values resolved for a stack (None where neither an option nor EXIF gives one) and
    where each came from: {"focal_length"|"f_number"|"pixel_size": "option"/"EXIF …"/"placeholder"}."""

    focal_length_m: float | None
    f_number: float | None
    pixel_size_m: float | None
    source: dict


def resolve_lens(metas: Sequence[PhotoMeta], size_wh: tuple[int, int], focal_length_mm: float | None,
                 f_number: float | None, pixel_size_um: float | None, sensor_width_mm: float | None,
                 notes: list[str]) -> LensValues:
    """Options override EXIF; EXIF values that vary across frames give their median (noted)."""
    no_exif = sum(not m.has_exif for m in metas)
    if no_exif:
        notes.append(f"no EXIF data in {no_exif} of {len(metas)} photos" if no_exif < len(metas)
                     else "no EXIF data in any photo")

    def common(attr, label):
        vals = [getattr(m, attr) for m in metas if getattr(m, attr) is not None]
        if not vals:
            return None
        if max(vals) > min(vals) * 1.01:
            notes.append(f"EXIF {label} varies across frames ({min(vals):g}–{max(vals):g}); using the median")
        return float(np.median(vals))

    fl = focal_length_mm * 1e-3 if focal_length_mm else common("focal_length_m", "FocalLength")
    fn = f_number if f_number else common("f_number", "FNumber")
    if pixel_size_um:
        px, px_src = pixel_size_um * 1e-6, "--pixel-size"
    elif sensor_width_mm:
        px, px_src = sensor_width_mm * 1e-3 / max(size_wh), "--sensor-width"
    else:
        px = common("pixel_size_m", "pixel size")
        px_src = next((m.pixel_size_source for m in metas if m.pixel_size_m), "")
    source = {"focal_length": "option" if focal_length_mm else ("EXIF" if fl else "placeholder"),
              "f_number": "option" if f_number else ("EXIF" if fn else "placeholder"),
              "pixel_size": px_src or "placeholder"}
    return LensValues(fl, fn, px, source)


def resolve_focus(photos_dir: Path, names: Sequence[str], metas: Sequence[PhotoMeta],
                  focus: Sequence[float] | None, notes: list[str]) -> tuple[list[float] | None, str]:
    """Focus distances (metres, in file order) and their source: ``focus`` (the --focus option),
    else focus.csv / focus.json beside the photos, else EXIF SubjectDistance of every frame;
    (None, "") when unknown."""
    if focus is not None:
        if len(focus) != len(names):
            raise PhotoImportError(f"--focus gives {len(focus)} distances but {photos_dir} has {len(names)} images")
        fd, fsrc = [float(x) for x in focus], "--focus"
    else:
        side = read_focus_sidecar(photos_dir, names)
        if side is not None:
            fd, fsrc = [side[n] for n in names], ("focus.csv" if (photos_dir / "focus.csv").is_file() else "focus.json")
        else:
            have = [m.focus_distance_m for m in metas]
            if not all(v is not None for v in have):
                if any(v is not None for v in have):
                    notes.append(f"EXIF focus distance present for only {sum(v is not None for v in have)} of "
                                 f"{len(have)} images; ignored")
                return None, ""
            fd, fsrc = have, "EXIF SubjectDistance"
    for n, x in zip(names, fd):
        if not (math.isfinite(x) and x > 0):
            raise PhotoImportError(f"{photos_dir / n}: focus distance {x} m is not a positive number")
    return fd, fsrc
