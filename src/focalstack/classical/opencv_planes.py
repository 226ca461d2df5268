"""OpenCV fast paths for per-plane filters of torch tensors on CPU.

The classical methods and the camera-aware network's cost volume filter many full-resolution planes
(J·F re-blurred frames, box means of focus measures, coarse cost versions). On CPU, OpenCV's
filters are several times faster than torch's depthwise convolutions and cumsum box means for
that, but they carry no gradient and read only float32 arrays, so every caller asks
:func:`serves` first and keeps its torch path for GPUs, other dtypes and autograd. The tests
compare each function here with the torch definition it replaces.

All functions take and return CPU float32 tensors with planes in the last two dims ([..., H, W],
pixels); borders are named as in torch (``reflect`` = OpenCV's BORDER_REFLECT_101).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["serves", "box_mean", "separable_blur", "resize_bilinear_into"]


def serves(x: torch.Tensor, *others: torch.Tensor) -> bool:
    """True when OpenCV can stand in for torch: x is a CPU float32 tensor and no tensor of x and
    ``others`` needs a gradient here (autograd enabled and ``requires_grad``)."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in (x, *others)))


def _cv2():
    import cv2
    return cv2


def _planes(x: torch.Tensor) -> np.ndarray:
    """x [..., H, W] as a contiguous float32 [P, H, W] numpy view (copied only if needed)."""
    return x.detach().to("cpu", torch.float32).contiguous().reshape(-1, *x.shape[-2:]).numpy()


def box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over the ``window``×``window`` box (odd, px) around every pixel of every plane of
    x [..., H, W], replicated borders; float32, x's shape."""
    cv2 = _cv2()
    src = _planes(x)
    out = torch.empty(x.shape, dtype=torch.float32)
    dst = out.view(-1, *x.shape[-2:]).numpy()
    for i in range(src.shape[0]):
        cv2.blur(src[i], (window, window), dst=dst[i], borderType=cv2.BORDER_REPLICATE)
    return out


def separable_blur(x: torch.Tensor, taps: torch.Tensor, radius: int) -> torch.Tensor:
    """Every plane of x [..., H, W] convolved with its own separable kernel: taps [P, 2·radius+1]
    (P = the number of planes, the same taps along rows and columns), reflect borders; a plane
    whose taps are the identity (centre tap 1) is copied."""
    cv2 = _cv2()
    src = _planes(x)
    out = torch.empty(x.shape, dtype=torch.float32)
    dst = out.view(-1, *x.shape[-2:]).numpy()
    k = taps.detach().to(torch.float32).reshape(src.shape[0], -1).numpy()
    identity = k[:, radius] >= 1.0 - 1e-7
    for i in range(src.shape[0]):
        if identity[i]:
            dst[i] = src[i]
        else:
            cv2.sepFilter2D(src[i], -1, k[i], k[i], dst=dst[i], borderType=cv2.BORDER_REFLECT_101)
    return out


def resize_bilinear_into(x: torch.Tensor, out: torch.Tensor) -> None:
    """Bilinear resampling with half-pixel centres (= ``F.interpolate(..., mode="bilinear",
    align_corners=False)``) of x [B,C,h,w] into out [B,C,H,W] (float32; may be a strided view, e.g.
    one version of a batch's cost volume)."""
    cv2 = _cv2()
    hh, ww = out.shape[-2:]
    src = x.detach().contiguous().numpy()
    dst = out.numpy()
    for bi in range(src.shape[0]):
        for ci in range(src.shape[1]):
            cv2.resize(src[bi, ci], (ww, hh), dst=dst[bi, ci], interpolation=cv2.INTER_LINEAR)
