"""HCI 4D Light Field Benchmark (Honauer, Johannsen et al., ACCV 2016) → focal stacks by
shift-and-add refocusing.

**The files**, one folder per scene (``training/``, ``additional/``, ``stratified/``, ``test/``
hold them in the download; the sub-path below PATH is kept under OUT): ``input_Cam000.png`` …
``input_Cam080.png``, the 9×9 views of 512×512 px, row-major (view ``k`` is row k // 9, column
k % 9), ``parameters.cfg`` (INI: ``[intrinsics]`` focal_length_mm, sensor_size_mm,
image_resolution_x_px / _y_px; ``[extrinsics]`` num_cams_x / _y, baseline_mm, focus_distance_m;
``[meta]`` disp_min, disp_max) and, except for the test scenes, ``gt_disp_lowres.pfm``, the
centre view's disparity (PFM "Pf": one float channel, rows stored bottom to top, little-endian when
the scale is negative).

**Disparity and depth.** Disparity δ is in pixels between neighbouring views and is 0 at the focus
distance Z_f (the views are rendered with shifted sensors), so with f_px = focal_length_mm /
sensor_size_mm · max(W, H) and b = baseline_mm / 1000: 1/Z = s·δ / (b·f_px) + 1/Z_f, where the sign s
says which way the views move (below). ``disparity.npy`` is the PFM's disparity, ``depth.npy`` the
metric depth it implies, and ``import.json`` the conversion (``px_per_inverse_m`` = s·b·f_px,
``offset_px`` = −s·b·f_px / Z_f).

**Refocusing.** Frame k averages all views, each resampled (bicubic, border-clamped) so that
points of disparity α_k line up with the centre view: view (r, c) is sampled at
(x − s_x·α_k·(c − c₀), y − s_y·α_k·(r − r₀)) — a view to the right of the centre sees a near
point further left. s_x, s_y = +1 is that convention for a camera grid numbered from the top-left;
when the scene has ground truth both signs are checked on it (the views at both ends of the centre
row and column are warped onto the centre view with ± the ground-truth disparity, the smaller error
wins) and the check's result is used and recorded in import.json; s = s_x. The refocus disparities
are ``linspace(2.5, −2.5, 10)`` by default (AiFDepthNet's FS_gen range, nearest focus first;
``--disparities HI LO --frames N`` to change it); each becomes a focus distance through the
formula above, which must be positive (finite). ``aif.png`` is the centre view.

**Camera**: :func:`focalstack.data.benchmarks.common.refocus_camera` with the scene's f_px, b and
view count — aperture (n−1)·b, per-frame f-numbers that make the thin-lens CoC equal the refocusing
spread (n−1)·|δ − α_k| px exactly, ``psf_scale`` = sqrt((n+1)/(12(n−1))) (0.3227 for 9 views), the
scene's real focal length. Depth range: the depths of [disp_min, disp_max] and of the refocus
disparities.

**Protocol** (AiFDepthNet's "4D Light Field" table, 10-frame stacks): scored on **disparity** —
MAE, MSE, RMSE and bumpiness, plus the bad-pixel ratio (|error| > 0.07 px) of its test code;
``focalstack eval --target disparity`` reports these (AbsRel and δ only when every disparity is
> 0, since HCI disparities change sign at the focus plane). The split is the papers' own choice of
scenes; the import keeps the download's category folders (``OUT/training``, ``OUT/additional``,
…) so that a split by category is one folder each.
"""

from __future__ import annotations

import configparser
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..format import FocalStackSample
from ..io import read_image
from .common import BenchmarkItem, LoadedSample, SampleError, refocus_camera

NAME = "hci4d"
OPTIONS = ("disparities", "frames")
DEFAULT_DISPARITIES = (2.5, -2.5)
DEFAULT_FRAMES = 10


# ---- files -------------------------------------------------------------------------------------------
def read_pfm(path: Path) -> np.ndarray:
    """A one-channel PFM ("Pf") → H×W float32, top row first."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: PFM file not found")
    with open(path, "rb") as f:
        def line() -> str:
            s = f.readline()
            while s.startswith(b"#"):
                s = f.readline()
            return s.decode("ascii", "replace").strip()

        kind = line()
        if kind == "PF":
            raise SampleError(f"{path}: colour PFM ('PF'); a one-channel disparity map ('Pf') is expected")
        if kind != "Pf":
            raise SampleError(f"{path}: not a PFM file (header {kind[:20]!r}, expected 'Pf')")
        try:
            dims = line().split()
            if len(dims) == 1:  # width and height may sit on separate lines
                dims += line().split()
            w, h = int(dims[0]), int(dims[1])
            scale = float(line())
        except (ValueError, IndexError):
            raise SampleError(f"{path}: malformed PFM header (expected 'W H' and a scale)") from None
        if w <= 0 or h <= 0 or scale == 0:
            raise SampleError(f"{path}: malformed PFM header (size {w}×{h}, scale {scale:g})")
        data = np.frombuffer(f.read(), dtype="<f4" if scale < 0 else ">f4")
    if data.size != w * h:
        raise SampleError(f"{path}: {data.size} values but the header says {w}×{h}")
    return np.ascontiguousarray(np.flipud(data.reshape(h, w)).astype(np.float32) * abs(scale))


def read_parameters(path: Path) -> dict:
    """parameters.cfg → the numbers the refocusing needs (one-line errors naming the key)."""
    path = Path(path)
    cp = configparser.ConfigParser()
    try:
        if not cp.read(path):
            raise FileNotFoundError(f"{path}: parameters.cfg not found")
    except configparser.Error as e:
        raise SampleError(f"{path}: not a readable parameters.cfg ({type(e).__name__})") from None
    want = {"intrinsics": ("focal_length_mm", "sensor_size_mm", "image_resolution_x_px", "image_resolution_y_px"),
            "extrinsics": ("num_cams_x", "num_cams_y", "baseline_mm", "focus_distance_m"),
            "meta": ("disp_min", "disp_max")}
    out = {}
    for sec, keys in want.items():
        for k in keys:
            try:
                out[k] = float(cp.get(sec, k))
            except (configparser.Error, ValueError):
                raise SampleError(f"{path}: [{sec}] {k} missing or not a number") from None
    for k in ("focal_length_mm", "sensor_size_mm", "baseline_mm", "focus_distance_m", "image_resolution_x_px",
              "image_resolution_y_px", "num_cams_x", "num_cams_y"):
        if not out[k] > 0:
            raise SampleError(f"{path}: {k} must be positive, got {out[k]:g}")
    for k in ("num_cams_x", "num_cams_y", "image_resolution_x_px", "image_resolution_y_px"):
        out[k] = int(out[k])
    return out


def read_views(scene: Path, p: dict) -> torch.Tensor:
    """[rows, cols, 3, H, W] float32 in [0,1] from input_CamNNN.png (row-major)."""
    ny, nx, h, w = p["num_cams_y"], p["num_cams_x"], p["image_resolution_y_px"], p["image_resolution_x_px"]
    views = torch.empty(ny, nx, 3, h, w)
    for k in range(nx * ny):
        f = scene / f"input_Cam{k:03d}.png"
        if not f.is_file():
            raise FileNotFoundError(f"{f}: view missing ({nx}×{ny} views per parameters.cfg)")
        img = read_image(f)
        if tuple(img.shape[1:]) != (h, w):
            raise SampleError(f"{f}: size {tuple(img.shape[1:])} differs from parameters.cfg's {(h, w)}")
        views[k // nx, k % nx] = img
    return views


# ---- refocusing --------------------------------------------------------------------------------------
def _sample(views: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """views [N,3,H,W] sampled at (x + dx, y + dy) (dx, dy: [N] or [N,H,W] px), bicubic, border-clamped."""
    n, _, h, w = views.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=views.dtype), torch.arange(w, dtype=views.dtype), indexing="ij")
    if dx.dim() == 1:
        dx, dy = dx.view(n, 1, 1), dy.view(n, 1, 1)
    gx = (xs + dx) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + dy) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx.expand(n, h, w), gy.expand(n, h, w)], dim=-1)
    return F.grid_sample(views, grid, mode="bicubic", padding_mode="border", align_corners=True)


def refocus(views: torch.Tensor, alphas, signs: tuple[int, int] = (1, 1)) -> torch.Tensor:
    """Shift-and-add: views [R,C,3,H,W] → frames [F,3,H,W] in [0,1], one per disparity α (px);
    view (r,c) is sampled at (x − s_x·α·(c − c₀), y − s_y·α·(r − r₀))."""
    rows, cols = views.shape[:2]
    r0, c0 = (rows - 1) / 2.0, (cols - 1) / 2.0
    out = []
    with torch.no_grad():
        for a in alphas:
            acc = torch.zeros(views.shape[2:], dtype=views.dtype)
            for r in range(rows):  # one row of views at a time bounds the memory
                dc = torch.arange(cols, dtype=views.dtype) - c0
                dx = -signs[0] * float(a) * dc
                dy = torch.full((cols,), -signs[1] * float(a) * (r - r0), dtype=views.dtype)
                acc += _sample(views[r], dx, dy).sum(0)
            out.append((acc / (rows * cols)).clamp(0.0, 1.0))
    return torch.stack(out)


def parallax_signs(views: torch.Tensor, disparity: np.ndarray) -> tuple[tuple[int, int], dict]:
    """(s_x, s_y) that best warp the outermost views of the centre row / column onto the centre view
    with the ground-truth disparity (see the module doc), and the errors behind the choice."""
    rows, cols = views.shape[:2]
    r0, c0 = rows // 2, cols // 2
    centre = views[r0, c0]
    d = torch.from_numpy(np.nan_to_num(disparity, nan=0.0)).to(views.dtype)
    errs: dict[str, list[float]] = {}
    signs = []
    for axis, picks in (("x", [(r0, 0), (r0, cols - 1)]), ("y", [(0, c0), (rows - 1, c0)])):
        e = []
        for s in (1, -1):
            tot = 0.0
            for r, c in picks:
                off = (c - c0) if axis == "x" else (r - r0)
                shift = -s * d * off
                zero = torch.zeros_like(d)
                warped = _sample(views[r, c][None], (shift if axis == "x" else zero)[None],
                                 (zero if axis == "x" else shift)[None])[0]
                tot += float((warped - centre).abs().mean())
            e.append(tot)
        errs[axis] = e
        signs.append(1 if e[0] <= e[1] else -1)
    return (signs[0], signs[1]), errs


# ---- the reader --------------------------------------------------------------------------------------
def load(scene: Path, name: str, disparities: tuple[float, float], frames: int) -> LoadedSample:
    p = read_parameters(scene / "parameters.cfg")
    views = read_views(scene, p)
    ny, nx = p["num_cams_y"], p["num_cams_x"]
    if nx != ny:
        raise SampleError(f"{scene / 'parameters.cfg'}: {nx}×{ny} views; refocusing here needs a square grid")
    gt_path = scene / "gt_disp_lowres.pfm"
    disp = read_pfm(gt_path) if gt_path.is_file() else None
    if disp is not None and disp.shape != tuple(views.shape[-2:]):
        raise SampleError(f"{gt_path}: size {disp.shape} differs from the views' {tuple(views.shape[-2:])}")
    signs, errs = ((1, 1), None) if disp is None else parallax_signs(views, disp)
    s = signs[0]
    f_px = p["focal_length_mm"] / p["sensor_size_mm"] * max(p["image_resolution_x_px"], p["image_resolution_y_px"])
    b = p["baseline_mm"] / 1000.0
    bf, inv_f = b * f_px, 1.0 / p["focus_distance_m"]
    alphas = np.linspace(disparities[0], disparities[1], frames)
    inv = s * alphas / bf + inv_f
    if np.any(inv <= 0):
        bad = float(alphas[int(np.argmin(inv))])
        raise SampleError(f"{scene}: refocus disparity {bad:g} px lies beyond infinity for this scene "
                          f"(b*f = {bf:.4g} px*m, focus {p['focus_distance_m']:g} m); narrow --disparities")
    order = np.argsort(-inv)  # nearest focus first
    alphas, inv = alphas[order], inv[order]
    span = s * np.array([p["disp_min"], p["disp_max"], *alphas]) / bf + inv_f
    hi = float(span.max())
    lo = float(span.min()) if span.min() > 0 else hi / 100.0
    cam = refocus_camera(f_px, b, nx, tuple(1.0 / inv), (1.0 / hi, 1.0 / lo), p["focal_length_mm"] / 1000.0,
                         source=f"HCI 4D {scene.name}: {nx}x{ny} views refocused at {frames} disparities")
    stack = refocus(views, alphas, signs)
    aif = views[ny // 2, nx // 2].clone()
    depth = None
    prov = {"dataset": "hci4d", "source": str(scene.resolve()), "refocus_disparities_px": [float(a) for a in alphas],
            "parallax_signs": list(signs), "parallax_sign_errors": errs,
            "parallax_convention": "view (r,c) sampled at (x - s_x*a*(c-c0), y - s_y*a*(r-r0))",
            "aif": f"input_Cam{(ny // 2) * nx + nx // 2:03d}.png (centre view)"}
    if disp is not None:
        valid = np.isfinite(disp)
        inv_d = s * np.where(valid, disp, 0.0) / bf + inv_f
        ok = valid & (inv_d > 0)
        depth = torch.from_numpy(np.where(ok, 1.0 / np.where(ok, inv_d, 1.0), 0.0).astype(np.float32))
        disp = np.where(valid, disp, np.nan).astype(np.float32)
        prov["disparity"] = {"px_per_inverse_m": s * bf, "offset_px": -s * bf * inv_f,
                             "note": "HCI disparity in px between neighbouring views, 0 at focus_distance_m"}
    sample = FocalStackSample(stack.contiguous(), cam, depth, aif, name=name)
    return LoadedSample(sample, disp, prov, 8)


def find_scenes(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: HCI 4D folder not found")
    scenes = sorted(p.parent for p in root.rglob("parameters.cfg"))
    if not scenes:
        raise SampleError(f"{root}: no scene folders (holding parameters.cfg) found; not the HCI 4D light field set")
    return scenes


def items(path: Path, disparities=None, frames: int | None = None, limit: int | None = None) -> list[BenchmarkItem]:
    path = Path(path)
    disp = tuple(float(x) for x in (disparities or DEFAULT_DISPARITIES))
    n = int(frames or DEFAULT_FRAMES)
    if len(disp) != 2 or not all(math.isfinite(x) for x in disp) or disp[0] == disp[1]:
        raise ValueError(f"--disparities needs two different numbers (px), got {list(disp)}")
    if n < 2:
        raise ValueError(f"--frames must be at least 2, got {n}")
    out = []
    for scene in find_scenes(path):
        rel = scene.relative_to(path)
        split = str(rel.parent) if scene != path and str(rel.parent) != "." else ""
        out.append(BenchmarkItem(split, scene.name, lambda scene=scene: load(scene, scene.name, disp, n)))
    if limit:
        per: dict[str, int] = {}
        keep = []
        for it in out:
            per[it.split] = per.get(it.split, 0) + 1
            if per[it.split] <= limit:
                keep.append(it)
        out = keep
    return out


def settings(disparities=None, frames: int | None = None, **_) -> dict:
    return {"disparities_px": list(disparities or DEFAULT_DISPARITIES), "frames": int(frames or DEFAULT_FRAMES)}
