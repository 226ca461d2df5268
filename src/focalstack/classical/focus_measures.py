"""Focus measures (sharpness operators), vectorised in torch.

Operators follow the families of Pertuz, Puig & Garcia, "Analysis of focus measure operators for
shape-from-focus", Pattern Recognition 46 (2013):

======  ===========  ==================================================================
name    family       per-pixel response (then aggregated over a local window)
======  ===========  ==================================================================
lapm    Laplacian    modified Laplacian |Lxx| + |Lyy| (kernel [-1, 2, -1]), local mean
lapv    Laplacian    local variance of the Laplacian
lapd    Laplacian    diagonal Laplacian |Lxx| + |Lyy| + |Ld1|/√2 + |Ld2|/√2, local mean
sml     Laplacian    sum-modified-Laplacian (Nayar & Nakagawa): ML with step 2, values below
                     ``threshold`` dropped, local mean
teng    gradient     Tenengrad: Sobel Gx² + Gy², local mean
tenv    gradient     Tenengrad variance: local variance of the Sobel magnitude²
grae    gradient     gradient energy: forward differences Ix² + Iy², local mean
bren    gradient     Brenner: max((I(x+2) − I(x))², (I(y+2) − I(y))²), local mean
glva    statistics   grey-level local variance
glvn    statistics   normalised grey-level variance: local variance / local mean
haar    transform    undecimated Haar wavelet detail energy LH² + HL² + HH², local mean
dcte    transform    4×4 DCT AC energy (15 AC basis responses²) / (DC² + ε), local mean
cont    contrast     image contrast (Nanda & Cutler): Σ over 8 neighbours |I − I_n|, local mean
======  ===========  ==================================================================

Inputs: ``[B,F,C,H,W]`` stacks or ``[N,C,H,W]`` images, C = 1 (grey) or 3 (RGB, converted
with Rec. 601 luma). Output: the same leading shape with C = 1, same H×W (borders replicate).
Window: ``window`` px odd side, ``aggregate="box"`` (uniform mean) or ``"gaussian"``
(σ = window / 4). Larger is always sharper-in-focus for every operator.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from . import opencv_planes

__all__ = ["FOCUS_MEASURES", "focus_measure", "to_grey", "local_mean", "DEFAULT_MEASURE", "DEFAULT_WINDOW"]

DEFAULT_MEASURE = "lapm"
DEFAULT_WINDOW = 9
_LUMA = (0.299, 0.587, 0.114)


def to_grey(x: torch.Tensor) -> torch.Tensor:
    """[N,C,H,W] (C = 1 or 3) → [N,1,H,W]."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"focus measures need 1 or 3 channels, got {x.shape[1]}")
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _pad(x: torch.Tensor, r: int) -> torch.Tensor:
    return F.pad(x, (r, r, r, r), mode="replicate") if r > 0 else x


def _conv(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Correlate [N,1,H,W] with a bank k [O,kh,kw] (odd, square), replicate border → [N,O,H,W]."""
    k = k.to(dtype=x.dtype, device=x.device)
    r = k.shape[-1] // 2
    return F.conv2d(_pad(x, r), k.unsqueeze(1))


def _gauss1d(window: int, dtype, device) -> torch.Tensor:
    r = window // 2
    s = max(window / 4.0, 0.5)
    t = torch.arange(-r, r + 1, dtype=dtype, device=device)
    g = torch.exp(-0.5 * (t / s) ** 2)
    return g / g.sum()


def box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over every ``window``×``window`` block of a padded [N,C,H+k−1,W+k−1] tensor → [N,C,H,W],
    by running sums (O(1) per pixel whatever the window; avg_pool2d on CPU is O(k²)); float32 sums
    of values in [0,1] over rows of ≤ 10⁴ px stay within ~1e-6 of the exact mean."""
    y = x
    for dim in (-1, -2):
        c = torch.cumsum(y, dim=dim)
        c = torch.cat([torch.zeros_like(c.narrow(dim, 0, 1)), c], dim=dim)
        n = y.shape[dim] - window + 1
        y = (c.narrow(dim, window, n) - c.narrow(dim, 0, n)) / window
    return y.to(x.dtype)


def local_mean(x: torch.Tensor, window: int = DEFAULT_WINDOW, aggregate: str = "box") -> torch.Tensor:
    """Local mean of [N,C,H,W] over an odd ``window`` (box or Gaussian σ = window/4), replicate border."""
    window = int(window)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}")
    if window == 1:
        return x
    r = window // 2
    if aggregate == "box":
        if x.dim() == 4 and opencv_planes.serves(x):
            return opencv_planes.box_mean(x, window)
        return box_mean(_pad(x, r), window)
    if aggregate == "gaussian":
        n, c, h, w = x.shape
        g = _gauss1d(window, x.dtype, x.device)
        y = _pad(x, r).reshape(n * c, 1, h + 2 * r, w + 2 * r)
        y = F.conv2d(y, g.view(1, 1, 1, -1))
        y = F.conv2d(y, g.view(1, 1, -1, 1))
        return y.reshape(n, c, h, w)
    raise ValueError(f"aggregate must be 'box' or 'gaussian', got {aggregate!r}")


def _local_var(x: torch.Tensor, agg) -> torch.Tensor:
    m = agg(x)
    return (agg(x * x) - m * m).clamp_min(0)


_K = {
    "lxx": torch.tensor([[[0, 0, 0], [-1, 2, -1], [0, 0, 0]]], dtype=torch.float32),
    "lyy": torch.tensor([[[0, -1, 0], [0, 2, 0], [0, -1, 0]]], dtype=torch.float32),
    "ld1": torch.tensor([[[-1, 0, 0], [0, 2, 0], [0, 0, -1]]], dtype=torch.float32) / math.sqrt(2),
    "ld2": torch.tensor([[[0, 0, -1], [0, 2, 0], [-1, 0, 0]]], dtype=torch.float32) / math.sqrt(2),
    "lap": torch.tensor([[[0, 1, 0], [1, -4, 1], [0, 1, 0]]], dtype=torch.float32),
    "sobel": torch.tensor([[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
                           [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]], dtype=torch.float32) / 4.0,
    "fwd": torch.tensor([[[0, 0, 0], [0, -1, 1], [0, 0, 0]],
                         [[0, 0, 0], [0, -1, 0], [0, 1, 0]]], dtype=torch.float32),
    "haar": torch.tensor([[[0, 0, 0], [0, 1, 1], [0, -1, -1]],
                          [[0, 0, 0], [0, 1, -1], [0, 1, -1]],
                          [[0, 0, 0], [0, 1, -1], [0, -1, 1]]], dtype=torch.float32) / 2.0,
}


def _dct_bank(n: int = 4) -> torch.Tensor:
    """The n×n DCT-II basis as (n²) kernels of size (n+1)×(n+1) (odd, zero last row/col), DC first."""
    k = torch.arange(n, dtype=torch.float64)
    c = torch.stack([math.sqrt((1 if u == 0 else 2) / n) * torch.cos(math.pi * (2 * k + 1) * u / (2 * n))
                     for u in range(n)])                         # [n, n]
    bank = torch.einsum("ux,vy->uvxy", c, c).reshape(n * n, n, n)
    return F.pad(bank, (0, 1, 0, 1)).float()


_K["dct"] = _dct_bank(4)
_NEIGH = torch.zeros(8, 3, 3)
for _i, (_dy, _dx) in enumerate([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]):
    _NEIGH[_i, 1, 1] = 1.0
    _NEIGH[_i, 1 + _dy, 1 + _dx] -= 1.0
_K["neigh"] = _NEIGH


def _lapm(g, agg):
    return agg(_conv(g, torch.cat([_K["lxx"], _K["lyy"]])).abs().sum(1, keepdim=True))


def _lapv(g, agg):
    return _local_var(_conv(g, _K["lap"]), agg)


def _lapd(g, agg):
    return agg(_conv(g, torch.cat([_K["lxx"], _K["lyy"], _K["ld1"], _K["ld2"]])).abs().sum(1, keepdim=True))


def _sml(g, agg, step: int = 2, threshold: float = 1e-3):
    k = torch.zeros(2, 2 * step + 1, 2 * step + 1)
    k[0, step, 0], k[0, step, step], k[0, step, 2 * step] = -1, 2, -1
    k[1, 0, step], k[1, step, step], k[1, 2 * step, step] = -1, 2, -1
    ml = _conv(g, k).abs().sum(1, keepdim=True)
    return agg(ml * (ml >= threshold).to(ml.dtype))


def _teng(g, agg):
    return agg((_conv(g, _K["sobel"]) ** 2).sum(1, keepdim=True))


def _tenv(g, agg):
    return _local_var((_conv(g, _K["sobel"]) ** 2).sum(1, keepdim=True), agg)


def _grae(g, agg):
    return agg((_conv(g, _K["fwd"]) ** 2).sum(1, keepdim=True))


def _bren(g, agg):
    k = torch.zeros(2, 5, 5)
    k[0, 2, 2], k[0, 2, 4] = -1, 1
    k[1, 2, 2], k[1, 4, 2] = -1, 1
    return agg((_conv(g, k) ** 2).amax(1, keepdim=True))


def _glva(g, agg):
    return _local_var(g, agg)


def _glvn(g, agg):
    return _local_var(g, agg) / (agg(g) + 1e-3)


def _haar(g, agg):
    return agg((_conv(g, _K["haar"]) ** 2).sum(1, keepdim=True))


def _dcte(g, agg):
    r = _conv(g, _K["dct"])
    ac = (r[:, 1:] ** 2).sum(1, keepdim=True)
    return agg(ac / (r[:, :1] ** 2 + 1e-2))


def _cont(g, agg):
    return agg(_conv(g, _K["neigh"]).abs().sum(1, keepdim=True))


FOCUS_MEASURES: dict[str, Callable[[torch.Tensor, Callable], torch.Tensor]] = {
    "lapm": _lapm, "lapv": _lapv, "lapd": _lapd, "sml": _sml,
    "teng": _teng, "tenv": _tenv, "grae": _grae, "bren": _bren,
    "glva": _glva, "glvn": _glvn,
    "haar": _haar, "dcte": _dcte,
    "cont": _cont,
}
"""name → fn(grey [N,1,H,W], aggregate: [N,1,H,W] → local mean) → focus [N,1,H,W] (≥ 0)."""

FAMILIES = {"lapm": "laplacian", "lapv": "laplacian", "lapd": "laplacian", "sml": "laplacian",
            "teng": "gradient", "tenv": "gradient", "grae": "gradient", "bren": "gradient",
            "glva": "statistics", "glvn": "statistics", "haar": "transform", "dcte": "transform",
            "cont": "contrast"}


def focus_measure(x: torch.Tensor, measure: str = DEFAULT_MEASURE, window: int = DEFAULT_WINDOW,
                  aggregate: str = "gaussian") -> torch.Tensor:
    """Per-pixel focus of every image: [B,F,C,H,W] → [B,F,1,H,W], or [N,C,H,W] → [N,1,H,W].

    ``measure`` is a name in :data:`FOCUS_MEASURES`; ``window`` the odd local-aggregation side in
    pixels; ``aggregate`` "box" or "gaussian". Not differentiable-critical, but pure torch.
    """
    name = measure.lower()
    if name not in FOCUS_MEASURES:
        raise ValueError(f"unknown focus measure {measure!r}; known: {', '.join(FOCUS_MEASURES)}")
    if x.dim() == 5:
        b, f = x.shape[:2]
        out = focus_measure(x.reshape(b * f, *x.shape[2:]), name, window, aggregate)
        return out.view(b, f, 1, *x.shape[-2:])
    if x.dim() != 4:
        raise ValueError(f"focus_measure: expected [B,F,C,H,W] or [N,C,H,W], got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    g = to_grey(x)
    return FOCUS_MEASURES[name](g, lambda t: local_mean(t, window, aggregate)).clamp_min(0)
