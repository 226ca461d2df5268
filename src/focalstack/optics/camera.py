"""A focal-stack camera: one thin lens, F frames each with a focus distance (and optionally
its own f-number), plus the depth range a model should predict in.

On disk it is ``camera.json`` inside every sample folder::

    {"focal_length_m": 0.05, "f_number": 4.0, "pixel_size_m": 7.3e-05,
     "focus_distances_m": [0.8, 1.2, 1.8, 2.7, 4.0],
     "f_numbers": [...],            # optional, one per frame (two-aperture stacks)
     "depth_range_m": [0.5, 10.0],  # optional
     "psf_scale": 0.25,             # optional, default 0.25 (see focalstack.optics.thin_lens)
     "focus_known": true,           # false: focus distances are placeholders (import without focus)
     "lens_known": true,            # false: focal length / f-number / pixel size are placeholders
     "encoding": "srgb"}            # how the sample's image files encode light: "srgb" (default when
                                    # absent) or "linear" (16-bit frames from camera RAW); see
                                    # focalstack.data.encoding
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from .thin_lens import DEFAULT_PSF_SCALE, ThinLens, coc_diameter_m


class CameraError(ValueError):
    """A camera description is missing, malformed or physically impossible."""


ENCODINGS = ("srgb", "linear")
"""Pixel encodings a sample's image files may have (camera.json ``encoding``; :mod:`focalstack.data.encoding`)."""
DEFAULT_ENCODING = "srgb"


@dataclass(frozen=True)
class FocalStackCamera:
    """Thin lens + per-frame focus distances (metres) and optional per-frame f-numbers.

    ``depth_range_m`` (near, far) bounds the depth a model predicts; when absent,
    :meth:`default_depth_range_m` derives one from the focus distances.
    ``focus_known`` / ``lens_known``: False when the focus distances / the lens values are
    placeholders (``focalstack import`` without metadata): depth is then relative, not metric.
    ``encoding``: how the sample's image files encode light, ``"srgb"`` (default) or ``"linear"``
    (frames imported from camera RAW); it describes the files, not the optics, and travels with the
    camera because camera.json is the sample's one metadata file (see :mod:`focalstack.data.encoding`).
    """

    lens: ThinLens
    focus_distances_m: tuple[float, ...]
    f_numbers: tuple[float, ...] | None = None
    depth_range_m: tuple[float, float] | None = None
    source: str = field(default="", compare=False)
    focus_known: bool = True
    lens_known: bool = True
    encoding: str = DEFAULT_ENCODING

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise CameraError(f"encoding must be one of {', '.join(repr(e) for e in ENCODINGS)}, got {self.encoding!r}")
        fd = tuple(float(x) for x in self.focus_distances_m)
        object.__setattr__(self, "focus_distances_m", fd)
        if len(fd) == 0:
            raise CameraError("focus_distances_m is empty")
        for x in fd:
            if not math.isfinite(x) or x <= self.lens.focal_length_m:
                raise CameraError(
                    f"focus distance {x} m is not finite or not beyond the focal length {self.lens.focal_length_m} m")
        if self.f_numbers is not None:
            fn = tuple(float(x) for x in self.f_numbers)
            object.__setattr__(self, "f_numbers", fn)
            if len(fn) != len(fd):
                raise CameraError(f"f_numbers has {len(fn)} entries but focus_distances_m has {len(fd)}")
            if any((not math.isfinite(x)) or x <= 0 for x in fn):
                raise CameraError(f"f_numbers must be positive, got {list(fn)}")
        if self.depth_range_m is not None:
            near, far = (float(x) for x in self.depth_range_m)
            if not (0 < near < far) or not math.isfinite(far):
                raise CameraError(f"depth_range_m must be 0 < near < far < inf, got {[near, far]}")
            object.__setattr__(self, "depth_range_m", (near, far))

    # ---- per-frame quantities -----------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return len(self.focus_distances_m)

    def frame_f_numbers(self) -> tuple[float, ...]:
        return self.f_numbers if self.f_numbers is not None else (self.lens.f_number,) * self.num_frames

    def _per_frame(self, depth_m: torch.Tensor, frames: Sequence[int] | None):
        """Broadcast helpers: depth [B,1,H,W] (or [B,H,W]) → focus/N of shape [1,F,1,1,1]."""
        if depth_m.dim() == 3:
            depth_m = depth_m.unsqueeze(1)
        if depth_m.dim() != 4 or depth_m.shape[1] != 1:
            raise ValueError(f"depth_m must be [B,1,H,W] or [B,H,W], got {tuple(depth_m.shape)}")
        idx = list(range(self.num_frames)) if frames is None else list(frames)
        fd = torch.tensor([self.focus_distances_m[i] for i in idx], dtype=depth_m.dtype, device=depth_m.device)
        fn = torch.tensor([self.frame_f_numbers()[i] for i in idx], dtype=depth_m.dtype, device=depth_m.device)
        return depth_m.unsqueeze(1), fd.view(1, -1, 1, 1, 1), fn.view(1, -1, 1, 1, 1)

    def coc_px(self, depth_m: torch.Tensor, frames: Sequence[int] | None = None) -> torch.Tensor:
        """CoC diameter in pixels per frame: depth [B,1,H,W] → [B,F,1,H,W]."""
        d, fd, fn = self._per_frame(depth_m, frames)
        return self.lens.coc_px(d, fd, fn)

    def sigma_px(self, depth_m: torch.Tensor, frames: Sequence[int] | None = None) -> torch.Tensor:
        """Gaussian PSF σ in pixels per frame: depth [B,1,H,W] → [B,F,1,H,W]."""
        d, fd, fn = self._per_frame(depth_m, frames)
        return self.lens.sigma_px(d, fd, fn)

    def max_sigma_px(self, depth_range_m: tuple[float, float] | None = None) -> float:
        """The largest Gaussian σ (px) any frame shows over ``depth_range_m`` (near, far) metres, default
        the effective range. σ_k grows with |1/d − 1/d_k| on either side of the focus, so it peaks at
        one of the range's ends."""
        near, far = depth_range_m if depth_range_m is not None else self.effective_depth_range_m()
        return max(float(self.lens.sigma_px(d, fd, n))
                   for fd, n in zip(self.focus_distances_m, self.frame_f_numbers()) for d in (near, far))

    def sigma_slope_px(self, frames: Sequence[int] | None = None) -> torch.Tensor:
        """a_k (px·m), float64 [F]: the thin-lens σ_k = a_k·|1/d − 1/d_k| is linear in inverse depth
        (C = f²·d_k/(N_k·(d_k − f))·|1/d − 1/d_k|), so a renderer working in inverse depth needs
        one multiply per pixel. Evaluated through :meth:`sigma_px` at d = d_k/2, where
        |1/d − 1/d_k| = 1/d_k (one owner of the formula)."""
        idx = list(range(self.num_frames)) if frames is None else list(frames)
        fd = torch.tensor([self.focus_distances_m[i] for i in idx], dtype=torch.float64)
        s = self.sigma_px((fd / 2).view(1, 1, 1, -1), frames)[0, :, 0, 0]     # [F frames, F depths]
        return s.diagonal() * fd

    # ---- derived cameras ----------------------------------------------------------------
    def subset(self, frames: Sequence[int]) -> "FocalStackCamera":
        """The camera of a sub-stack (frames in the given order)."""
        fn = None if self.f_numbers is None else tuple(self.f_numbers[i] for i in frames)
        return replace(self, focus_distances_m=tuple(self.focus_distances_m[i] for i in frames), f_numbers=fn)

    def resized(self, factor: float) -> "FocalStackCamera":
        """The camera of images resized by ``factor`` (0.5 = half size): pixels grow by 1/factor."""
        return replace(self, lens=replace(self.lens, pixel_size_m=self.lens.pixel_size_m / factor))

    def scaled(self, s: float) -> "FocalStackCamera":
        """DDFS scale augmentation (Fujimura et al. 2024): focal length, focus distances and the
        depth range × s and the pixel size × s, so every CoC *in pixels* is unchanged for depth × s.

        C_m = f²|d − d_f|/(N·d·(d_f − f)) is homogeneous of degree 1 in (f, d, d_f), so scaling
        all three by s scales C_m by s; scaling the pixel pitch by s keeps C_px fixed.
        """
        if not (s > 0 and math.isfinite(s)):
            raise ValueError(f"scale must be positive, got {s}")
        lens = replace(self.lens, focal_length_m=self.lens.focal_length_m * s,
                       pixel_size_m=self.lens.pixel_size_m * s)
        dr = None if self.depth_range_m is None else (self.depth_range_m[0] * s, self.depth_range_m[1] * s)
        return replace(self, lens=lens, focus_distances_m=tuple(x * s for x in self.focus_distances_m),
                       depth_range_m=dr)

    def default_depth_range_m(self) -> tuple[float, float]:
        """The depth range used when none is given: [0.5·nearest focus, 2·farthest focus],
        never closer than twice the focal length. Documented default, override with depth_range_m."""
        near = max(0.5 * min(self.focus_distances_m), 2.0 * self.lens.focal_length_m)
        far = 2.0 * max(self.focus_distances_m)
        return near, far

    def effective_depth_range_m(self) -> tuple[float, float]:
        return self.depth_range_m if self.depth_range_m is not None else self.default_depth_range_m()

    # ---- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "focal_length_m": self.lens.focal_length_m,
            "f_number": self.lens.f_number,
            "pixel_size_m": self.lens.pixel_size_m,
            "focus_distances_m": list(self.focus_distances_m),
        }
        if self.f_numbers is not None:
            d["f_numbers"] = list(self.f_numbers)
        if self.depth_range_m is not None:
            d["depth_range_m"] = list(self.depth_range_m)
        if self.lens.psf_scale != DEFAULT_PSF_SCALE:
            d["psf_scale"] = self.lens.psf_scale
        d["focus_known"] = self.focus_known
        d["lens_known"] = self.lens_known
        d["encoding"] = self.encoding
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "camera") -> "FocalStackCamera":
        if not isinstance(d, dict):
            raise CameraError(f"{where}: expected a JSON object, got {type(d).__name__}")
        missing = [k for k in ("focal_length_m", "f_number", "pixel_size_m", "focus_distances_m") if k not in d]
        if missing:
            raise CameraError(f"{where}: missing key(s) {', '.join(missing)}")
        try:
            lens = ThinLens(float(d["focal_length_m"]), float(d["f_number"]), float(d["pixel_size_m"]),
                            float(d.get("psf_scale", DEFAULT_PSF_SCALE)))
            fd = d["focus_distances_m"]
            if not isinstance(fd, (list, tuple)):
                raise CameraError("focus_distances_m must be a list of numbers")
            flags = {}
            for key in ("focus_known", "lens_known"):
                v = d.get(key, True)
                if not isinstance(v, bool):
                    raise CameraError(f"{key} must be true or false, got {v!r}")
                flags[key] = v
            enc = d.get("encoding", DEFAULT_ENCODING)
            if not isinstance(enc, str) or enc not in ENCODINGS:
                raise CameraError(f"encoding must be one of {', '.join(repr(e) for e in ENCODINGS)}, got {enc!r}")
            flags["encoding"] = enc
            return cls(lens, tuple(float(x) for x in fd),
                       None if d.get("f_numbers") is None else tuple(float(x) for x in d["f_numbers"]),
                       None if d.get("depth_range_m") is None else tuple(float(x) for x in d["depth_range_m"]),
                       **flags)
        except CameraError as e:
            raise CameraError(f"{where}: {e}") from None
        except (TypeError, ValueError) as e:
            raise CameraError(f"{where}: {e}") from None

    @classmethod
    def load(cls, path: str | Path) -> "FocalStackCamera":
        path = Path(path)
        if not path.is_file():
            raise CameraError(f"{path}: camera file not found")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise CameraError(f"{path}: malformed JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d, where=str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def coc_table(camera: FocalStackCamera, depths_m: Sequence[float] | None = None) -> tuple[list[float], list[list[float]]]:
    """CoC diameters in pixels: rows = depths (metres), columns = frames. Returns (depths, rows)."""
    if depths_m is None:
        near, far = camera.effective_depth_range_m()
        n = 9
        # geometric spacing: defocus varies with inverse depth
        depths_m = [near * (far / near) ** (i / (n - 1)) for i in range(n)]
    d = torch.tensor(list(depths_m), dtype=torch.float64).view(1, 1, -1, 1)
    c = camera.coc_px(d)[0, :, 0, :, 0]  # [F, D]
    return list(depths_m), c.T.tolist()


def format_coc_table(camera: FocalStackCamera, depths_m: Sequence[float] | None = None) -> str:
    depths, rows = coc_table(camera, depths_m)
    fns = camera.frame_f_numbers()
    head = ["depth [m]"] + [f"{fd:g} m f/{n:g}" for fd, n in zip(camera.focus_distances_m, fns)]
    lines = [
        f"lens: f = {camera.lens.focal_length_m * 1e3:g} mm, f/{camera.lens.f_number:g}, "
        f"pixel {camera.lens.pixel_size_m * 1e6:g} µm, σ = {camera.lens.psf_scale:g}·CoC",
        "CoC diameter in pixels (σ_px = psf_scale × CoC):",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for d, r in zip(depths, rows):
        lines.append("| " + " | ".join([f"{d:.3f}"] + [f"{v:.2f}" for v in r]) + " |")
    lines.append("depth of field (CoC ≤ 1 px): " + ", ".join(
        f"{fd:g} m → [{a:.3f}, {'inf' if math.isinf(b) else f'{b:.3f}'}] m"
        for fd, n in zip(camera.focus_distances_m, fns)
        for a, b in [camera.lens.depth_of_field(fd, 1.0, n)]))
    return "\n".join(lines)


@dataclass
class CameraBatch:
    """Per-sample camera parameters as tensors, for batches that mix cameras or stack orders.

    focal_length_m, pixel_size_m, psf_scale: [B]; focus_distances_m, f_numbers: [B,F] (metres / f-number).
    Built by :meth:`from_cameras` or from a collated ``camera`` dict of :class:`focalstack.data.FocalStackDataset`.
    """

    focal_length_m: torch.Tensor
    pixel_size_m: torch.Tensor
    psf_scale: torch.Tensor
    focus_distances_m: torch.Tensor
    f_numbers: torch.Tensor

    KEYS = ("focal_length_m", "pixel_size_m", "psf_scale", "focus_distances_m", "f_numbers")

    @classmethod
    def from_cameras(cls, cameras: Sequence[FocalStackCamera], device=None, dtype=torch.float32) -> "CameraBatch":
        return cls.from_dict(default_collate_cameras([camera_tensors(c) for c in cameras]), device, dtype)

    @classmethod
    def from_dict(cls, d: dict[str, torch.Tensor], device=None, dtype=torch.float32) -> "CameraBatch":
        return cls(**{k: torch.as_tensor(d[k]).to(device=device, dtype=dtype) for k in cls.KEYS})

    @property
    def num_frames(self) -> int:
        return int(self.focus_distances_m.shape[1])

    def to(self, device=None, dtype=None) -> "CameraBatch":
        return CameraBatch(**{k: getattr(self, k).to(device=device, dtype=dtype) for k in self.KEYS})

    def coc_px(self, depth_m: torch.Tensor) -> torch.Tensor:
        """CoC diameter in pixels: depth [B,1,H,W] → [B,F,1,H,W]."""
        if depth_m.dim() == 3:
            depth_m = depth_m.unsqueeze(1)
        d = depth_m.unsqueeze(1)                                  # [B,1,1,H,W]
        v = lambda t: t.view(t.shape[0], -1, 1, 1, 1)             # noqa: E731
        return coc_diameter_m(d, v(self.focus_distances_m), v(self.focal_length_m), v(self.f_numbers)) \
            / v(self.pixel_size_m)

    def sigma_px(self, depth_m: torch.Tensor) -> torch.Tensor:
        """Gaussian σ in pixels: depth [B,1,H,W] → [B,F,1,H,W]."""
        return self.coc_px(depth_m) * self.psf_scale.view(-1, 1, 1, 1, 1)


def camera_tensors(camera: FocalStackCamera, frames: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """A camera as a dict of float64 tensors (collatable by torch's default_collate)."""
    cam = camera if frames is None else camera.subset(frames)
    return {
        "focal_length_m": torch.tensor(cam.lens.focal_length_m, dtype=torch.float64),
        "pixel_size_m": torch.tensor(cam.lens.pixel_size_m, dtype=torch.float64),
        "psf_scale": torch.tensor(cam.lens.psf_scale, dtype=torch.float64),
        "focus_distances_m": torch.tensor(cam.focus_distances_m, dtype=torch.float64),
        "f_numbers": torch.tensor(cam.frame_f_numbers(), dtype=torch.float64),
    }


def default_collate_cameras(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in CameraBatch.KEYS}
