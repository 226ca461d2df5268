"""One autograd wrapper for every render backend.

A backend provides ``forward(image, sigma, radius, psf) -> (J, D)`` (the output [B,C,H,W] and its
normaliser D = Σ_u G [B,1,H,W], kept for the backward) and the analytic
``backward(grad_out, image, sigma, J, D, radius, psf, need_image, need_sigma) -> (∂L/∂I | None,
∂L/∂σ | None)``; :func:`defocus_function` turns the pair into a ``torch.autograd.Function``.
"""

from __future__ import annotations

from typing import Callable

import torch


def grad_buffers(image: torch.Tensor, sigma: torch.Tensor, need_i: bool, need_s: bool):
    """Output buffers of a fused backward: (∂L/∂I like image or None, ∂L/∂σ like sigma or None,
    trivial). ``trivial`` (empty image or no gradient wanted): the buffers are zeroed and the
    backend returns them as they are; otherwise they are uninitialised and the kernel fills them."""
    g_img = torch.empty_like(image) if need_i else None
    g_sig = torch.empty_like(sigma) if need_s else None
    trivial = image.numel() == 0 or not (need_i or need_s)
    if trivial:
        for g in (g_img, g_sig):
            if g is not None:
                g.zero_()
    return g_img, g_sig, trivial


def defocus_function(forward: Callable, backward: Callable, name: str) -> type[torch.autograd.Function]:
    """``torch.autograd.Function`` subclass called ``name`` with ``apply(image, sigma, radius, psf)``."""

    def fwd(ctx, image, sigma, radius: int, psf: str):
        out, den = forward(image, sigma, radius, psf)
        ctx.save_for_backward(image, sigma, out, den)
        ctx.radius, ctx.psf = radius, psf
        return out

    def bwd(ctx, grad_out):
        image, sigma, out, den = ctx.saved_tensors
        g_img, g_sig = backward(grad_out.contiguous(), image, sigma, out, den, ctx.radius, ctx.psf,
                                ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return g_img, g_sig, None, None

    return type(name, (torch.autograd.Function,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd),
                                                    "__doc__": f"Defocus with the analytic backward ({name})."})
