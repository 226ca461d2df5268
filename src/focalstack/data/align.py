"""Frame alignment for ``focalstack import``: OpenCV ECC against focus breathing and hand-held
motion, chained between neighbours towards the middle frame, then a crop to the region valid in
every warped frame (see :mod:`.importer`, step 4).

:func:`align_frames` aligns frames held in memory. It is composed of pieces that need one frame at a
time — :func:`alignment_grey` (the small grey copy ECC works on), :func:`estimate_warps` (the chained
ECC on those copies, warps scaled to full resolution), :func:`common_crop` (the crop, from the warps
alone) and :func:`warp_image` — which the importer uses to align photo-sized stacks in bounded memory."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .photo_meta import PhotoImportError

__all__ = ["MOTIONS", "estimate_warp", "warp_image", "largest_valid_rect", "AlignResult", "align_frames",
           "alignment_scale", "alignment_grey", "estimate_warps", "warp_scales", "common_crop"]

MOTIONS = ("affine", "homography", "euclidean", "translation", "none")


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


def alignment_scale(size_hw: tuple[int, int], align_size: int = 640) -> float:
    """The factor f (≤ 1) that brings a frame of ``size_hw`` to the ECC's working size: the long
    side at most ``align_size`` px. Warps found at that size are scaled back with diag(f, f, 1)
    (:func:`estimate_warps`)."""
    h, w = size_hw
    return min(1.0, align_size / max(h, w))


def alignment_grey(img: np.ndarray, align_size: int = 640) -> np.ndarray:
    """The small grey copy of one frame (HxWx3 float32) that the ECC works on: luma (Rec. 601
    weights), INTER_AREA-downscaled by :func:`alignment_scale` (each side at least 8 px).

    This is all alignment needs from a frame, so a caller can read a frame, keep this copy (≤
    ``align_size``² floats) and drop the full-resolution pixels — :func:`focalstack.data.importer.
    import_photos` aligns photo-sized stacks that way in bounded memory."""
    import cv2
    h, w = img.shape[:2]
    f = alignment_scale((h, w), align_size)
    g = _grey_u8(img)
    if f < 1:
        g = cv2.resize(g, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
    return g


def estimate_warps(small: Sequence[np.ndarray], motion: str = "affine", scale: float = 1.0,
                   reference: int | None = None, levels: int = 3) -> tuple[list, list]:
    """Warps of every frame onto the ``reference`` (default: the middle frame), from the small grey
    copies ``small`` (:func:`alignment_grey`) of frames downscaled by ``scale``
    (:func:`alignment_scale`). Returns (warps, failed): 3×3 matrices at **full** resolution mapping
    reference → frame pixel coordinates (M_full = S⁻¹·M_small·S, S = diag(scale, scale, 1), with f
    itself rather than the ratio of the rounded sizes, as align_frames always did), and the
    frame indices whose ECC did not converge (each of those reuses its neighbour's pair transform).

    Frames are chained to their neighbour towards the reference: ECC estimates neighbour pairs
    (k → k∓1, initialised with the previous pair), whose products give each frame's warp."""
    import cv2
    if motion not in MOTIONS:
        raise PhotoImportError(f"unknown motion model {motion!r}; choose from {', '.join(MOTIONS)}")
    nf = len(small)
    ref = nf // 2 if reference is None else reference
    if motion == "none":
        return [np.eye(3) for _ in range(nf)], []
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
    s = np.diag([scale, scale, 1.0])
    return [np.linalg.inv(s) @ warps_small[k] @ s for k in range(nf)], sorted(failed)


def warp_scales(warps: Sequence[np.ndarray]) -> list:
    """sqrt|det| of each warp's linear part: the frame's magnification against the reference."""
    return [float(math.sqrt(abs(np.linalg.det(m[:2, :2])))) for m in warps]


def common_crop(warps: Sequence[np.ndarray], size_hw: tuple[int, int],
                reference: int | None = None) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the largest axis-aligned rectangle (:func:`largest_valid_rect`) valid in every
    frame warped by ``warps`` onto the reference's ``size_hw`` grid — a pixel is valid when the
    bilinearly warped all-ones mask exceeds 0.999 in every non-reference frame; the intersection is
    eroded by one pixel (3×3) against interpolation at the border.

    Computed at full resolution, exactly, from the warps alone, one frame at a time: memory is one
    boolean intersection plus one float32 mask and its warp (≈ 10 bytes a pixel, less than one
    float32 RGB frame's 12), independent of the number of frames."""
    import cv2
    h, w = size_hw
    nf = len(warps)
    ref = nf // 2 if reference is None else reference
    valid = np.ones((h, w), bool)
    ones = np.ones((h, w), np.float32)
    for k in range(nf):
        if k != ref:
            valid &= warp_image(ones, warps[k], (w, h), cv2.INTER_LINEAR) > 0.999
    del ones
    valid = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return largest_valid_rect(valid)


def align_frames(images: Sequence[np.ndarray], motion: str = "affine", reference: int | None = None,
                 align_size: int = 640, levels: int = 3, crop: bool = True) -> AlignResult:
    """Align frames (HxWx3 float32) onto the ``reference`` (default: the middle frame); see module doc.

    Holds every frame and its warped copy in memory; for photo-sized stacks use the pieces it is made
    of one frame at a time, as :func:`focalstack.data.importer.import_photos` does:
    :func:`alignment_grey` per frame → :func:`estimate_warps` → :func:`common_crop` →
    :func:`warp_image` and crop per frame (bit-identical results)."""
    if motion not in MOTIONS:
        raise PhotoImportError(f"unknown motion model {motion!r}; choose from {', '.join(MOTIONS)}")
    nf = len(images)
    h, w = images[0].shape[:2]
    ref = nf // 2 if reference is None else reference
    if motion == "none":
        warps = [np.eye(3) for _ in range(nf)]
        return AlignResult(list(images), warps, (0, h, 0, w), [1.0] * nf, ref)
    f = alignment_scale((h, w), align_size)
    small = [alignment_grey(im, align_size) for im in images]
    warps, failed = estimate_warps(small, motion, f, ref, levels)
    aligned = [im if k == ref else warp_image(im, warps[k], (w, h)) for k, im in enumerate(images)]
    scales = warp_scales(warps)
    box = (0, h, 0, w)
    if crop:
        box = common_crop(warps, (h, w), ref)
        y0, y1, x0, x1 = box
        aligned = [a[y0:y1, x0:x1] for a in aligned]
    return AlignResult(aligned, warps, box, scales, ref, failed)
