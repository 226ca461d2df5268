"""FoD500 — the DefocusNet release (Maximov et al., CVPR 2020), folder ``fs_6``: 500 synthetic
(Blender) focal stacks of 256×256 px.

**The files**, per sample ``i``: ``{i:06d}_{k:02d}All.tif`` for k = 0…4, the five frames focused at
0.1, 0.15, 0.3, 0.7, 1.5 m in that order, and ``{i:06d}Dpt.exr``, depth in metres in the R channel of
a half-float EXR (read with the ``OpenEXR`` package). The release has no all-in-focus image; an
``{i:06d}Aif.tif``/``.png`` beside the frames (as some re-packs add) becomes ``aif.png``.
Samples 0–399 are the training split and 400–499 the test split ("FoD500": the first 80 %), written
to ``OUT/train`` and ``OUT/test``; a folder that already has ``train/`` and ``test/`` sub-folders
(as DFV's loader expects) keeps them.

**Camera**: preset ``defocusnet`` — f = 2.9 mm, f/1, a 3.1 mm sensor over 256 px (12.1 µm), focus
0.1/0.15/0.3/0.7/1.5 m (the release's config; DDFS's cost-volume script for the pixel size). Its
CoC stays under ~7 px over 0.1–3 m, which is why the core paper re-rendered 1000 stacks (500 train /
500 test) with a stronger lens and spread focus (preset ``defocusnet_dered``) — that re-render is not
public; this reader imports the release as it is.

**Ground truth**: ``depth.npy`` = the EXR depth in metres (non-finite or ≤ 0 → 0, invalid). Protocols:
DFV scores **depth** on the 100 test stacks with the ground truth limited to 1.5 m (its evaluation
clips to [0, 1.5] m; loaders derived from it mask test pixels outside [0.1, 1.5] m —
``focalstack eval --min-depth 0.1 --max-depth 1.5``); the core paper (DEReD) clips the ground truth
to [0.1, 3] m and also reports the "< 0.5 m" subset (``--max-depth 0.5``) — on its own re-render.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ...optics.presets import get_preset
from ..format import FocalStackSample
from ..io import read_image
from .common import BenchmarkItem, LoadedSample, SampleError

NAME = "fod500"
OPTIONS: tuple[str, ...] = ()
TRAIN_SAMPLES = 400
PRESET = "defocusnet"
REFERENCE_WIDTH_PX = 256
FRAME_RE = re.compile(r"^(\d{6})_(\d{2})All\.tif$")


def read_exr_depth(path: Path) -> np.ndarray:
    """H×W float32 depth (metres) from the R channel of an EXR (or its only channel)."""
    import OpenEXR

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: depth EXR not found")
    try:
        with OpenEXR.File(str(path), separate_channels=True) as f:
            ch = {k: np.asarray(v.pixels) for k, v in f.channels().items()}
    except Exception as e:  # OpenEXR raises RuntimeError for anything it cannot parse
        raise SampleError(f"{path}: not a readable EXR file ({e})") from None
    key = "R" if "R" in ch else (next(iter(ch)) if len(ch) == 1 else None)
    if key is None:
        raise SampleError(f"{path}: no R channel (has {', '.join(sorted(ch))})")
    d = ch[key].astype(np.float32)
    if d.ndim != 2:
        raise SampleError(f"{path}: channel {key} has shape {d.shape}, expected H×W")
    return np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)


def _scan(folder: Path) -> dict[int, dict[int, Path]]:
    found: dict[int, dict[int, Path]] = {}
    for p in folder.iterdir():
        m = FRAME_RE.match(p.name)
        if m:
            found.setdefault(int(m.group(1)), {})[int(m.group(2))] = p
    return found


def load(folder: Path, idx: int, frame_paths: dict[int, Path], name: str) -> LoadedSample:
    cam0 = get_preset(PRESET)
    ks = sorted(frame_paths)
    if ks != list(range(cam0.num_frames)):
        focus = ", ".join(f"{x:g}" for x in cam0.focus_distances_m)
        raise SampleError(f"{folder / f'{idx:06d}_00All.tif'}: sample {idx:06d} has frames {ks}; expected "
                          f"{list(range(cam0.num_frames))} (focus {focus} m)")
    frames = [read_image(frame_paths[k]) for k in ks]
    for k, fr in zip(ks, frames):
        if fr.shape != frames[0].shape:
            raise SampleError(f"{frame_paths[k]}: size {tuple(fr.shape[1:])} differs from frame 00's "
                              f"{tuple(frames[0].shape[1:])}")
    h, w = frames[0].shape[1:]
    exr = folder / f"{idx:06d}Dpt.exr"
    depth = read_exr_depth(exr)
    if depth.shape != (h, w):
        raise SampleError(f"{exr}: depth is {depth.shape} but the frames are {(h, w)}")
    aif = None
    for ext in ("tif", "png"):
        p = folder / f"{idx:06d}Aif.{ext}"
        if p.is_file():
            aif = read_image(p)
            break
    bits = max(read_image_bits(p) for p in frame_paths.values())
    cam = cam0.resized(w / REFERENCE_WIDTH_PX) if w != REFERENCE_WIDTH_PX else cam0
    prov = {"dataset": "fod500", "source": str(folder.resolve()), "index": idx,
            "frames": [frame_paths[k].name for k in ks], "depth": exr.name,
            "split_rule": f"index < {TRAIN_SAMPLES}: train, else test"}
    sample = FocalStackSample(torch.stack(frames), cam, torch.from_numpy(depth), aif, name=name)
    return LoadedSample(sample, None, prov, bits)


def read_image_bits(path: Path) -> int:
    """8 or 16: the bit depth of an image file's samples (header only)."""
    from PIL import Image
    with Image.open(path) as im:
        return 16 if im.mode.startswith("I") or "16" in im.mode else 8


def items(path: Path, limit: int | None = None) -> list[BenchmarkItem]:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: FoD500 folder not found")
    subs = [(sp, path / sp) for sp in ("train", "test") if (path / sp).is_dir() and _scan(path / sp)]
    groups: list[tuple[str | None, Path]] = subs if subs else [(None, path)]
    out = []
    for fixed, folder in groups:
        found = _scan(folder)
        if not found:
            raise SampleError(f"{folder}: no NNNNNN_KKAll.tif frames; not the FoD500 / DefocusNet fs_6 folder")
        count: dict[str, int] = {}
        want = list(range(get_preset(PRESET).num_frames))
        for idx in sorted(found):
            if sorted(found[idx]) != want:   # checked up front: a broken sample stops the import before it starts
                raise SampleError(f"{folder / f'{idx:06d}_00All.tif'}: sample {idx:06d} has frames "
                                  f"{sorted(found[idx])}; expected {want}")
            split = fixed or ("train" if idx < TRAIN_SAMPLES else "test")
            if limit and count.get(split, 0) >= limit:
                continue
            count[split] = count.get(split, 0) + 1
            name = f"fod500_{idx:06d}"
            out.append(BenchmarkItem(split, name, lambda folder=folder, idx=idx, fp=found[idx], name=name:
                                     load(folder, idx, fp, name)))
    return out


def settings(**_) -> dict:
    return {"camera": get_preset(PRESET).to_dict(), "train_samples": TRAIN_SAMPLES}
