"""The reference defocus renderer: pure PyTorch, exact, CPU or CUDA, float32/float64.

For output pixel x over a k×k window (Gur & Wolf 2019 eqs. 4–5, written with σ)::

    J(x) = Σ_u I(x−u)·G_{x−u}(u) / Σ_u G_{x−u}(u)

G_p is the PSF of SOURCE pixel p (its own σ_p): a scatter written as a gather. Taps whose
source falls outside the image are dropped and the rest renormalised.

Memory: the forward loops over the k² offsets accumulating numerator and denominator, and
the backward (analytic, below) loops again, so the extra memory is O(B·C·H·W) — no
k²·C·H·W buffer is ever built and autograd stores only I, σ, J and the denominator.

Backward, with h = ∂L/∂J / D (D the denominator at x), for a source q and offset u (x = q+u)::

    ∂L/∂I_q = Σ_u G_q(u) · h(q+u)
    ∂L/∂σ_q = Σ_u ∂G_q(u)/∂σ_q · Σ_c h_c(q+u)·(I_{q,c} − J_c(q+u))

This is the slow-but-obvious oracle every fused backend is tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import psf as _psf
from .autograd import defocus_function


def _offsets(radius: int):
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            yield dy, dx, float(dy * dy + dx * dx)


def _window(t: torch.Tensor, radius: int, dy: int, dx: int, h: int, w: int) -> torch.Tensor:
    """View of the padded tensor shifted so that element x reads the padded value at x + (dy, dx)."""
    return t[..., radius + dy: radius + dy + h, radius + dx: radius + dx + w]


def _forward(image: torch.Tensor, sigma: torch.Tensor, radius: int, psf: str):
    _, _, h, w = image.shape
    pad = (radius, radius, radius, radius)
    img_p = F.pad(image, pad)
    sig_p = F.pad(sigma, pad, value=1.0)
    valid_p = F.pad(torch.ones_like(sigma), pad)
    num = torch.zeros_like(image)
    den = torch.zeros_like(sigma)
    for dy, dx, r2 in _offsets(radius):
        # source p = x − u, i.e. the padded tensors read at offset (−dy, −dx)
        wgt = _psf.weight(r2, _window(sig_p, radius, -dy, -dx, h, w), psf) * _window(valid_p, radius, -dy, -dx, h, w)
        num.addcmul_(wgt, _window(img_p, radius, -dy, -dx, h, w))
        den.add_(wgt)
    return num / den, den


def _backward(grad_out, image, sigma, out, den, radius: int, psf: str, need_i: bool, need_s: bool):
    _, _, h, w = image.shape
    pad = (radius, radius, radius, radius)
    hgrad = grad_out / den                                  # [B,C,H,W]
    hj = (hgrad * out).sum(1, keepdim=True)                 # [B,1,H,W]
    h_p = F.pad(hgrad, pad)                                 # zero outside: x must lie inside the image
    hj_p = F.pad(hj, pad)
    g_img = torch.zeros_like(image) if need_i else None
    g_sig = torch.zeros_like(sigma) if need_s else None
    for dy, dx, r2 in _offsets(radius):
        wgt, dwgt = _psf.weight_and_dsigma(r2, sigma, psf)  # the source q is local
        h_x = _window(h_p, radius, dy, dx, h, w)             # x = q + u
        if need_i:
            g_img.addcmul_(wgt, h_x)
        if need_s:
            g_sig.addcmul_(dwgt, (image * h_x).sum(1, keepdim=True) - _window(hj_p, radius, dy, dx, h, w))
    return g_img, g_sig


_DefocusReference = defocus_function(_forward, _backward, "_DefocusReference")


def defocus_reference(image: torch.Tensor, sigma: torch.Tensor, radius: int, psf: str = "gaussian") -> torch.Tensor:
    """Reference renderer on validated inputs: image [B,C,H,W], sigma [B,1,H,W] (px), window 2·radius+1."""
    return _DefocusReference.apply(image, sigma, radius, psf)
