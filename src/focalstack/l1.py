"""Mean absolute error ``mean(|pred − target|)`` as one fused CPU op.

Why: the L1 term is the photometric loss of training, the optimiser and ``--refine``
(:func:`focalstack.losses.photometric_loss`). Through torch's autograd it costs five passes over
the re-rendered stack [F,3,H,W] per step (sub, abs, mean; then sgn and mul in the backward), each
one allocating a stack-sized tensor that is cold in the caches — on a 5-frame 256² stack that was
~15 % of an optimiser step, more than the renderer's forward on small blur. Here the forward is one
pass that sums |d| (float64 partial sums per task) and writes ∂L/∂pred = sign(d)/N beside it, so the
backward is free when its incoming gradient is 1 (the optimiser's case) and one scaling pass
otherwise. sign(0) = 0, as torch's ``abs`` backward.

Shapes: any, pred and target equal. CUDA tensors, other dtypes, or no gradient wanted go to
``(pred − target).abs().mean()``; same value either way (float64 accumulation here).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

__all__ = ["mean_abs_error", "mean_abs_error_reference"]

# elements per task of the fused pass (≈ 1 MiB of float32 per input)
_TASK_ELEMENTS = 1 << 18


def mean_abs_error_reference(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(pred − target).abs().mean()``: what the fused op computes, through torch's autograd."""
    return (pred - target).abs().mean()


@njit(cache=True, nogil=True, error_model="numpy")
def _forward_kernel(p, t, g, inv_n, partial, first, step):  # pragma: no cover - numba
    n = p.size
    ntask = (n + _TASK_ELEMENTS - 1) // _TASK_ELEMENTS
    for task in range(first, ntask, step):
        lo = task * _TASK_ELEMENTS
        hi = min(n, lo + _TASK_ELEMENTS)
        acc = 0.0
        for i in range(lo, hi):
            d = p[i] - t[i]
            acc += abs(d)
            g[i] = inv_n * ((d > 0) - (d < 0))
        partial[task] = acc


class _FusedMeanAbsError(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pred, target):
        from .parallel import num_threads, run_parallel as _run_parallel

        p = pred.detach().contiguous().reshape(-1).numpy()
        t = target.detach().contiguous().reshape(-1).numpy()
        g = np.empty_like(p)
        inv_n = p.dtype.type(1.0 / p.size)
        partial = np.zeros((p.size + _TASK_ELEMENTS - 1) // _TASK_ELEMENTS, dtype=np.float64)
        _run_parallel(_forward_kernel, (p, t, g, inv_n, partial), min(num_threads(), partial.size))
        ctx.grad_pred = torch.from_numpy(g).view(pred.shape)
        ctx.save_for_backward(pred, target)
        return pred.new_tensor(partial.sum() / p.size)

    @staticmethod
    def backward(ctx, grad):
        g = ctx.grad_pred
        ctx.grad_pred = None      # handed on (a leaf may keep it as its .grad and accumulate into it)
        if g is None:             # a second backward (retain_graph): recompute
            pred, target = ctx.saved_tensors
            g = torch.sign(pred - target) / pred.numel()
        if float(grad) != 1.0:
            g = g * grad
        want_p, want_t = ctx.needs_input_grad
        return (g if want_p else None), (-g if want_t else None)


def _fused_ok(pred: torch.Tensor, target: torch.Tensor) -> bool:
    return (pred.device.type == "cpu" and target.device.type == "cpu" and pred.shape == target.shape
            and pred.dtype == target.dtype and pred.dtype in (torch.float32, torch.float64)
            and pred.numel() > 0 and torch.is_grad_enabled() and (pred.requires_grad or target.requires_grad)
            and not torch._C._are_functorch_transforms_active())


def mean_abs_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean(|pred − target|) over all elements (0-dim tensor), differentiable in both; fused on CPU
    when a gradient is wanted (module doc)."""
    if _fused_ok(pred, target):
        return _FusedMeanAbsError.apply(pred, target)
    return mean_abs_error_reference(pred, target)
