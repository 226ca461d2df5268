"""``defocus``: the one entry point to every render backend, with input checks."""

from __future__ import annotations

import math
from typing import Sequence

import torch

from . import psf as _psf
from .reference import defocus_reference

# name → callable(image, sigma, radius, psf) on validated, contiguous inputs. The fused backends
# listed in focalstack.render.backends.FUSED_BACKENDS are registered on first use; "reference" is
# the oracle.
_BACKENDS: dict[str, callable] = {"reference": defocus_reference}
# Order in which "auto" tries backends; the first whose availability check passes is used.
_AUTO_ORDER: list[tuple] = []  # (name, available(image) -> bool, priority)


def register_backend(name: str, fn, available=lambda image: True, auto_priority: int | None = None) -> None:
    """Register a render backend. ``available(image)`` tells whether it can run on that tensor."""
    _BACKENDS[name] = fn
    if auto_priority is not None:
        _AUTO_ORDER.append((name, available, auto_priority))
        _AUTO_ORDER.sort(key=lambda t: t[2])


def available_backends() -> list[str]:
    _load_fused()
    return sorted(_BACKENDS)


_fused_loaded = False


def _load_fused() -> None:
    global _fused_loaded
    if not _fused_loaded:
        _fused_loaded = True
        try:  # fused backends are optional: the reference always works
            from .backends import FUSED_BACKENDS
        except ImportError:
            return
        for name, fn, available, priority in FUSED_BACKENDS:
            register_backend(name, fn, available=available, auto_priority=priority)


def pick_backend(image: torch.Tensor, backend: str = "auto") -> str:
    """Resolve ``backend`` to a registered name for this tensor."""
    _load_fused()
    if backend == "auto":
        for name, available, _ in _AUTO_ORDER:
            if available(image):
                return name
        return "reference"
    if backend not in _BACKENDS:
        raise ValueError(f"defocus: unknown backend {backend!r}; available: {', '.join(sorted(_BACKENDS))}")
    return backend


def _check(image: torch.Tensor, sigma: torch.Tensor, psf: str) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or not isinstance(sigma, torch.Tensor):
        raise TypeError("defocus: image and sigma must be torch tensors")
    if image.dim() != 4:
        raise ValueError(f"defocus: image must be [B,C,H,W], got shape {tuple(image.shape)}")
    if sigma.dim() == 3:
        sigma = sigma.unsqueeze(1)
    b, _, h, w = image.shape
    if sigma.dim() != 4 or sigma.shape[1] != 1 or sigma.shape[0] != b or sigma.shape[2:] != image.shape[2:]:
        raise ValueError(f"defocus: sigma must be [B,1,H,W] = [{b},1,{h},{w}] to match the image, "
                         f"got {tuple(sigma.shape)}")
    if not image.is_floating_point() or image.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"defocus: image must be float32 or float64, got {image.dtype}")
    if sigma.dtype != image.dtype:
        raise TypeError(f"defocus: sigma dtype {sigma.dtype} differs from image dtype {image.dtype}")
    if sigma.device != image.device:
        raise ValueError(f"defocus: sigma is on {sigma.device} but image is on {image.device}")
    if psf not in _psf.PSFS:
        raise ValueError(f"defocus: psf must be one of {_psf.PSFS}, got {psf!r}")
    return sigma


def defocus(image: torch.Tensor, sigma: torch.Tensor, kernel_size: int | Sequence[int] | None = None,
            psf: str = "gaussian", backend: str = "auto", window: str = "shared") -> torch.Tensor:
    """Render spatially varying defocus blur.

    Args:
        image: [B,C,H,W] float32/float64, the sharp (all-in-focus) image.
        sigma: [B,1,H,W] (or [B,H,W]) Gaussian std in pixels of each SOURCE pixel, ≥ 0. For
            ``psf="disk"`` the pillbox has diameter 4·sigma (the disk with that per-axis std);
            ``"gaussian_matched"`` the Gaussian whose blur on the pixel grid has variance sigma²
            (:func:`focalstack.render.psf.matched_gaussian_sigma`; the sampled ``"gaussian"`` blurs
            less than that below ~0.8 px).
        kernel_size: odd window size k; a sequence of B odd sizes gives each image its own window
            (a stack's frames blur by different amounts, and a window's cost grows with k); None
            picks the smallest odd window holding ±3·max σ (this reads max σ back from the device
            once).
        psf: "gaussian", "disk" or "gaussian_matched" (:data:`focalstack.render.psf.PSFS`).
        backend: "auto" (fastest available), "reference", or a fused backend name.
        window: "shared" (the above) or "per_image": each image gets the window of its own largest σ
            (±3σ), at most ``kernel_size`` (an int) when given — a batch of stacks from different
            cameras, or a stack's frames, blur by very different amounts.

    Returns:
        [B,C,H,W]: J(x) = Σ_u I(x−u)·G_{x−u}(u) / Σ_u G_{x−u}(u) over the window, taps outside
        the image dropped and the rest renormalised. Differentiable in image and sigma.
    """
    sigma = _check(image, sigma, psf)
    sigma, psf = _psf.as_kernel(sigma, psf)   # gaussian_matched: the Gaussian kernels at the matched width
    if window not in ("shared", "per_image"):
        raise ValueError(f"defocus: window must be 'shared' or 'per_image', got {window!r}")
    if window == "per_image" and kernel_size is not None and not isinstance(kernel_size, int):
        raise ValueError("defocus: window='per_image' takes kernel_size as one int (the largest window) or None")
    if kernel_size is None or window == "per_image":
        # the largest σ of each image (one read-back from the device)
        smax = sigma.detach().flatten(1).amax(1).tolist() if sigma.numel() else [0.0] * image.shape[0]
        if not all(math.isfinite(v) for v in smax):
            raise ValueError("defocus: sigma contains NaN or inf")
        if window == "per_image":
            kernel_size = [_psf.window_size_px(v, psf, kernel_size) for v in smax]
        else:
            kernel_size = _psf.window_size_px(max(smax, default=0.0), psf)
    if isinstance(kernel_size, (list, tuple)):
        if len(kernel_size) != image.shape[0]:
            raise ValueError(f"defocus: {len(kernel_size)} kernel sizes for {image.shape[0]} images")
        radius = tuple(_radius(k) for k in kernel_size)
        if len(set(radius)) <= 1:
            radius = radius[0] if radius else 0
    else:
        radius = _radius(kernel_size)
    name = pick_backend(image, backend)
    image, sigma = image.contiguous(), sigma.contiguous()
    if isinstance(radius, int) or name in _PER_IMAGE_RADIUS:
        return _BACKENDS[name](image, sigma, radius, psf)
    # a backend with one window per call: one call per distinct window
    out = None
    for r in sorted(set(radius)):
        idx = torch.tensor([i for i, ri in enumerate(radius) if ri == r], device=image.device)
        part = _BACKENDS[name](image.index_select(0, idx), sigma.index_select(0, idx), r, psf)
        out = part.new_zeros(image.shape) if out is None else out
        out = out.index_copy(0, idx, part)
    return out


# backends whose ``radius`` may be a tuple of one radius per image
_PER_IMAGE_RADIUS = {"cpu"}


def _radius(kernel_size) -> int:
    if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"defocus: kernel_size must be a positive odd integer, got {kernel_size}")
    return int(kernel_size) // 2
