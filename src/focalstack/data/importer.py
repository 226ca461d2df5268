"""Import a folder of photos (one focal stack) into the focalstack sample format.

``focalstack import PHOTOS_DIR -o SAMPLE_DIR`` (see :func:`import_photos`):

1. **Read** every JPEG/PNG/TIFF in the folder (natural name order), EXIF orientation applied,
   8- or 16-bit. All frames must have the same size after orientation.
2. **Metadata** (per frame, EXIF via exifread): FocalLength, FNumber, SubjectDistance (or a
   maker-note FocusDistance), FocalPlaneXResolution (+ unit) for the pixel size, or else
   FocalLengthIn35mmFilm (crop factor → sensor diagonal → pixel size). Options override EXIF:
   ``focal_length_mm``, ``f_number``, ``pixel_size_um`` / ``sensor_width_mm`` (long side).
   Focus distances, in priority: ``focus`` (list, file-name order), a sidecar ``focus.csv``
   (``file,focus_m``) or ``focus.json`` (``{"file": metres}`` or a list) in the photo folder,
   EXIF SubjectDistance of every frame. If none: the focus is **unknown**; placeholder focus
   distances (evenly spaced in inverse depth, 0.2 m → 2 m, near → far) are written and camera.json gets
   ``"focus_known": false`` (``focalstack optimize/predict`` then estimate relative inverse
   depth). Unknown lens values are placeholders too (``"lens_known": false``) — allowed only
   when the focus is unknown.
3. **Order**: frames are written **near → far** (ascending focus distance; frame_00 = nearest
   focus). With unknown focus the frames keep the file-name (capture) order and the FIRST file is
   assumed to be focused nearest (``order="name"``, the default; the Mobile Depth and Mahieu
   stacks follow it), or ``"reverse"``. ``"auto"`` uses focus breathing instead (unit-focusing
   lenses magnify more when focused nearer: frames ordered by decreasing magnification when the
   trend is clear, |Spearman| ≥ 0.5) — unreliable when the camera moves along its axis: on Mobile
   Depth "largemotion" it picks the wrong direction, so it is opt-in.
4. **Alignment** against focus breathing and hand-held motion: OpenCV ``findTransformECC``
   (``motion`` "affine" (default), "homography", "euclidean", "translation" or "none") on a grey copy downscaled to ≤ ``align_size`` px,
   coarse to fine over an image pyramid, Gaussian pre-filter. Frames are chained to their
   neighbour towards the reference (the middle frame), since neighbours share similar blur;
   a pair where ECC fails falls back to the previous transform (reported). All frames are then
   cropped to the largest axis-aligned rectangle valid in every warped frame.
5. Optional ``max_size`` downscale (long side, INTER_AREA) before alignment; the pixel size
   grows accordingly.
6. Written atomically (sample format + ``import.json`` with per-frame provenance).
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..optics.camera import CameraError, FocalStackCamera
from ..optics.thin_lens import ThinLens
from .io import atomic_write_dir, check_replaceable, to_uint, write_image

__all__ = ["PhotoImportError", "PhotoMeta", "list_photos", "read_photo", "read_exif", "read_focus_sidecar",
           "estimate_warp", "align_frames", "AlignResult", "largest_valid_rect", "import_photos", "ImportReport",
           "PHOTO_SUFFIXES", "PLACEHOLDER_FOCUS_RANGE_M"]

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
PLACEHOLDER_FOCUS_RANGE_M = (0.2, 2.0)
PLACEHOLDER_LENS = dict(focal_length_m=4.3e-3, f_number=2.0, pixel_size_m=1.5e-6)
MOTIONS = ("affine", "homography", "euclidean", "translation", "none")


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
        raise PhotoImportError(f"{d}: no images (.jpg/.jpeg/.png/.tif/.tiff) found")
    return photos


def read_photo(path: str | Path) -> tuple[np.ndarray, int]:
    """HxWx3 float32 RGB in [0,1] with EXIF orientation applied, and the source bit depth (8/16)."""
    import cv2
    path = Path(path)
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
    rgb = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB).astype(np.float32) / scale
    return np.clip(rgb, 0, 1), bits


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


# ---- alignment ---------------------------------------------------------------------------------

def _grey_u8(img: np.ndarray) -> np.ndarray:
    g = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32) if img.ndim == 3 else img
    return g.astype(np.float32)


_ECC_MOTION = {"affine": "MOTION_AFFINE", "homography": "MOTION_HOMOGRAPHY",
               "euclidean": "MOTION_EUCLIDEAN", "translation": "MOTION_TRANSLATION"}


def estimate_warp(src: np.ndarray, ref: np.ndarray, motion: str = "affine", levels: int = 3,
                  init: np.ndarray | None = None, iterations: int = 100, eps: float = 1e-5,
                  gauss: int = 5) -> np.ndarray:
    """3×3 matrix M mapping ``ref`` pixel coordinates to ``src`` coordinates (src(M·x) ≈ ref(x)),
    by ECC coarse to fine over ``levels`` pyramid levels. Grey float32 images. Raises cv2.error."""
    import cv2
    mtype = getattr(cv2, _ECC_MOTION[motion])
    ref_p, src_p = [ref.astype(np.float32)], [src.astype(np.float32)]
    for _ in range(levels - 1):
        if min(ref_p[-1].shape) < 64:
            break
        ref_p.append(cv2.pyrDown(ref_p[-1]))
        src_p.append(cv2.pyrDown(src_p[-1]))
    n = len(ref_p)
    s = np.diag([2.0 ** -(n - 1), 2.0 ** -(n - 1), 1.0])
    m = np.eye(3) if init is None else np.asarray(init, np.float64)
    m = s @ m @ np.linalg.inv(s)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, eps)
    for lvl in range(n - 1, -1, -1):
        w = (m if motion == "homography" else m[:2]).astype(np.float32)
        _, w = cv2.findTransformECC(ref_p[lvl], src_p[lvl], w, mtype, crit, None, gauss)
        m = np.vstack([w, [0, 0, 1]]) if w.shape[0] == 2 else w.astype(np.float64)
        m = m.astype(np.float64)
        if lvl > 0:
            up = np.diag([2.0, 2.0, 1.0])
            m = up @ m @ np.linalg.inv(up)
    return m


def warp_image(img: np.ndarray, m: np.ndarray, size_wh: tuple[int, int], interp: int | None = None,
               border_value: float = 0.0) -> np.ndarray:
    """Resample ``img`` at M·x for every output pixel x (M maps output → input coordinates)."""
    import cv2
    flags = (cv2.INTER_LINEAR if interp is None else interp) | cv2.WARP_INVERSE_MAP
    if np.allclose(m[2], [0, 0, 1]):
        return cv2.warpAffine(img, m[:2].astype(np.float64), size_wh, flags=flags,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)
    return cv2.warpPerspective(img, m, size_wh, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=border_value)


def largest_valid_rect(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1), an axis-aligned rectangle holding only True pixels, found by greedily
    shrinking the side with the most invalid pixels. Raises PhotoImportError if nothing is left."""
    y0, x0 = 0, 0
    y1, x1 = mask.shape
    while y1 - y0 > 1 and x1 - x0 > 1:
        sub = mask[y0:y1, x0:x1]
        if sub.all():
            return y0, y1, x0, x1
        bad = [(~sub[0]).sum() / sub.shape[1], (~sub[-1]).sum() / sub.shape[1],
               (~sub[:, 0]).sum() / sub.shape[0], (~sub[:, -1]).sum() / sub.shape[0]]
        i = int(np.argmax(bad))
        if i == 0:
            y0 += 1
        elif i == 1:
            y1 -= 1
        elif i == 2:
            x0 += 1
        else:
            x1 -= 1
    raise PhotoImportError("alignment left no region common to all frames (try --motion translation or --no-align)")


@dataclass
class AlignResult:
    """aligned: frames warped onto the reference and cropped (HxWx3 float32);
    warps: 3×3 per frame mapping reference → frame pixel coordinates (full resolution, before crop);
    crop: (y0, y1, x0, x1); scales: sqrt|det| of each warp's linear part (magnification vs reference);
    failed: frames whose ECC did not converge (previous transform used)."""

    aligned: list
    warps: list
    crop: tuple
    scales: list
    reference: int
    failed: list = field(default_factory=list)


def align_frames(images: Sequence[np.ndarray], motion: str = "affine", reference: int | None = None,
                 align_size: int = 640, levels: int = 3, crop: bool = True) -> AlignResult:
    """Align frames (HxWx3 float32) onto the ``reference`` (default: the middle frame); see module doc."""
    import cv2
    if motion not in MOTIONS:
        raise PhotoImportError(f"unknown motion model {motion!r}; choose from {', '.join(MOTIONS)}")
    nf = len(images)
    h, w = images[0].shape[:2]
    ref = nf // 2 if reference is None else reference
    if motion == "none":
        warps = [np.eye(3) for _ in range(nf)]
        return AlignResult(list(images), warps, (0, h, 0, w), [1.0] * nf, ref)
    f = min(1.0, align_size / max(h, w))
    small = []
    for im in images:
        g = _grey_u8(im)
        small.append(cv2.resize(g, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
                     if f < 1 else g)
    pair = {}
    failed = []
    for direction in (-1, 1):
        prev = np.eye(3)
        k = ref + direction
        while 0 <= k < nf:
            try:
                prev = estimate_warp(small[k], small[k - direction], motion, levels, init=prev)
            except cv2.error:
                failed.append(k)
            pair[k] = prev
            k += direction
    warps_small = {ref: np.eye(3)}
    for direction in (-1, 1):
        k = ref + direction
        while 0 <= k < nf:
            warps_small[k] = pair[k] @ warps_small[k - direction]
            k += direction
    s = np.diag([f, f, 1.0])
    warps = [np.linalg.inv(s) @ warps_small[k] @ s for k in range(nf)]
    aligned = [im if k == ref else warp_image(im, warps[k], (w, h)) for k, im in enumerate(images)]
    scales = [float(math.sqrt(abs(np.linalg.det(m[:2, :2])))) for m in warps]
    box = (0, h, 0, w)
    if crop:
        valid = np.ones((h, w), bool)
        ones = np.ones((h, w), np.float32)
        for k in range(nf):
            if k != ref:
                valid &= warp_image(ones, warps[k], (w, h), cv2.INTER_LINEAR) > 0.999
        valid = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        box = largest_valid_rect(valid)
        y0, y1, x0, x1 = box
        aligned = [a[y0:y1, x0:x1] for a in aligned]
    return AlignResult(aligned, warps, box, scales, ref, sorted(failed))


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr
    if len(a) < 3:
        return 0.0
    r = spearmanr(a, b).statistic
    return 0.0 if r is None or not math.isfinite(r) else float(r)


# ---- the import -------------------------------------------------------------------------------

@dataclass
class ImportReport:
    out_dir: Path
    num_frames: int
    size_hw: tuple
    focus_known: bool
    focus_source: str
    lens_source: dict
    order: list
    scales: list
    crop: tuple
    failed_alignment: list
    notes: list

    def summary(self) -> str:
        lines = [f"{self.out_dir}: {self.num_frames} frames {self.size_hw[1]}x{self.size_hw[0]}, "
                 f"focus {'from ' + self.focus_source if self.focus_known else 'UNKNOWN (placeholders, focus_known=false)'}"]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def import_photos(photos_dir: str | Path, out_dir: str | Path, focus: Sequence[float] | None = None,
                  focal_length_mm: float | None = None, f_number: float | None = None,
                  pixel_size_um: float | None = None, sensor_width_mm: float | None = None,
                  max_size: int | None = None, motion: str = "affine", align: bool = True,
                  order: str = "name", min_frames: int = 2, align_size: int = 640,
                  depth_range_m: tuple[float, float] | None = None) -> ImportReport:
    """Import the photos of ``photos_dir`` as one sample folder ``out_dir`` (see module doc)."""
    import cv2
    photos_dir = Path(photos_dir)
    out_dir = Path(out_dir)
    if order not in ("auto", "name", "reverse"):
        raise PhotoImportError(f"order must be auto, name or reverse, got {order!r}")
    for opt, v in (("--focal-length-mm", focal_length_mm), ("--f-number", f_number),
                   ("--pixel-size-um", pixel_size_um), ("--sensor-width-mm", sensor_width_mm)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise PhotoImportError(f"{opt} must be a positive number, got {v:g}")
    if motion not in MOTIONS:
        raise PhotoImportError(f"unknown motion model {motion!r}; choose from {', '.join(MOTIONS)}")
    paths = list_photos(photos_dir)
    check_replaceable(out_dir, "sample", inputs=[photos_dir])   # refuse before any work
    if len(paths) < min_frames:
        raise PhotoImportError(f"{paths[0]}: only {len(paths)} image in {photos_dir}; a focal stack needs at "
                               f"least {min_frames} frames")
    names = [p.name for p in paths]
    notes: list[str] = []

    # pixels
    images, bits = [], 8
    for p in paths:
        img, b = read_photo(p)
        bits = max(bits, b)
        if images and img.shape != images[0].shape:
            raise PhotoImportError(f"{p}: size {img.shape[1]}x{img.shape[0]} (after EXIF orientation) differs "
                                   f"from {paths[0].name}'s {images[0].shape[1]}x{images[0].shape[0]}")
        images.append(img)
    h0, w0 = images[0].shape[:2]

    # metadata
    metas = [read_exif(p, (w0, h0)) for p in paths]
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
    fn_frames = [m.f_number for m in metas]
    if pixel_size_um:
        px, px_src = pixel_size_um * 1e-6, "--pixel-size"
    elif sensor_width_mm:
        px, px_src = sensor_width_mm * 1e-3 / max(w0, h0), "--sensor-width"
    else:
        px = common("pixel_size_m", "pixel size")
        px_src = next((m.pixel_size_source for m in metas if m.pixel_size_m), "")
    lens_source = {"focal_length": "option" if focal_length_mm else ("EXIF" if fl else "placeholder"),
                   "f_number": "option" if f_number else ("EXIF" if fn else "placeholder"),
                   "pixel_size": px_src or "placeholder"}

    # focus
    if focus is not None:
        if len(focus) != len(paths):
            raise PhotoImportError(f"--focus gives {len(focus)} distances but {photos_dir} has {len(paths)} images")
        fd = [float(x) for x in focus]
        fsrc = "--focus"
    else:
        side = read_focus_sidecar(photos_dir, names)
        if side is not None:
            fd, fsrc = [side[n] for n in names], ("focus.csv" if (photos_dir / "focus.csv").is_file() else "focus.json")
        else:
            have = [m.focus_distance_m for m in metas]
            if all(v is not None for v in have):
                fd, fsrc = have, "EXIF SubjectDistance"
            else:
                if any(v is not None for v in have):
                    notes.append(f"EXIF focus distance present for only {sum(v is not None for v in have)} of "
                                 f"{len(have)} images; ignored")
                fd, fsrc = None, ""
    known = fd is not None
    if known:
        for n, x in zip(names, fd):
            if not (math.isfinite(x) and x > 0):
                raise PhotoImportError(f"{photos_dir / n}: focus distance {x} m is not a positive number")
        missing = [k for k, v in (("focal length (--focal-length-mm)", fl), ("f-number (--f-number)", fn),
                                  ("pixel size (--pixel-size-um or --sensor-width-mm)", px)) if not v]
        if missing:
            raise PhotoImportError(f"{paths[0]}: EXIF has no {', '.join(missing)}; give it on the command line")
        if len(set(fd)) == 1 and len(set(x for x in fn_frames if x)) < 2:
            notes.append("every frame has the same focus distance and f-number: no focus/aperture cue")
    fl = fl or PLACEHOLDER_LENS["focal_length_m"]
    fn = fn or PLACEHOLDER_LENS["f_number"]
    px = px or PLACEHOLDER_LENS["pixel_size_m"]
    lens_known = all(v != "placeholder" for v in lens_source.values())

    # downscale
    factor = 1.0
    if max_size and max(h0, w0) > max_size:
        factor = max_size / max(h0, w0)
        size = (max(2, round(w0 * factor)), max(2, round(h0 * factor)))
        images = [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in images]

    # order (focus known: ascending focus distance; ties keep name order)
    idx = list(range(len(paths)))
    if known:
        idx.sort(key=lambda i: (fd[i], i))
    elif order == "reverse":
        idx.reverse()
    images = [images[i] for i in idx]

    # align
    if align and motion != "none":
        res = align_frames(images, motion, align_size=align_size)
    else:
        res = align_frames(images, "none")
    if res.failed:
        notes.append("ECC did not converge for " + ", ".join(names[idx[k]] for k in res.failed)
                     + " (previous transform reused)")
    scales = res.scales
    if not known and order == "auto" and align and motion != "none":
        r = _spearman(list(range(len(scales))), scales)
        if r >= 0.5:   # magnification grows with index → the last frame is the nearest focus
            notes.append(f"order: reversed (magnification grows with file order, Spearman {r:.2f}: "
                         "near focus magnifies more, so the last file is the nearest)")
            res.aligned.reverse()
            scales = scales[::-1]
            idx.reverse()
        elif r <= -0.5:
            notes.append(f"order: file order kept (magnification falls with file order, Spearman {r:.2f})")
        else:
            notes.append(f"order: file order kept (no clear focus-breathing trend, Spearman {r:.2f}); "
                         "assuming the first file is focused nearest")

    # camera
    nf = len(paths)
    if known:
        focus_m = [fd[i] for i in idx]
    else:
        lo, hi = PLACEHOLDER_FOCUS_RANGE_M
        focus_m = [1.0 / (1.0 / lo + (1.0 / hi - 1.0 / lo) * k / max(1, nf - 1)) for k in range(nf)]
    fns = [fn_frames[i] for i in idx]
    per_frame_fn = None
    if known and all(fns) and max(fns) > min(fns) * 1.01:
        per_frame_fn = tuple(float(x) for x in fns)
    try:
        cam = FocalStackCamera(ThinLens(fl, fn, px), tuple(focus_m), per_frame_fn, depth_range_m,
                               focus_known=known, lens_known=lens_known)
    except (CameraError, ValueError) as e:
        raise PhotoImportError(f"{photos_dir}: inconsistent camera: {e}") from None
    if factor != 1.0:
        cam = cam.resized(factor)

    # write
    hh, ww = res.aligned[0].shape[:2]
    width = max(2, len(str(nf - 1)))
    report = ImportReport(out_dir, nf, (hh, ww), known, fsrc, lens_source, [names[i] for i in idx],
                          [float(s) for s in scales], tuple(int(v) for v in res.crop),
                          [names[idx[k]] for k in res.failed], notes)
    with atomic_write_dir(out_dir, "sample", inputs=[photos_dir]) as tmp:
        cam.save(tmp / "camera.json")
        for k, im in enumerate(res.aligned):
            write_image(tmp / f"frame_{k:0{width}d}.png", to_uint(_as_chw(im), bits))
        (tmp / "import.json").write_text(json.dumps({
            "source": str(photos_dir), "frames": report.order, "focus_known": known, "focus_source": fsrc,
            "lens_source": lens_source, "downscale": factor, "motion": motion if align else "none",
            "reference_frame": res.reference, "magnification": report.scales, "crop_yyxx": list(report.crop),
            "ecc_failed": report.failed_alignment, "notes": notes,
            "order": "near to far (frame_00 = nearest focus)" + ("" if known else " — assumed, focus unknown"),
        }, indent=2) + "\n")
    return report


def _as_chw(im: np.ndarray):
    import torch
    return torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)))
