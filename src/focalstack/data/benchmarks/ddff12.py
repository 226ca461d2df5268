"""DDFF-12 (Hazirbas et al., ACCV 2018): Lytro ILLUM focal stacks of 12 indoor scenes, as HDF5.

**The files.** ``ddff-dataset-trainval.h5`` holds ``stack_train`` / ``disp_train`` and
``stack_val`` / ``disp_val``; ``ddff-dataset-test.h5`` holds ``stack_test`` only (its disparity
was kept for the benchmark server). ``stack_<split>`` is N×10×H×W×3 (uint8, or floats in the
0–255 range; 383×552 px), ``disp_<split>`` is N×H×W (or N×1×H×W) disparity in **pixels** between
neighbouring sub-aperture views, 0 where the depth sensor had no value. Every split the file
holds is imported to ``OUT/<split>/<split>_NNNN``; an ``AiF_<split>`` dataset (N×H×W×3, in
DFV's re-packed files) becomes ``aif.png``.

**Camera** (DDFF toolbox ``refocus.py`` and its calibration, as every peer uses them): the
sub-aperture focal length f = 521.4052 px and the baseline between neighbouring views
b = K2 / f_lens · 1e-3 = 1982.0250823695178 / 7317.020641763665 · 1e-3 = 2.70876e-4 m, so
disparity δ = b·f / depth (b·f = 0.141236 px·m). The stack is refocused by shift-and-add at the 10
disparities ``linspace(b·f/0.5, b·f/7, 10)`` — focus 0.5 m … 7 m, evenly spaced in inverse depth
(frame 0 nearest). The refocusing sums the light field's 9×9 sub-aperture views (the 383×552
decoding of the toolbox), so the blur is that of an aperture of 8·b = 2.17 mm:
:func:`focalstack.data.benchmarks.common.refocus_camera` turns this into camera.json (per-frame
f-numbers, ``psf_scale`` 0.3227; the 10 mm focal length only names the lens, the pixel size is
f / 521.4052). The 9×9 view count is the toolbox's decoding, not stored in the .h5: if your light
fields had another count, the defocus per disparity scales with (n−1).

**Ground truth.** ``disparity.npy`` holds the file's disparity (px; 0 → NaN = invalid) and
``depth.npy`` the metric depth b·f/δ it implies (0 = invalid), ``import.json`` the conversion
(``px_per_inverse_m`` = b·f, offset 0).

**The two published protocols** (``focalstack eval --target disparity`` scores disparity like
both; ``--target depth``, the default, scores the metric depth):

* *Official* (the DDFF-12 paper and its DDFFNet): train on ``stack_train``, validate
  on ``stack_val``, test on the 6 test scenes × 20 stacks of ``ddff-dataset-test.h5``, scored on
  disparity by the (now offline) benchmark server: MSE, RMS, log RMS, AbsRel, SqRel, bumpiness and
  accuracy δ<1.25^k, per image over disparity > 0, 383×552 crop. The official val stacks come from
  the training scenes, so val scores are optimistic.
* *DFV's re-split* (Yang et al. CVPR 2022, and works following them): because the official val
  set shares scenes with training, they refocused the raw Lytro light fields themselves and packed a
  new train / val h5 split by scene (``stack_train``/``disp_train``/``stack_val``/``disp_val``,
  plus ``AiF_*``), trained with random 5 of the 10 frames, and report the val split with the
  DDFF-toolbox metrics (MSE, RMS, logRMS, AbsRel, SqRel, δ in %, Bump) on disparity, the 383×552
  input padded to 384×576. Import their h5 with the same command: the reader takes whatever splits
  the file holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..format import FocalStackSample
from .common import BenchmarkItem, LoadedSample, SampleError, open_hdf5, refocus_camera

NAME = "ddff12"
OPTIONS: tuple[str, ...] = ()

F_PX = 521.4052
BASELINE_M = 1982.0250823695178 / 7317.020641763665 * 1e-3
BF_PX_M = BASELINE_M * F_PX
N_VIEWS = 9
FOCUS_DISPARITIES_PX = np.linspace(BF_PX_M / 0.5, BF_PX_M / 7.0, 10)
FOCUS_M = tuple(float(BF_PX_M / d) for d in FOCUS_DISPARITIES_PX)
DEPTH_RANGE_M = (0.45, 8.0)
NOMINAL_FOCAL_LENGTH_M = 10e-3


def camera(num_frames: int = 10):
    """The DDFF-12 refocusing camera (module doc); another frame count spreads the same range."""
    if num_frames == 10:
        focus = FOCUS_M
    else:
        focus = tuple(float(BF_PX_M / d) for d in np.linspace(BF_PX_M / 0.5, BF_PX_M / 7.0, num_frames))
    return refocus_camera(F_PX, BASELINE_M, N_VIEWS, focus, DEPTH_RANGE_M, NOMINAL_FOCAL_LENGTH_M,
                          source="DDFF-12: Lytro ILLUM refocused 9x9 views, f=521.4052 px, b=0.270876 mm, "
                                 "focus 0.5-7 m even in disparity")


def _splits(path: Path, f) -> list[str]:
    splits = sorted(k[len("stack_"):] for k in f.keys() if k.startswith("stack_"))
    if not splits:
        raise SampleError(f"{path}: no stack_<split> dataset (has {', '.join(sorted(f.keys())) or 'nothing'}); "
                          "not a DDFF-12 .h5")
    for sp in splits:
        st = f[f"stack_{sp}"]
        if st.ndim != 5 or st.shape[-1] != 3 or st.shape[1] < 2:
            raise SampleError(f"{path}: 'stack_{sp}' has shape {tuple(st.shape)}; expected N×F×H×W×3 (F ≥ 2)")
        if f"disp_{sp}" in f:
            dp = f[f"disp_{sp}"]
            ok = (dp.ndim == 3 and tuple(dp.shape) == (st.shape[0], st.shape[2], st.shape[3])) or \
                 (dp.ndim == 4 and tuple(dp.shape) == (st.shape[0], 1, st.shape[2], st.shape[3]))
            if not ok:
                raise SampleError(f"{path}: 'disp_{sp}' has shape {tuple(dp.shape)}; expected N×H×W = "
                                  f"{(st.shape[0], st.shape[2], st.shape[3])} to match 'stack_{sp}'")
        if f"AiF_{sp}" in f and tuple(f[f"AiF_{sp}"].shape) != (st.shape[0], st.shape[2], st.shape[3], 3):
            raise SampleError(f"{path}: 'AiF_{sp}' has shape {tuple(f[f'AiF_{sp}'].shape)}; expected N×H×W×3")
    return splits


def _unit(a: np.ndarray) -> np.ndarray:
    """uint8 (or 0–255 floats, or 0–1 floats) → float32 in [0,1]."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    return a / 255.0 if float(np.nanmax(a)) > 1.0 + 1e-6 else a


def load(path: Path, split: str, index: int, name: str) -> LoadedSample:
    with open_hdf5(path, "a DDFF-12 .h5") as f:
        _splits(path, f)
        stack = _unit(np.asarray(f[f"stack_{split}"][index]))            # F×H×W×3
        disp = np.asarray(f[f"disp_{split}"][index], dtype=np.float32).reshape(stack.shape[1:3]) \
            if f"disp_{split}" in f else None
        aif = _unit(np.asarray(f[f"AiF_{split}"][index])) if f"AiF_{split}" in f else None
    frames = torch.from_numpy(np.ascontiguousarray(stack.transpose(0, 3, 1, 2))).clamp(0, 1)
    depth = None
    prov = {"dataset": "ddff12", "source": str(path.resolve()), "split": split, "index": index,
            "frames": "near to far, focus at disparities linspace(b*f/0.5, b*f/7, 10) px"}
    if disp is not None:
        valid = np.isfinite(disp) & (disp > 0)
        disp = np.where(valid, disp, np.nan).astype(np.float32)
        depth = torch.from_numpy(np.where(valid, BF_PX_M / np.where(valid, disp, 1.0), 0.0).astype(np.float32))
        prov["disparity"] = {"px_per_inverse_m": BF_PX_M, "offset_px": 0.0,
                             "note": "DDFF-12 disparity in px between neighbouring sub-aperture views; "
                                     "depth_m = b*f / disparity"}
    aif_t = torch.from_numpy(np.ascontiguousarray(aif.transpose(2, 0, 1))).clamp(0, 1) if aif is not None else None
    cam = camera(frames.shape[0])
    return LoadedSample(FocalStackSample(frames.contiguous(), cam, depth, aif_t, name=name), disp, prov, 8)


def items(path: Path, limit: int | None = None) -> list[BenchmarkItem]:
    path = Path(path)
    with open_hdf5(path, "a DDFF-12 .h5") as f:
        counts = {sp: int(f[f"stack_{sp}"].shape[0]) for sp in _splits(path, f)}
    out = []
    for sp, n in counts.items():
        for i in range(min(n, limit) if limit else n):
            name = f"{sp}_{i:04d}"
            out.append(BenchmarkItem(sp, name, lambda sp=sp, i=i, name=name: load(path, sp, i, name)))
    return out


def settings(**_) -> dict:
    return {"camera": camera().to_dict()}
