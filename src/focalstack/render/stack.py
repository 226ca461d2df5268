"""Render a whole focal stack from an all-in-focus image and a metric depth map."""

from __future__ import annotations

from typing import Sequence

import torch

from ..optics.camera import CameraBatch, FocalStackCamera
from .defocus import defocus
from .light import from_linear, to_linear


def render_stack(aif: torch.Tensor, depth_m: torch.Tensor, camera: FocalStackCamera | CameraBatch,
                 frames: Sequence[int] | None = None, kernel_size: int | None = None,
                 psf: str = "gaussian", backend: str = "auto", window: str = "shared") -> torch.Tensor:
    """Thin-lens focal stack.

    Args:
        aif: [B,C,H,W] all-in-focus image.
        depth_m: [B,1,H,W] or [B,H,W] depth in metres (> 0).
        camera: lens + per-frame focus distances (and f-numbers); a CameraBatch gives each
            sample its own camera.
        frames: which frames to render (default all, in camera order; FocalStackCamera only).
        kernel_size, psf, backend, window: as in :func:`focalstack.render.defocus` ("per_image": each
            frame of each stack with the window of its own largest σ, at most ``kernel_size``).

    Returns:
        [B,F,C,H,W] defocused frames; frame k blurs each pixel with
        σ = camera.lens.psf_scale · CoC_px(depth, focus_k), in the light :mod:`focalstack.render.light`
        says (``aif`` and the result are in the working encoding).
    """
    if aif.dim() != 4:
        raise ValueError(f"render_stack: aif must be [B,C,H,W], got {tuple(aif.shape)}")
    if isinstance(camera, CameraBatch):
        if frames is not None:
            raise ValueError("render_stack: frames= is not supported with a CameraBatch")
        sigma = camera.to(aif.device, aif.dtype).sigma_px(depth_m.to(aif.dtype))  # [B,F,1,H,W]
    else:
        sigma = camera.sigma_px(depth_m.to(aif.dtype), frames)                      # [B,F,1,H,W]
    b, f = sigma.shape[:2]
    c, h, w = aif.shape[1:]
    if sigma.shape[-2:] != aif.shape[-2:] or sigma.shape[0] != aif.shape[0]:
        raise ValueError(f"render_stack: depth {tuple(depth_m.shape)} does not match aif {tuple(aif.shape)}")
    img = to_linear(aif).unsqueeze(1).expand(b, f, c, h, w).reshape(b * f, c, h, w)
    out = defocus(img, sigma.reshape(b * f, 1, h, w), kernel_size=kernel_size, psf=psf, backend=backend,
                  window=window)
    return from_linear(out).view(b, f, c, h, w)
