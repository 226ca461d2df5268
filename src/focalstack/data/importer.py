"""Import a folder of photos (one focal stack) into the focalstack sample format.

``focalstack import PHOTOS_DIR -o SAMPLE_DIR`` (see :func:`import_photos`):

1. **Read** every JPEG/PNG/TIFF in the folder (natural name order), EXIF orientation applied,
   8- or 16-bit — or every camera RAW file (DNG, CR2/CR3, NEF, ARW, ORF, RAF, by extension), decoded
   by rawpy (LibRaw) into **linear light** with the camera's white balance (``photo_meta.read_raw``).
   A folder holding RAW files is imported from those alone (the JPEGs of RAW+JPEG shooting are
   ignored, noted). All frames must have the same size after orientation.
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
6. Written atomically (sample format + ``import.json`` with per-frame provenance). Frames from
   RAW files are written as 16-bit linear PNGs and camera.json says ``"encoding": "linear"``;
   other photos keep their bit depth and get ``"encoding": "srgb"`` (see
   :mod:`focalstack.data.encoding`).

**Memory** (issue #13: 30 frames of 24 MP held as float32 RGB would take ≈ 8.6 GB, twice that with
the warped copies). The frames are never all in memory; each photo is decoded twice, one at a time:

* pass 1 (:func:`_scan_photos`) decodes every file for its size (the equal-size check), bit depth and
  a small grey copy (≤ ``align_size`` px, after the ``max_size`` downscale) and drops the pixels;
  the ECC works on the small greys only (as it always did), giving full-resolution warps
  (:func:`.align.estimate_warps`), from which the common crop follows exactly at full resolution,
  one frame's mask at a time (:func:`.align.common_crop`);
* pass 2 (:func:`_write_sample`) decodes each frame again in output order, downscales, warps, crops
  and writes it into the temporary output folder before reading the next.

Peak memory is about two float32 frames (one decoded frame and its warped copy) plus the small greys,
whatever the number of frames; the frames written are bit-identical to aligning all frames in memory
with :func:`.align.align_frames`. The price is the second decode of every photo (for camera RAW
files, LibRaw's demosaic dominates the import time).

Steps 1–2 live in :mod:`.photo_meta`, step 4 in :mod:`.align`; this module runs the pipeline.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..optics.camera import CameraError, FocalStackCamera
from ..optics.thin_lens import ThinLens
from .align import MOTIONS, alignment_grey, alignment_scale, common_crop, estimate_warps, warp_image, warp_scales
from .io import atomic_write_dir, check_replaceable, to_uint, write_image
from .photo_meta import (PLACEHOLDER_FOCUS_RANGE_M, PLACEHOLDER_LENS, PhotoImportError, is_raw, list_photos,
                         read_exif, read_photo, resolve_focus, resolve_lens)

__all__ = ["import_photos", "ImportReport"]


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
    notes: list[str] = []
    raws = [p for p in paths if is_raw(p)]
    if raws and len(raws) < len(paths):   # RAW+JPEG shooting: the RAW files are the frames
        others = [p.name for p in paths if not is_raw(p)]
        notes.append(f"{len(others)} non-RAW image(s) beside the RAW files ignored ({others[0]}"
                     f"{', …' if len(others) > 1 else ''})")
        paths = raws
    encoding = "linear" if raws else "srgb"
    if len(paths) < min_frames:
        raise PhotoImportError(f"{paths[0]}: only {len(paths)} image in {photos_dir}; a focal stack needs at "
                               f"least {min_frames} frames")
    names = [p.name for p in paths]

    # pixels, pass 1 (see _scan_photos): sizes, bit depth, and the small grey copies ECC aligns
    do_align = align and motion != "none"
    (h0, w0), bits, factor, size_wh, small = _scan_photos(paths, max_size, align_size if do_align else None)

    # metadata: lens from options → EXIF, focus from --focus → sidecar → EXIF (photo_meta)
    metas = [read_exif(p, (w0, h0)) for p in paths]
    lens = resolve_lens(metas, (w0, h0), focal_length_mm, f_number, pixel_size_um, sensor_width_mm, notes)
    fd, fsrc = resolve_focus(photos_dir, names, metas, focus, notes)
    fn_frames = [m.f_number for m in metas]
    known = fd is not None
    if known:
        missing = [k for k, v in (("focal length (--focal-length-mm)", lens.focal_length_m),
                                  ("f-number (--f-number)", lens.f_number),
                                  ("pixel size (--pixel-size-um or --sensor-width-mm)", lens.pixel_size_m)) if not v]
        if missing:
            raise PhotoImportError(f"{paths[0]}: EXIF has no {', '.join(missing)}; give it on the command line")
        if len(set(fd)) == 1 and len(set(x for x in fn_frames if x)) < 2:
            notes.append("every frame has the same focus distance and f-number: no focus/aperture cue")
    fl = lens.focal_length_m or PLACEHOLDER_LENS["focal_length_m"]
    fn = lens.f_number or PLACEHOLDER_LENS["f_number"]
    px = lens.pixel_size_m or PLACEHOLDER_LENS["pixel_size_m"]
    lens_source = lens.source
    lens_known = all(v != "placeholder" for v in lens_source.values())

    # order (focus known: ascending focus distance; ties keep name order)
    idx = list(range(len(paths)))
    if known:
        idx.sort(key=lambda i: (fd[i], i))
    elif order == "reverse":
        idx.reverse()

    # align: warps from the small greys (full-resolution matrices), then the common crop from the warps
    nf = len(paths)
    wd, hd = size_wh                    # frame size after the optional downscale
    ref = nf // 2                       # the middle frame (in this order) is the reference
    if do_align:
        warps, failed = estimate_warps([small[i] for i in idx], motion, alignment_scale((hd, wd), align_size), ref)
        del small
        scales = warp_scales(warps)
        crop = common_crop(warps, (hd, wd), ref)
        # the reference is written as read (not resampled by an identity warp), as align_frames does
        frame_warps = [None if k == ref else warps[k] for k in range(nf)]
    else:
        failed, scales, crop, frame_warps = [], [1.0] * nf, (0, hd, 0, wd), [None] * nf
    if failed:
        notes.append("ECC did not converge for " + ", ".join(names[idx[k]] for k in failed)
                     + " (previous transform reused)")
    if not known and order == "auto" and do_align:
        r = _spearman(list(range(len(scales))), scales)
        if r >= 0.5:   # magnification grows with index → the last frame is the nearest focus
            notes.append(f"order: reversed (magnification grows with file order, Spearman {r:.2f}: "
                         "near focus magnifies more, so the last file is the nearest)")
            frame_warps.reverse()
            scales = scales[::-1]
            idx.reverse()
        elif r <= -0.5:
            notes.append(f"order: file order kept (magnification falls with file order, Spearman {r:.2f})")
        else:
            notes.append(f"order: file order kept (no clear focus-breathing trend, Spearman {r:.2f}); "
                         "assuming the first file is focused nearest")

    # camera
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
                               focus_known=known, lens_known=lens_known, encoding=encoding)
    except (CameraError, ValueError) as e:
        raise PhotoImportError(f"{photos_dir}: inconsistent camera: {e}") from None
    if factor != 1.0:
        cam = cam.resized(factor)

    # write (pass 2: each frame read again, warped, cropped and written, one at a time)
    y0, y1, x0, x1 = crop
    report = ImportReport(out_dir, nf, (y1 - y0, x1 - x0), known, fsrc, lens_source, [names[i] for i in idx],
                          [float(s) for s in scales], tuple(int(v) for v in crop),
                          [names[idx[k]] for k in failed], notes)
    frames = [(paths[i], m) for i, m in zip(idx, frame_warps)]
    _write_sample(out_dir, photos_dir, cam, frames, (h0, w0), size_wh, crop, bits, report, {
        "source": str(photos_dir), "frames": report.order, "focus_known": known, "focus_source": fsrc,
        "encoding": encoding, "bit_depth": bits,
        **({"raw_decoding": "rawpy (LibRaw) postprocess: use_camera_wb=True, gamma=(1, 1), no_auto_bright=True, "
                            "output_bps=16 (linear light, camera white balance, sRGB primaries)"} if raws else {}),
        "lens_source": lens_source, "downscale": factor, "motion": motion if align else "none",
        "reference_frame": ref, "magnification": report.scales, "crop_yyxx": list(report.crop),
        "ecc_failed": report.failed_alignment, "notes": notes,
        "order": "near to far (frame_00 = nearest focus)" + ("" if known else " — assumed, focus unknown"),
    })
    return report


def _scan_photos(paths: Sequence[Path], max_size: int | None, align_size: int | None):
    """Pass 1 over the photos, one at a time: every file decoded (so an unreadable file or one whose
    size differs stops the import here, naming it, before anything is written), the largest bit
    depth, and — when ``align_size`` is given — the small grey copy the ECC aligns
    (:func:`.align.alignment_grey` of the frame after the ``max_size`` downscale, exactly what
    ``align_frames`` computes from the in-memory frames). The full-resolution pixels are dropped
    after each file; :func:`_write_sample` decodes them again.

    Decoding twice costs time (noticeable for camera RAW files, whose LibRaw decode dominates) but
    keeps the peak memory at about one float32 frame here, instead of every frame of the stack (30 ×
    24 MP × 3 channels × 4 B ≈ 8.6 GB). Returns ((h0, w0) as read, bits, downscale factor, (w, h)
    after it, small greys in file order or None)."""
    first, bits, factor, size_wh, small = None, 8, 1.0, None, [] if align_size else None
    for p in paths:
        img, b = read_photo(p)
        bits = max(bits, b)
        if first is None:
            first = img.shape
            h0, w0 = first[:2]
            size_wh = (w0, h0)
            if max_size and max(h0, w0) > max_size:
                factor = max_size / max(h0, w0)
                size_wh = (max(2, round(w0 * factor)), max(2, round(h0 * factor)))
        elif img.shape != first:
            raise PhotoImportError(f"{p}: size {img.shape[1]}x{img.shape[0]} (after EXIF orientation) differs "
                                   f"from {paths[0].name}'s {first[1]}x{first[0]}")
        if small is not None:
            small.append(alignment_grey(_downscale(img, size_wh), align_size))
        del img
    return first[:2], bits, factor, size_wh, small


def _downscale(img: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """The ``max_size`` downscale (INTER_AREA to ``size_wh``); the frame itself when it already has
    that size."""
    import cv2
    if (img.shape[1], img.shape[0]) == tuple(size_wh):
        return img
    return cv2.resize(img, tuple(size_wh), interpolation=cv2.INTER_AREA)


def _write_sample(out_dir: Path, photos_dir: Path, camera: FocalStackCamera, frames: list,
                  size_hw0: tuple[int, int], size_wh: tuple[int, int], crop: tuple, bits: int,
                  report: ImportReport, provenance: dict) -> None:
    """The sample folder (camera.json, frame_NN.png near → far at ``bits`` bits, in the camera's
    encoding, import.json), atomically; never over the photos or a folder focalstack did not write
    (:func:`focalstack.data.io.atomic_write_dir`).

    Pass 2 of the import: ``frames`` lists (photo path, warp or None) in output order; each photo is
    decoded again, downscaled to ``size_wh``, warped onto the reference grid (M maps reference →
    frame pixels, :func:`.align.warp_image`), cropped to ``crop`` (y0, y1, x0, x1), converted to
    ``bits`` bits and written before the next one is read. Peak memory: the decoded frame and its
    warped copy (two float32 frames), whatever the number of frames."""
    width = max(2, len(str(len(frames) - 1)))
    wd, hd = size_wh
    y0, y1, x0, x1 = crop
    with atomic_write_dir(out_dir, "sample", inputs=[photos_dir]) as tmp:
        camera.save(tmp / "camera.json")
        for k, (path, warp) in enumerate(frames):
            im, _ = read_photo(path)
            if im.shape[:2] != tuple(size_hw0):
                raise PhotoImportError(f"{path}: size {im.shape[1]}x{im.shape[0]} changed while importing "
                                       f"(was {size_hw0[1]}x{size_hw0[0]})")
            im = _downscale(im, size_wh)
            if warp is not None:
                im = warp_image(im, warp, (wd, hd))
            write_image(tmp / f"frame_{k:0{width}d}.png", to_uint(im[y0:y1, x0:x1], bits))
            del im
        (tmp / "import.json").write_text(json.dumps(provenance, indent=2) + "\n")
