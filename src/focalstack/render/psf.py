"""Point-spread functions of one source pixel, as functions of the tap offset and the
source's Gaussian σ in pixels. Shared by every render backend (the reference and the fused
kernels must compute exactly these weights).

* ``gaussian``: G_σ(u) = exp(−|u|²/2σ²) / (2πσ²).
* ``disk``: an anti-aliased pillbox of radius ρ = 2σ, i.e. diameter 4σ — the disk whose
  per-axis standard deviation is σ, so with the default psf_scale 0.25 its diameter is the
  CoC. Weight clamp(ρ − |u| + ½, 0, 1) / A(ρ), A the area of that anti-aliased disk
  (πρ² + π/12 for ρ ≥ ½, π(ρ + ½)³/3 below), so both PSFs integrate to ≈ 1 per source.
* ``gaussian_matched``: the ``gaussian`` weights at a matched width σ_s = :func:`matched_gaussian_sigma`
  (σ), so that the blur the grid really makes has per-axis variance σ², as a PSF of std σ adds to
  a continuous image. The sampled Gaussian does not below a pixel: at σ = 0.3 px almost all its
  weight is on the centre tap (impulse-response std 0.088 px), at 0.5 px 0.464 px; from ~1 px
  on the two are the same (``benchmarks/psf_variance.py``). Callers pass it to :func:`defocus`
  like the others; the render kernels see ``gaussian`` at σ_s.

σ is clamped below at ``SIGMA_MIN_PX`` = 1e-4 px: below it every off-centre weight is
exp(−5·10⁷) = 0 in any float type, i.e. the exact identity, and the true gradient there is
that exponentially small too, so the clamp adds no dead zone that matters.
"""

from __future__ import annotations

import math

import torch

SIGMA_MIN_PX = 1e-4
PSFS = ("gaussian", "disk", "gaussian_matched")

# σ (px) above which the sampled Gaussian's grid variance is σ² to < 1e-12: matched_gaussian_sigma is the identity
_MATCH_TOP_PX = 1.2
_MATCH_STEP_PX = 1e-3


def _grid_variance(s: torch.Tensor) -> torch.Tensor:
    """Per-axis variance (px²) of the normalised Gaussian exp(−u²/2s²) sampled at integer u, s [N] px."""
    u = torch.arange(-8, 9, dtype=torch.float64).view(1, -1)
    w = torch.exp(-0.5 * (u / s.clamp_min(1e-6).view(-1, 1)) ** 2)
    return (w * u * u).sum(1) / w.sum(1)


def _match_table() -> torch.Tensor:
    """σ_s at σ = 0, Δ, 2Δ, … _MATCH_TOP_PX (float64), by bisection on the grid variance (monotone in s)."""
    sigma = torch.arange(0, round(_MATCH_TOP_PX / _MATCH_STEP_PX) + 1, dtype=torch.float64) * _MATCH_STEP_PX
    lo, hi = torch.zeros_like(sigma), torch.full_like(sigma, _MATCH_TOP_PX + 0.1)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = _grid_variance(mid) < sigma * sigma
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    table = 0.5 * (lo + hi)
    table[0] = 0.0
    return table


_MATCH_TABLE: torch.Tensor | None = None


def matched_gaussian_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """The width σ_s (px) at which the Gaussian sampled on the pixel grid has per-axis variance σ² —
    the blur a PSF of std σ adds — for σ (px, any shape, ≥ 0). Differentiable (linear between table
    points 0.001 px apart); the identity above 1.2 px, where the two agree. σ_s > σ below ~0.8 px:
    0.3 → 0.41, 0.5 → 0.53 (a sampled Gaussian of width 0.3 px makes 0.088 px of blur)."""
    global _MATCH_TABLE
    if _MATCH_TABLE is None:
        _MATCH_TABLE = _match_table()
    table = _MATCH_TABLE.to(sigma.device, sigma.dtype)
    x = (sigma.clamp(0.0, _MATCH_TOP_PX) / _MATCH_STEP_PX)
    i = x.detach().nan_to_num(0.0).floor().clamp(max=table.numel() - 2).long()   # NaN σ stays NaN (below)
    t = x - i.to(x.dtype)
    inside = table[i] + t * (table[i + 1] - table[i])
    return torch.where(sigma < _MATCH_TOP_PX, inside, sigma)


def as_kernel(sigma, psf: str):
    """(σ, psf) as a render kernel computes them: ``gaussian_matched`` is the ``gaussian`` kernel at the
    matched width (:func:`matched_gaussian_sigma`), the others are kernels of their own. σ a tensor or a
    float (px); the one place a PSF name is mapped onto a kernel (``defocus``, the window sizes, the
    layered synthesis)."""
    if psf != "gaussian_matched":
        return sigma, psf
    if isinstance(sigma, torch.Tensor):
        return matched_gaussian_sigma(sigma), "gaussian"
    return float(matched_gaussian_sigma(torch.tensor(float(sigma), dtype=torch.float64))), "gaussian"


def _check_kernel(psf: str, fn: str) -> None:
    if psf not in ("gaussian", "disk"):
        raise ValueError(f"{fn}: a render kernel's psf is 'gaussian' or 'disk' (as_kernel maps the others), got {psf!r}")


def support_radius_px(max_sigma_px: float, psf: str) -> int:
    """Half-width R of the smallest window (2R+1) that holds the PSF: ±3σ (Gaussian), ρ+½ (disk)."""
    max_sigma_px, psf = as_kernel(max_sigma_px, psf)
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
    """Weight of a tap at squared distance ``r2`` (px²) from a source with std ``sigma`` (px), for a kernel
    PSF (:func:`as_kernel`)."""
    _check_kernel(psf, "weight")
    s = sigma.clamp_min(SIGMA_MIN_PX)
    if psf == "gaussian":
        inv2s2 = 0.5 / (s * s)
        return torch.exp(-r2 * inv2s2) * (inv2s2 / math.pi)
    rho = 2.0 * s
    cover = (rho - math.sqrt(r2) + 0.5).clamp(0.0, 1.0)
    return cover / _disk_area(rho)


def weight_and_dsigma(r2: float, sigma: torch.Tensor, psf: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(w, ∂w/∂σ) for the tap of a kernel PSF (:func:`as_kernel`); ∂w/∂σ is zero where σ was clamped."""
    _check_kernel(psf, "weight_and_dsigma")
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
