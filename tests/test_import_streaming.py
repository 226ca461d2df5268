"""``focalstack import`` in bounded memory (#13): the streaming import (two passes, one frame at a
time) writes the same frames as the former all-in-memory path, and its peak memory does not grow
with the number of frames."""

import json
import math
import tracemalloc
import weakref

import cv2
import numpy as np
import pytest

from focalstack.data.align import align_frames, estimate_warp, largest_valid_rect, warp_image
from focalstack.data.importer import import_photos
from focalstack.data.io import to_uint
from focalstack.data.photo_meta import read_photo

from .test_import import _exif, _save, _similarity, _texture


# ---- the former import, kept as the reference --------------------------------------------------

def _old_align_frames(images, motion="affine", reference=None, align_size=640, levels=3, crop=True):
    """focalstack.data.align.align_frames as it was before the streaming import (verbatim, built on
    the public estimate_warp / warp_image / largest_valid_rect): every frame and warped copy in memory."""
    nf = len(images)
    h, w = images[0].shape[:2]
    ref = nf // 2 if reference is None else reference
    if motion == "none":
        return list(images), [np.eye(3)] * nf, (0, h, 0, w), [1.0] * nf, ref, []
    f = min(1.0, align_size / max(h, w))
    small = []
    for im in images:
        g = (im @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
        small.append(cv2.resize(g, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
                     if f < 1 else g)
    pair, failed = {}, []
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
    return aligned, warps, box, scales, ref, sorted(failed)


def _old_import_frames(photos, info, motion, max_size=None, align_size=640):
    """The frames (uint8/uint16 HxWx3 RGB, output order), crop, magnifications and the frame size
    before the crop that the former import_photos wrote: all photos read, downscaled, ordered,
    aligned by _old_align_frames, cropped, converted by io.to_uint."""
    import torch
    order = info["frames"]
    reversed_auto = any(n.startswith("order: reversed") for n in info["notes"])
    align_order = order[::-1] if reversed_auto else order          # "auto" reverses after aligning
    images, bits = [], 8
    for name in align_order:
        im, b = read_photo(photos / name)
        bits = max(bits, b)
        images.append(im)
    h0, w0 = images[0].shape[:2]
    if max_size and max(h0, w0) > max_size:
        f = max_size / max(h0, w0)
        size = (max(2, round(w0 * f)), max(2, round(h0 * f)))
        images = [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in images]
    aligned, _, box, scales, _, _ = _old_align_frames(images, motion, align_size=align_size)
    if reversed_auto:
        aligned, scales = aligned[::-1], scales[::-1]
    out = [to_uint(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))), bits) for a in aligned]
    return out, box, scales, images[0].shape[:2]


def _read_written(sample, n):
    width = max(2, len(str(n - 1)))
    frames = []
    for k in range(n):
        a = cv2.imread(str(sample / f"frame_{k:0{width}d}.png"), cv2.IMREAD_UNCHANGED)
        frames.append(cv2.cvtColor(a, cv2.COLOR_BGR2RGB))
    return frames


# ---- synthetic hand-held stacks ---------------------------------------------------------------

def _handheld_stack(folder, n=5, h=120, w=160, kind="jpg", breathing=0.0, seed=3, coarse=1):
    """``n`` views of one texture, each moved by a small similarity (hand shake: shift, rotation) and
    magnified by ``1 + breathing * i`` (focus breathing), frame i a little brighter, written as 8-bit
    JPEG (with EXIF), 16-bit PNG, or camera RAW (DNG, linear). ``coarse`` > 1 enlarges the texture's
    grain (so that it survives the ECC's downscale of large frames)."""
    folder.mkdir(parents=True, exist_ok=True)
    m = 24
    big = _texture((h + 2 * m) // coarse, (w + 2 * m) // coarse, seed)
    if coarse > 1:
        big = np.clip(cv2.resize(big, (w + 2 * m, h + 2 * m), interpolation=cv2.INTER_CUBIC), 0, 1)
    shift = np.array([[1, 0, m], [0, 1, m], [0, 0, 1]], float)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        mt = _similarity(1 + breathing * i, rng.uniform(-1, 1), *rng.uniform(-4, 4, 2), w / 2, h / 2)
        arr = np.clip(warp_image(big, shift @ np.linalg.inv(mt), (w, h)) * 0.8 + 0.02 * i, 0, 1)
        if kind == "jpg":
            names.append(f"img_{i + 1}.jpg")
            _save(folder / names[-1], arr, _exif(4.3, 1.9, fp_res=10000))
        elif kind == "png16":
            names.append(f"img_{i + 1}.png")
            cv2.imwrite(str(folder / names[-1]), cv2.cvtColor(np.round(arr * 65535).astype(np.uint16),
                                                              cv2.COLOR_RGB2BGR))
        else:
            from .rawdng import write_dng
            names.append(f"IMG_{i:04d}.dng")
            write_dng(folder / names[-1], arr ** 2.2)
    return names


CASES = {
    # focus known, shuffled order, affine, max_size downscale
    "jpg-affine-focus-maxsize": dict(kind="jpg", n=5, motion="affine", max_size=100, focus=[1.0, 0.4, 2.0, 0.7, 3.0]),
    # focus unknown, 16-bit PNG, reversed order, homography, the ECC at a reduced size
    "png16-homography-reverse": dict(kind="png16", n=4, motion="homography", order="reverse", align_size=96),
    # focus unknown, order from focus breathing ("auto" reverses after aligning)
    "jpg-affine-auto": dict(kind="jpg", n=6, motion="affine", order="auto", breathing=0.01),
    # file-name order, translation
    "jpg-translation": dict(kind="jpg", n=4, motion="translation"),
    # camera RAW → 16-bit linear, euclidean
    "raw-euclidean": dict(kind="raw", n=3, motion="euclidean", focus=[0.5, 1.0, 2.0]),
    # no alignment: frames as read (with max_size)
    "jpg-none": dict(kind="jpg", n=3, motion="none", max_size=90),
}


@pytest.mark.parametrize("case", list(CASES))
def test_streaming_import_writes_the_frames_of_the_all_in_memory_import(tmp_path, case):
    c = dict(CASES[case])
    photos = tmp_path / "photos"
    _handheld_stack(photos, n=c.pop("n"), kind=c.pop("kind"), breathing=c.pop("breathing", 0.0))
    rep = import_photos(photos, tmp_path / "s", **c)
    info = json.loads((tmp_path / "s" / "import.json").read_text())
    if case == "jpg-affine-auto":
        assert any(n.startswith("order: reversed") for n in rep.notes), rep.notes   # the case is exercised
    ref_frames, box, scales, (hd, wd) = _old_import_frames(photos, info, c.get("motion", "affine"),
                                                           c.get("max_size"), c.get("align_size", 640))
    assert tuple(info["crop_yyxx"]) == box == rep.crop
    assert info["magnification"] == scales == rep.scales
    assert rep.size_hw == ref_frames[0].shape[:2]
    got = _read_written(tmp_path / "s", rep.num_frames)
    assert [g.dtype for g in got] == [r.dtype for r in ref_frames]
    for k, (g, r) in enumerate(zip(got, ref_frames)):
        assert g.shape == r.shape, (k, g.shape, r.shape)
        assert np.array_equal(g, r), (k, np.abs(g.astype(int) - r).max())
    if c.get("motion") != "none":                                  # the crop is exercised
        assert box != (0, hd, 0, wd)


def test_align_frames_is_unchanged():
    """align_frames, now built from the per-frame pieces, gives the former results exactly."""
    h, w = 90, 120
    big = _texture(h + 40, w + 40, seed=5)
    shift = np.array([[1, 0, 20], [0, 1, 20], [0, 0, 1]], float)
    frames = [warp_image(big, shift @ np.linalg.inv(_similarity(1 + 0.01 * i, i - 2, i, -i, w / 2, h / 2)), (w, h))
              for i in range(5)]
    for motion, align_size in (("affine", 640), ("homography", 64), ("none", 640)):
        new = align_frames(frames, motion, align_size=align_size)
        aligned, warps, box, scales, ref, failed = _old_align_frames(frames, motion, align_size=align_size)
        assert (new.crop, new.scales, new.reference, new.failed) == (box, scales, ref, failed)
        assert all(np.array_equal(a, b) for a, b in zip(new.warps, warps))
        assert all(np.array_equal(a, b) for a, b in zip(new.aligned, aligned))


# ---- memory -----------------------------------------------------------------------------------

def test_import_peak_memory_does_not_grow_with_the_number_of_frames(tmp_path, monkeypatch):
    """Importing 10 frames takes no more memory than importing 3 (numpy allocations, tracemalloc),
    and never more than one decoded full-resolution photo is alive at a time; holding every frame
    (as the former import did: all decoded frames plus their warped copies) fails both."""
    import focalstack.data.importer as importer
    h, w = 480, 640
    frame_bytes = h * w * 3 * 4                                   # one float32 RGB frame
    live, most = set(), [0]
    real_read = importer.read_photo

    def counting_read(path):
        img, bits = real_read(path)
        key = id(img)
        live.add(key)
        most[0] = max(most[0], len(live))
        weakref.finalize(img, live.discard, key)
        return img, bits

    monkeypatch.setattr(importer, "read_photo", counting_read)
    _handheld_stack(tmp_path / "warm", n=2, seed=7)               # lazy imports etc. outside the measurement
    import_photos(tmp_path / "warm", tmp_path / "warm_s", focus=[0.3, 0.4])
    peaks = {}
    for n in (3, 10):
        photos = tmp_path / f"p{n}"
        _handheld_stack(photos, n=n, h=h, w=w, seed=7, coarse=4)
        tracemalloc.start()
        try:
            rep = import_photos(photos, tmp_path / f"s{n}", focus=[0.3 + 0.1 * i for i in range(n)],
                                align_size=160)
            _, peaks[n] = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert rep.num_frames == n and not rep.failed_alignment
        assert most[0] == 1, f"{most[0]} decoded photos alive at once ({n} frames)"
    # the streaming import peaks at about two float frames (one decoded, one warped); the former
    # import peaked at 7.9 (3 frames) and 21.8 (10 frames) here
    assert peaks[10] - peaks[3] < 0.5 * frame_bytes, (peaks, frame_bytes)
    assert max(peaks.values()) < 3 * frame_bytes, (peaks, frame_bytes)
