"""Thin-lens circle of confusion (CoC) and the Gaussian PSF width derived from it.

Units: every length is in metres unless the name ends in ``_px`` (pixels).
Functions accept Python floats or tensors and broadcast; tensors stay differentiable.

CoC diameter (Gur & Wolf 2019, eq. 1; the thin-lens equation)::

    C_m = (f / N) · |d − d_f| / d · f / (d_f − f)

with focal length f, f-number N, object depth d and focus distance d_f.

PSF width convention (explicit, never implicit): the Gaussian standard deviation in
pixels is ``sigma_px = psf_scale · coc_px``. The default ``psf_scale = 0.25`` is the
per-axis standard deviation of a uniform disk of diameter C (radius ρ has per-axis
variance ρ²/4, so σ = ρ/2 = C/4). Gur & Wolf's eq. 4 writes σ = C/2 (psf_scale 0.5).
The authors' code of the core paper (DEReD) passes the CoC *radius* in pixels as the
kernel's ``c`` and its kernel uses σ = c/2, so it effectively renders with σ = C/4,
i.e. psf_scale 0.25 — the same as our default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Union

import torch

Number = Union[float, torch.Tensor]

DEFAULT_PSF_SCALE = 0.25


def coc_diameter_m(depth_m, focus_m, focal_length_m, f_number):
    """The thin-lens circle of confusion on the sensor, metres — the one definition every camera
    type and model uses: C = (f/N) · |d − d_f| / d · f / (d_f − f). Arguments broadcast (floats
    or tensors; depth and focus in metres, f in metres)."""
    f = focal_length_m
    return (f / f_number) * (depth_m - focus_m).abs() / depth_m * f / (focus_m - f)


def _as_tensor(x: Number, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if like is not None:
        return torch.as_tensor(x, dtype=like.dtype, device=like.device)
    return torch.as_tensor(x, dtype=torch.float64)  # plain numbers: compute in double


@dataclass(frozen=True)
class ThinLens:
    """An ideal thin lens on a pixel sensor.

    Args:
        focal_length_m: focal length f in metres.
        f_number: f-number N (aperture diameter = f / N).
        pixel_size_m: pixel pitch in metres (of the images you render, i.e. after any resize).
        psf_scale: Gaussian σ in pixels per pixel of CoC diameter (see module docstring).
    """

    focal_length_m: float
    f_number: float
    pixel_size_m: float
    psf_scale: float = DEFAULT_PSF_SCALE

    def __post_init__(self) -> None:
        for name in ("focal_length_m", "f_number", "pixel_size_m", "psf_scale"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"ThinLens: {name} must be a positive finite number, got {v!r}")

    @property
    def aperture_m(self) -> float:
        """Aperture diameter f / N in metres."""
        return self.focal_length_m / self.f_number

    def with_f_number(self, f_number: float) -> "ThinLens":
        return replace(self, f_number=float(f_number))

    def coc_m(self, depth_m: Number, focus_m: Number, f_number: Number | None = None) -> torch.Tensor:
        """CoC diameter on the sensor in metres; broadcasts depth_m against focus_m.

        ``f_number`` overrides the lens's own (per-frame apertures); it broadcasts too.
        Focus distances must exceed the focal length (the lens cannot focus closer).
        """
        d = _as_tensor(depth_m)
        df = _as_tensor(focus_m, d)
        n = _as_tensor(self.f_number if f_number is None else f_number, d)
        return coc_diameter_m(d, df, self.focal_length_m, n)

    def coc_px(self, depth_m: Number, focus_m: Number, f_number: Number | None = None) -> torch.Tensor:
        """CoC diameter in pixels (``coc_m / pixel_size_m``)."""
        return self.coc_m(depth_m, focus_m, f_number) / self.pixel_size_m

    def sigma_px(self, depth_m: Number, focus_m: Number, f_number: Number | None = None) -> torch.Tensor:
        """Gaussian PSF standard deviation in pixels: ``psf_scale · coc_px``."""
        return self.psf_scale * self.coc_px(depth_m, focus_m, f_number)

    # ---- inverse relations -------------------------------------------------------------
    def depths_for_coc(self, coc_px: float, focus_m: float, f_number: float | None = None) -> tuple[float, float]:
        """The two depths (near, far) in metres whose CoC diameter equals ``coc_px`` at ``focus_m``.

        Solves C·d = K·|d − d_f| with K = f²/(N·(d_f − f)) (in pixels: divided by the pixel size):
        near = K·d_f/(K + C) and far = K·d_f/(K − C), far = inf when C ≥ K (everything behind is sharper).
        """
        if coc_px < 0:
            raise ValueError(f"coc_px must be >= 0, got {coc_px}")
        n = self.f_number if f_number is None else f_number
        f = self.focal_length_m
        if focus_m <= f:
            raise ValueError(f"focus distance {focus_m} m must exceed the focal length {f} m")
        k_px = f * f / (n * (focus_m - f)) / self.pixel_size_m
        near = k_px * focus_m / (k_px + coc_px)
        far = k_px * focus_m / (k_px - coc_px) if coc_px < k_px else math.inf
        return near, far

    def depth_of_field(self, focus_m: float, max_coc_px: float = 1.0, f_number: float | None = None) -> tuple[float, float]:
        """Near and far limits (metres) of the zone whose CoC stays ≤ ``max_coc_px`` pixels."""
        return self.depths_for_coc(max_coc_px, focus_m, f_number)

    def max_coc_px(self, focus_m: float, f_number: float | None = None) -> float:
        """CoC diameter (px) of a point at infinity: the asymptote of coc_px for d → ∞."""
        n = self.f_number if f_number is None else f_number
        f = self.focal_length_m
        return f * f / (n * (focus_m - f)) / self.pixel_size_m
