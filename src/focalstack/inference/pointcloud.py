"""A coloured point cloud from a metric depth map, the all-in-focus image and the camera
(``focalstack predict --export ply`` → ``points.ply``).

Geometry: a pinhole camera with the thin lens's focal length, ``focal_px = focal_length_m /
pixel_size_m`` (the pixel pitch at the frames' resolution), square pixels, the principal point at
the image centre ``cx = (W − 1)/2``, ``cy = (H − 1)/2`` (pixel centres at integer coordinates), and
depth = distance along the optical axis (z), as in every depth map of the sample format. Camera
frame (OpenCV's): x right, y down, z forward, metres, origin at the lens centre::

    X = (u − cx) · Z / focal_px,   Y = (v − cy) · Z / focal_px,   Z = depth[v, u]

Caveat: a lens focused at distance d_f sits f·d_f/(d_f − f) from the sensor, not f, so the true
pinhole focal length of a focused frame is slightly longer (≈ 2.6 % for 50 mm focused at 2 m) —
the renderer ignores this focus breathing too, and an imported stack is aligned to its middle frame.

The file: PLY 1.0, ``binary_little_endian``, one ``vertex`` element with ``float x, y, z`` (metres)
and ``uchar red, green, blue`` (sRGB display colours of the AIF), row-major over the pixels with
valid depth (finite, > 0); invalid pixels are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["backproject", "write_ply", "read_ply", "camera_intrinsics", "prediction_points"]


def backproject(depth_m, focal_px: float, cx: float, cy: float) -> np.ndarray:
    """Pixels → 3-D points in the camera frame (see module doc).

    depth_m: [H,W] metres (z along the optical axis), numpy or torch; focal_px: focal length in
    pixels; cx, cy: principal point in pixels (pixel centres at integer coordinates).
    Returns [H·W, 3] float64 metres (x right, y down, z forward), row-major; points of invalid depth
    carry that depth's value (NaN/inf/≤ 0) through — filter them with ``np.isfinite(z) & (z > 0)``."""
    d = depth_m.detach().cpu().numpy() if isinstance(depth_m, torch.Tensor) else np.asarray(depth_m)
    if d.ndim != 2:
        raise ValueError(f"depth must be [H,W], got shape {d.shape}")
    if not (np.isfinite(focal_px) and focal_px > 0):
        raise ValueError(f"focal length must be a positive number of pixels, got {focal_px}")
    h, w = d.shape
    z = d.astype(np.float64)
    v, u = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    with np.errstate(invalid="ignore"):          # inf depth on the optical axis: 0·inf = NaN, left out later
        x = (u - cx) * z / focal_px
        y = (v - cy) * z / focal_px
    return np.stack([x, y, z], axis=-1).reshape(-1, 3)


def camera_intrinsics(camera, size_hw: tuple[int, int]) -> tuple[float, float, float]:
    """(focal_px, cx, cy) of a :class:`focalstack.optics.FocalStackCamera` for frames of ``size_hw``:
    focal length / pixel pitch, principal point at the image centre."""
    h, w = size_hw
    return camera.lens.focal_length_m / camera.lens.pixel_size_m, (w - 1) / 2.0, (h - 1) / 2.0


def write_ply(path: str | Path, xyz: np.ndarray, rgb: np.ndarray) -> int:
    """Write a binary little-endian PLY of N coloured vertices. xyz: [N,3] metres (stored as float32);
    rgb: [N,3] uint8 (or floats in [0,1], rounded). Returns N. Writes ``path`` directly: callers that
    need atomicity write into a temporary folder (as :func:`focalstack.inference.write_prediction`)."""
    xyz = np.asarray(xyz)
    rgb = np.asarray(rgb)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or rgb.shape != xyz.shape:
        raise ValueError(f"xyz and rgb must both be [N,3], got {xyz.shape} and {rgb.shape}")
    if rgb.dtype != np.uint8:
        rgb = np.round(np.clip(rgb.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    n = xyz.shape[0]
    vert = np.empty(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                              ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vert["x"], vert["y"], vert["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    vert["red"], vert["green"], vert["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    header = ("ply\nformat binary_little_endian 1.0\ncomment focalstack point cloud: metres, camera frame "
              "x right y down z forward\n"
              f"element vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(vert.tobytes())
    return n


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read back a PLY written by :func:`write_ply`: (xyz [N,3] float32, rgb [N,3] uint8).
    Raises ValueError (naming the file) on another layout or a truncated file."""
    path = Path(path)
    data = path.read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError(f"{path}: not a PLY file")
    lines = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise ValueError(f"{path}: not binary little-endian PLY")
    n = next((int(ln.split()[2]) for ln in lines if ln.startswith("element vertex ")), None)
    props = [ln.split()[2] for ln in lines if ln.startswith("property ")]
    if n is None or props != ["x", "y", "z", "red", "green", "blue"]:
        raise ValueError(f"{path}: expected one vertex element with x y z red green blue, got {props}")
    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    body = data[end + len(b"end_header\n"):]
    if len(body) != n * dt.itemsize:
        raise ValueError(f"{path}: {len(body)} bytes of vertex data, expected {n} × {dt.itemsize}")
    v = np.frombuffer(body, dtype=dt, count=n)
    return (np.stack([v["x"], v["y"], v["z"]], axis=1), np.stack([v["red"], v["green"], v["blue"]], axis=1))


def prediction_points(depth_m, aif: torch.Tensor, camera) -> tuple[np.ndarray, np.ndarray]:
    """The valid points of a metric prediction: depth [H,W] metres, aif [3,H,W] in the pipeline's
    working encoding, the sample's camera → (xyz [N,3] metres, rgb [N,3] uint8 sRGB), N = pixels with
    finite depth > 0."""
    from ..data.encoding import from_working
    d = depth_m.detach().float().cpu() if isinstance(depth_m, torch.Tensor) else torch.as_tensor(depth_m).float()
    h, w = d.shape
    xyz = backproject(d, *camera_intrinsics(camera, (h, w)))
    colour = from_working(aif.detach().float().cpu().clamp(0, 1), "srgb")       # display colours
    rgb = np.round(colour.permute(1, 2, 0).reshape(-1, 3).numpy() * 255).astype(np.uint8)
    z = xyz[:, 2]
    keep = np.isfinite(z) & (z > 0)
    return xyz[keep], rgb[keep]
