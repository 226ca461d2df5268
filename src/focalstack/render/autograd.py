"""One autograd wrapper for every render backend.

A backend provides ``forward(image, sigma, radius, psf) -> (J, D)`` (the output [B,C,H,W] and its
normaliser D = Σ_u G [B,1,H,W], kept for the backward) and the analytic
``backward(grad_out, image, sigma, J, D, radius, psf, need_image, need_sigma) -> (∂L/∂I | None,
∂L/∂σ | None)``; :func:`defocus_function` turns the pair into a ``torch.autograd.Function``.
"""

from __future__ import annotations

from typing import Callable

import torch


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
