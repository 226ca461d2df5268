"""Procedural RGB-D scenes (the embedded default data; nothing is downloaded).

In the spirit of the DefocusNet set (Maximov et al. 2020): a textured back wall (a far, slightly
slanted plane) and several textured objects — tilted polygons, spheres, boxes, blobs — at
random depths, composited with a z-buffer (the nearer surface wins). Every surface carries
strong texture (multi-octave value noise, stripes, checkers, dots, random colour ramps, crops of
the photographs bundled in the scikit-image wheel, plus a fine grain), because depth from defocus
needs texture everywhere.

Everything is a pure function of the seed (a numpy Generator seed: an int or a sequence of ints).
Depth is sampled uniformly in *inverse* depth, the quantity defocus is linear in.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Sequence

import numpy as np
import torch

from ..optics.camera import FocalStackCamera
from ..optics.presets import get_preset
from .format import FocalStackSample

# Photographs that ship inside the scikit-image wheel (skimage/data/), read straight from the
# package folder so no loader can ever reach for the network (several skimage.data functions
# download through pooch). Missing or unreadable files are skipped; without any, textures are
# purely procedural. (The Middlebury motorcycle images are deliberately not used: they are test data.)
BUNDLED_IMAGES = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png", "brick.png",
                  "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "coins.png", "moon.png",
                  "page.png", "text.png", "cell.png", "color.png", "clock_motion.png")

TEXTURE_KINDS = ("noise", "stripes", "checkers", "dots", "image", "cells")
SHAPE_KINDS = ("plane", "sphere", "box", "blob")


@functools.lru_cache(maxsize=1)
def bundled_images() -> tuple[np.ndarray, ...]:
    """The bundled scikit-image photographs as float32 HxWx3 RGB in [0,1] (cached)."""
    import cv2
    from PIL import Image

    try:
        import skimage.data
        folder = os.path.dirname(skimage.data.__file__)
    except Exception:  # pragma: no cover - scikit-image is a dependency
        return ()
    out = []
    for name in BUNDLED_IMAGES:
        try:
            with Image.open(os.path.join(folder, name)) as im:  # PIL: no libpng iCCP warnings
                arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
            if min(arr.shape[:2]) < 64:
                continue
            if max(arr.shape[:2]) > 640:
                s = 640.0 / max(arr.shape[:2])
                arr = cv2.resize(arr, (int(arr.shape[1] * s), int(arr.shape[0] * s)), interpolation=cv2.INTER_AREA)
            out.append(arr)
        except Exception:
            continue
    return tuple(out)


# ---- scalar patterns in [0,1] ------------------------------------------------------------------
def value_noise(rng: np.random.Generator, h: int, w: int, base_cells: float = 4.0, octaves: int = 5,
                persistence: float = 0.55) -> np.ndarray:
    """Multi-octave value noise (bicubic-upsampled random grids), rescaled to [0,1]."""
    import cv2

    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    cells = base_cells
    for _ in range(octaves):
        gh, gw = max(2, int(math.ceil(h / max(h, w) * cells)) + 2), max(2, int(math.ceil(w / max(h, w) * cells)) + 2)
        grid = rng.random((gh, gw), dtype=np.float32)
        up = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        out += amp * up
        total += amp
        amp *= persistence
        cells *= 2.0
    out /= total
    lo, hi = np.percentile(out, [1, 99])
    return np.clip((out - lo) / max(hi - lo, 1e-6), 0, 1)


def _coords(h: int, w: int):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def stripes(rng, h, w) -> np.ndarray:
    yy, xx = _coords(h, w)
    th = rng.uniform(0, np.pi)
    period = rng.uniform(4, 24)
    u = xx * np.cos(th) + yy * np.sin(th)
    warp = (value_noise(rng, h, w, 3, 3) - 0.5) * rng.uniform(0, 2 * period)
    s = 0.5 + 0.5 * np.sin(2 * np.pi * (u + warp) / period)
    if rng.random() < 0.5:
        s = (s > 0.5).astype(np.float32) * 0.8 + 0.2 * s
    return s


def checkers(rng, h, w) -> np.ndarray:
    yy, xx = _coords(h, w)
    th = rng.uniform(0, np.pi / 2)
    size = rng.uniform(4, 20)
    u = (xx * np.cos(th) + yy * np.sin(th)) / size
    v = (-xx * np.sin(th) + yy * np.cos(th)) / size
    return ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)


def dots(rng, h, w) -> np.ndarray:
    import cv2

    img = np.full((h, w), rng.uniform(0, 0.4), np.float32)
    n = int(h * w / rng.uniform(40, 200))
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    rs = rng.integers(1, max(2, min(h, w) // 25) + 1, n)
    vs = rng.uniform(0.4, 1.0, n)
    for y, x, r, v in zip(ys, xs, rs, vs):
        cv2.circle(img, (int(x), int(y)), int(r), float(v), -1, lineType=cv2.LINE_AA)
    return img


def cells(rng, h, w) -> np.ndarray:
    """Voronoi-like cells with per-cell grey levels and dark borders."""
    from scipy.spatial import cKDTree

    n = int(rng.integers(20, 120))
    pts = np.stack([rng.uniform(0, h, n), rng.uniform(0, w, n)], 1)
    yy, xx = _coords(h, w)
    dist, idx = cKDTree(pts).query(np.stack([yy.ravel(), xx.ravel()], 1), k=2)
    vals = rng.uniform(0, 1, n).astype(np.float32)
    edge = np.clip((dist[:, 1] - dist[:, 0]) / 3.0, 0, 1).astype(np.float32)
    return (vals[idx[:, 0]] * (0.3 + 0.7 * edge)).reshape(h, w)


def colour_ramp(rng, s: np.ndarray) -> np.ndarray:
    """Map a scalar field in [0,1] through a random 2–4 colour ramp → HxWx3."""
    k = int(rng.integers(2, 5))
    stops = np.sort(rng.uniform(0, 1, k))
    stops[0], stops[-1] = 0.0, 1.0
    cols = rng.uniform(0, 1, (k, 3)).astype(np.float32)
    # make sure the ramp has contrast: first and last colours differ in brightness
    cols[0] *= rng.uniform(0.0, 0.4)
    cols[-1] = 0.6 + 0.4 * cols[-1]
    if rng.random() < 0.5:
        cols = cols[::-1]
    return np.stack([np.interp(s, stops, cols[:, c]) for c in range(3)], -1).astype(np.float32)


def image_crop(rng, h, w) -> np.ndarray | None:
    """A random, randomly scaled/flipped/rotated crop of a bundled photograph (HxWx3) or None."""
    import cv2

    imgs = bundled_images()
    if not imgs:
        return None
    img = imgs[int(rng.integers(len(imgs)))]
    scale = rng.uniform(0.6, 2.0)
    need = max(h, w) / scale
    ih, iw = img.shape[:2]
    if need > min(ih, iw):
        scale = max(h, w) / min(ih, iw) * 1.01
        need = max(h, w) / scale
    y0 = int(rng.integers(0, max(1, int(ih - need) + 1)))
    x0 = int(rng.integers(0, max(1, int(iw - need) + 1)))
    crop = img[y0:y0 + int(math.ceil(need)), x0:x0 + int(math.ceil(need))]
    crop = cv2.resize(crop, (max(h, w), max(h, w)), interpolation=cv2.INTER_LINEAR)[:h, :w]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = np.rot90(crop, int(rng.integers(4)))
    if crop.shape[:2] != (h, w):
        crop = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:  # colour jitter
        crop = crop * rng.uniform(0.6, 1.4, 3).astype(np.float32)
    return np.clip(np.ascontiguousarray(crop), 0, 1).astype(np.float32)


def random_texture(rng: np.random.Generator, h: int, w: int, kind: str | None = None) -> np.ndarray:
    """A strongly textured HxWx3 float32 image in [0,1] of a random (or the given) kind.

    Every texture is contrast-normalised and gets a fine multi-octave grain so that no region
    is flat."""
    kind = kind or TEXTURE_KINDS[int(rng.integers(len(TEXTURE_KINDS)))]
    tex = None
    if kind == "image":
        tex = image_crop(rng, h, w)
        if tex is None:
            kind = "noise"
    if tex is None:
        s = {"noise": lambda: value_noise(rng, h, w, rng.uniform(3, 12), 6),
             "stripes": lambda: stripes(rng, h, w),
             "checkers": lambda: checkers(rng, h, w),
             "dots": lambda: dots(rng, h, w),
             "cells": lambda: cells(rng, h, w)}[kind]()
        if rng.random() < 0.5:  # modulate with noise: breaks periodicity
            s = s * (0.5 + 0.5 * value_noise(rng, h, w, rng.uniform(2, 6), 3))
        tex = colour_ramp(rng, np.clip(s, 0, 1))
    # fine grain everywhere (high-frequency value noise), then stretch contrast
    grain = value_noise(rng, h, w, max(h, w) / rng.uniform(2, 4), 2, 0.5) - 0.5
    tex = tex + rng.uniform(0.15, 0.3) * grain[..., None]
    lum = tex.mean(-1)
    lo, hi = np.percentile(lum, [1, 99])
    if hi - lo < 0.35:
        mid = 0.5 * (lo + hi)
        tex = (tex - mid) * (0.35 / max(hi - lo, 1e-3)) + 0.5
    return np.clip(tex, 0, 1).astype(np.float32)


# ---- geometry ----------------------------------------------------------------------------------
def _inv_uniform(rng, near: float, far: float, size=None):
    """Depth uniform in inverse depth on [near, far]."""
    return 1.0 / rng.uniform(1.0 / far, 1.0 / near, size)


def _plane_depth(rng, h, w, d0: float, max_tilt: float, cy: float, cx: float) -> np.ndarray:
    """A plane through (cy, cx) at depth d0 whose depth changes by up to ±max_tilt·d0 across the image."""
    yy, xx = _coords(h, w)
    gy, gx = rng.uniform(-max_tilt, max_tilt, 2) * d0 / max(h, w)
    return (d0 + gy * (yy - cy) + gx * (xx - cx)).astype(np.float32)


def _polygon_mask(h, w, pts_yx: np.ndarray) -> np.ndarray:
    import cv2

    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round(pts_yx[:, ::-1]).astype(np.int32)], 1)
    return m.astype(bool)


def _shape(rng, kind: str, h: int, w: int, d0: float) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(mask [H,W] bool, depth [H,W] float32, list of per-face masks for texturing)."""
    size = max(h, w)
    cy, cx = rng.uniform(0.05, 0.95) * h, rng.uniform(0.05, 0.95) * w
    r = rng.uniform(0.08, 0.28) * size
    f_px = 0.9 * size  # a ~58° field of view, to give spheres and boxes a plausible metric extent
    yy, xx = _coords(h, w)
    if kind == "plane":
        n = int(rng.integers(3, 8))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.6, 1.2, n)
        pts = np.stack([cy + rad * np.sin(ang), cx + rad * np.cos(ang)], 1)
        mask = _polygon_mask(h, w, pts)
        depth = _plane_depth(rng, h, w, d0, 0.6, cy, cx)
        return mask, depth, [mask]
    if kind == "sphere":
        rho2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (r * r)
        mask = rho2 < 1.0
        big_r = r * d0 / f_px  # metric radius
        depth = (d0 - big_r * np.sqrt(np.clip(1.0 - rho2, 0, 1))).astype(np.float32)
        return mask, depth, [mask]
    if kind == "box":
        # front face: a rotated rectangle at constant-ish depth; a side face sheared off one edge,
        # receding by the box's metric depth extent.
        th = rng.uniform(0, np.pi / 2)
        a, b = r * rng.uniform(0.5, 1.0), r * rng.uniform(0.5, 1.0)
        c, s = np.cos(th), np.sin(th)
        corners = np.array([[-a, -b], [-a, b], [a, b], [a, -b]])
        front = np.stack([cy + corners[:, 0] * c - corners[:, 1] * s, cx + corners[:, 0] * s + corners[:, 1] * c], 1)
        off = rng.uniform(-0.5, 0.5, 2) * r
        mids = 0.5 * (front + np.roll(front, -1, 0))
        i0 = int(np.argmax((mids - front.mean(0)) @ off))  # the edge facing the offset
        e0, e1 = front[i0], front[(i0 + 1) % 4]
        side = np.stack([e0, e1, e1 + off, e0 + off])
        fm, sm = _polygon_mask(h, w, front), _polygon_mask(h, w, side)
        sm &= ~fm
        extent = rng.uniform(0.1, 0.4) * d0
        depth = np.full((h, w), d0, np.float32)
        # depth on the side face grows with the distance travelled along `off`
        t = ((yy - e0[0]) * off[0] + (xx - e0[1]) * off[1]) / max(float(off @ off), 1e-6)
        depth = np.where(sm, d0 + extent * np.clip(t, 0, 1), depth).astype(np.float32)
        depth = np.where(fm, _plane_depth(rng, h, w, d0, 0.2, cy, cx), depth).astype(np.float32)
        return fm | sm, depth, [fm, sm]
    if kind == "blob":
        field = value_noise(rng, h, w, rng.uniform(2, 5), 3)
        rho2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (r * r * 1.5)
        mask = (field - rho2) > rng.uniform(-0.1, 0.3)
        mask &= rho2 < 1.5
        bump = value_noise(rng, h, w, rng.uniform(2, 4), 2)
        depth = (d0 * (1.0 + rng.uniform(0.0, 0.08) * (bump - 0.5))).astype(np.float32)
        return mask, depth, [mask]
    raise ValueError(f"unknown shape kind {kind!r}; known: {', '.join(SHAPE_KINDS)}")


def zbuffer_paint(image: np.ndarray, depth: np.ndarray, obj_image: np.ndarray, obj_depth: np.ndarray,
                  mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer compositing: inside ``mask``, the object replaces colour and depth wherever it is
    nearer than what is there (image HxWx3, depth/mask HxW). Order-independent."""
    win = mask & (obj_depth < depth)
    return np.where(win[..., None], obj_image, image), np.where(win, obj_depth, depth)


def generate_scene(seed: int | Sequence[int], size_hw: tuple[int, int] = (256, 256),
                   depth_range_m: tuple[float, float] = (0.5, 4.0), num_objects: tuple[int, int] = (3, 8),
                   shapes: Sequence[str] = SHAPE_KINDS, use_images: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """A random textured scene.

    Args:
        seed: numpy Generator seed (int or sequence of ints); same seed → same arrays.
        size_hw: (H, W).
        depth_range_m: (near, far); every depth lies inside it.
        num_objects: inclusive range of the number of objects in front of the wall.
        shapes: object kinds to draw from ("plane", "sphere", "box", "blob").
        use_images: allow crops of the bundled scikit-image photographs as textures.

    Returns:
        aif [3,H,W] float32 in [0,1] and depth_m [H,W] float32 metres.
    """
    near, far = float(depth_range_m[0]), float(depth_range_m[1])
    if not (0 < near < far and math.isfinite(far)):
        raise ValueError(f"depth_range_m must satisfy 0 < near < far, got {depth_range_m}")
    h, w = int(size_hw[0]), int(size_hw[1])
    if h < 8 or w < 8:
        raise ValueError(f"size_hw must be at least 8×8, got {size_hw}")
    rng = np.random.default_rng(seed)
    kinds = [k for k in TEXTURE_KINDS if use_images or k != "image"]

    def tex():
        return random_texture(rng, h, w, kinds[int(rng.integers(len(kinds)))])

    # back wall: far (the farthest quarter of the inverse-depth range), slanted
    inv_near, inv_far = 1.0 / near, 1.0 / far
    wall_d0 = 1.0 / rng.uniform(inv_far, inv_far + 0.25 * (inv_near - inv_far))
    depth = _plane_depth(rng, h, w, wall_d0, 0.5, h / 2, w / 2)
    depth = np.clip(depth, near, far)
    image = tex()
    wall_min = float(depth.min())

    n = int(rng.integers(num_objects[0], num_objects[1] + 1))
    for _ in range(n):
        kind = shapes[int(rng.integers(len(shapes)))]
        d0 = float(_inv_uniform(rng, near, max(near * 1.0001, 0.95 * wall_min)))
        mask, odepth, faces = _shape(rng, kind, h, w, d0)
        odepth = np.clip(odepth, near, far)
        if not (mask & (odepth < depth)).any():
            continue
        for fm in faces:
            image, depth = zbuffer_paint(image, depth, tex(), odepth, mask & fm)
    aif = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
    return aif, torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))


def make_procedural_sample(seed: int | Sequence[int], camera: FocalStackCamera | None = None,
                           size_hw: tuple[int, int] = (256, 256), noise_std: float = 0.01,
                           quantize_bits: int | None = 8, occlusion_aware: bool = False,
                           name: str | None = None, depth_range_m: tuple[float, float] | None = None,
                           kernel_size: int | None = None, psf: str = "gaussian",
                           num_layers: int = 16, **scene_kw) -> FocalStackSample:
    """A procedural scene rendered into a focal stack by ``camera`` (default: the "procedural" preset).

    Depth is drawn from ``depth_range_m`` (default: the camera's effective depth range). Frames
    get Gaussian sensor noise (std ``noise_std`` in [0,1] units, 0 = none) and are rounded to
    ``quantize_bits`` (8 → multiples of 1/255; None/0 → no rounding); the AIF is quantised too
    (no noise). The noise is seeded from ``seed`` as well, so the whole sample is deterministic.
    """
    from .synthesis import make_sample

    camera = camera or get_preset("procedural")
    dr = depth_range_m or camera.effective_depth_range_m()
    aif, depth = generate_scene(seed, size_hw, dr, **scene_kw)
    seq = list(seed) if isinstance(seed, (list, tuple)) else [int(seed)]
    if name is None:
        name = "procedural_" + "_".join(str(s) for s in seq)
    return make_sample(aif, depth, camera, name, occlusion_aware=occlusion_aware, noise_std=noise_std,
                       quantize_bits=quantize_bits, seed=seq + [0x5E4503], kernel_size=kernel_size, psf=psf,
                       num_layers=num_layers, source=name)
