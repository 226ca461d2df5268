"""Point-spread functions of one source pixel, as functions of the tap offset and the
source's Gaussian σ in pixels. Shared by every render backend (the reference and the fused
kernels must compute exactly these weights).

* ``gaussian``: G_σ(u) = exp(−|u|²/2σ²) / (2πσ²).
* ``disk``: an anti-aliased pillbox of radius ρ = 2σ, i.e. diameter 4σ — the disk whose
  per-axis standard deviation is σ, so with the default psf_scale 0.25 its diameter is the
  CoC. Weight clamp(ρ − |u| + ½, 0, 1) / A(ρ), A the area of that anti-aliased disk
  (πρ² + π/12 for ρ ≥ ½, π(ρ + ½)³/3 below), so both PSFs integrate to ≈ 1 per source.

σ is clamped below at ``SIGMA_MIN_PX`` = 1e-4 px: below it every off-centre weight is
exp(−5·10⁷) = 0 in any float type, i.e. the exact identity, and the true gradient there is
that exponentially small too, so the clamp adds no dead zone that matters.
"""

from __future__ import annotations

import math

import torch

SIGMA_MIN_PX = 1e-4
PSFS = ("gaussian", "disk")


def support_radius_px(max_sigma_px: float, psf: str) -> int:
    """Half-width R of the smallest window (2R+1) that holds the PSF: ±3σ (Gaussian), ρ+½ (disk)."""
    if psf == "gaussian":
        return int(math.ceil(3.0 * max_sigma_px - 1e-9))
    return int(math.ceil(2.0 * max_sigma_px + 0.5 - 1e-9))


def window_size_px(max_sigma_px: float, psf: str = "gaussian", cap: int | None = None) -> int:
    """The render window k = 2R + 1 (odd, px) holding the PSF of the largest σ — 2⌈3σ⌉ + 1 for the
    Gaussian — capped at the largest odd k ≤ ``cap`` (wider blur is then truncated)."""
    k = 2 * support_radius_px(max_sigma_px, psf) + 1
    if cap is not None:
        k = min(k, cap if cap % 2 == 1 else cap - 1)
    return max(1, k)


def weight(r2: float, sigma: torch.Tensor, psf: str) -> torch.Tensor:
    """Weight of a tap at squared distance ``r2`` (px²) from a source with std ``sigma`` (px)."""
    s = sigma.clamp_min(SIGMA_MIN_PX)
    if psf == "gaussian":
        inv2s2 = 0.5 / (s * s)
        return torch.exp(-r2 * inv2s2) * (inv2s2 / math.pi)
    rho = 2.0 * s
    cover = (rho - math.sqrt(r2) + 0.5).clamp(0.0, 1.0)
    return cover / _disk_area(rho)


def weight_and_dsigma(r2: float, sigma: torch.Tensor, psf: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(w, ∂w/∂σ) for the tap; ∂w/∂σ is zero where σ was clamped."""
    s = sigma.clamp_min(SIGMA_MIN_PX)
    live = (sigma >= SIGMA_MIN_PX).to(sigma.dtype)
    if psf == "gaussian":
        inv_s2 = 1.0 / (s * s)
        w = torch.exp(-0.5 * r2 * inv_s2) * (0.5 * inv_s2 / math.pi)
        # d/dσ [exp(−r²/2σ²)/(2πσ²)] = w · (r² − 2σ²)/σ³
        dw = w * (r2 * inv_s2 - 2.0) / s * live
        return w, dw
    rho = 2.0 * s
    raw = rho - math.sqrt(r2) + 0.5
    cover = raw.clamp(0.0, 1.0)
    dcover = ((raw > 0) & (raw < 1)).to(sigma.dtype)  # d cover / d rho
    area = _disk_area(rho)
    darea = _disk_darea(rho)
    w = cover / area
    dw = (dcover / area - cover * darea / (area * area)) * 2.0 * live  # dρ/dσ = 2
    return w, dw


def _disk_area(rho: torch.Tensor) -> torch.Tensor:
    return torch.where(rho >= 0.5, math.pi * rho * rho + math.pi / 12.0, math.pi * (rho + 0.5) ** 3 / 3.0)


def _disk_darea(rho: torch.Tensor) -> torch.Tensor:
    return torch.where(rho >= 0.5, 2.0 * math.pi * rho, math.pi * (rho + 0.5) ** 2)
