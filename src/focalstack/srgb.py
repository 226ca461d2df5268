"""The sRGB transfer function (IEC 61966-2-1) as one fused CPU op, for the optics in linear light.

Why: with the optics in linear light (:mod:`focalstack.render.light`) every re-rendering decodes
the AIF and encodes the rendered stack [F,3,H,W] — every step of training, of the zero-shot
optimiser and of ``--refine``. Through torch that is ~8 stack-sized passes each way (clamp,
compare, two branches, ``where``; pow and the branches again in the backward): ~12 ms forward +
backward on a 5-frame 322×216 stack, a third of an optimiser step, and memory-bound on photo-sized
stacks. Here one pass per direction reads x, writes y = f(x) and, when a gradient is wanted,
f'(x) beside it, so the backward is one multiplication.

f is evaluated by linear interpolation in a table of :data:`TABLE_SIZE` + 1 exact values over
[0, 1] (computed in float64): the interpolant is within 4e-6 of the exact curve everywhere (the
encode's kink where its linear toe meets the power law bounds it; tested), below float32's resolution
of an 8-bit code value by far, and its derivative is the derivative of what is computed (the
segment's slope). Inputs are clamped to [0, 1] first, with zero gradient outside, as
:func:`focalstack.data.encoding.linear_to_srgb` does; NaN stays NaN.

Shapes: any. This module owns the curve: :func:`exact_encode` / :func:`exact_decode` are the IEC
formula (tensors of any dtype and device, numpy arrays); :func:`focalstack.data.encoding.srgb_to_linear`
/ :func:`~focalstack.data.encoding.linear_to_srgb` send float32 CPU tensors (the pipeline's images)
to the fused op and everything else to the formula.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

__all__ = ["encode", "decode", "exact_encode", "exact_decode", "fused_ok", "TABLE_SIZE"]

TABLE_SIZE = 16384
_TASK_ELEMENTS = 1 << 18   # elements per task of the fused pass (≈ 1 MiB of float32)


def exact_decode(x):
    """The IEC 61966-2-1 decoding, sRGB-encoded values → linear light, of a tensor (any dtype, with
    torch's autograd) or numpy array, clamped to [0, 1] first."""
    if isinstance(x, torch.Tensor):
        x = x.clamp(0, 1)
        return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    x = np.clip(x, 0, 1)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(x.dtype, copy=False)


def exact_encode(x):
    """The IEC 61966-2-1 encoding, linear light → sRGB-encoded values (as :func:`exact_decode`)."""
    if isinstance(x, torch.Tensor):
        x = x.clamp(0, 1)
        return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)
    x = np.clip(x, 0, 1)
    return np.where(x <= 0.0031308, x * 12.92,
                    1.055 * np.maximum(x, 0.0031308) ** (1 / 2.4) - 0.055).astype(x.dtype, copy=False)


_GRID = np.arange(TABLE_SIZE + 1, dtype=np.float64) / TABLE_SIZE
_TABLES = {"encode": exact_encode(_GRID).astype(np.float32), "decode": exact_decode(_GRID).astype(np.float32)}


@njit(cache=True, nogil=True, error_model="numpy")
def _lut_kernel(x, y, d, table, want_d, first, step):  # pragma: no cover - numba
    n = table.size - 1
    scale = np.float32(n)
    size = x.size
    ntask = (size + _TASK_ELEMENTS - 1) // _TASK_ELEMENTS
    for task in range(first, ntask, step):
        lo = task * _TASK_ELEMENTS
        hi = min(size, lo + _TASK_ELEMENTS)
        for i in range(lo, hi):
            v = x[i]
            if v != v:                              # NaN stays NaN (as through torch's clamp)
                y[i] = v
                if want_d:
                    d[i] = v
                continue
            inside = v >= 0 and v <= 1
            if not inside:                          # clamp
                v = np.float32(1.0) if v > 1 else np.float32(0.0)
            u = v * scale
            k = min(int(u), n - 1)
            a = table[k]
            slope = table[k + 1] - a
            y[i] = a + (u - k) * slope
            if want_d:
                d[i] = slope * scale if inside else np.float32(0.0)


def _apply(x: torch.Tensor, which: str, want_d: bool):
    from .parallel import num_threads, run_parallel as _run_parallel
    flat = x.detach().contiguous().reshape(-1).numpy()
    y = np.empty_like(flat)
    d = np.empty_like(flat) if want_d else y[:0]
    ntask = (flat.size + _TASK_ELEMENTS - 1) // _TASK_ELEMENTS
    _run_parallel(_lut_kernel, (flat, y, d, _TABLES[which], want_d), min(num_threads(), ntask))
    return torch.from_numpy(y).view(x.shape), (torch.from_numpy(d).view(x.shape) if want_d else None)


class _Transfer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, which):
        y, d = _apply(x, which, x.requires_grad)
        ctx.save_for_backward(d if d is not None else x.new_empty(0))
        return y

    @staticmethod
    def backward(ctx, grad):
        (d,) = ctx.saved_tensors
        return grad * d, None


def fused_ok(x: torch.Tensor) -> bool:
    """Whether :func:`encode` / :func:`decode` take ``x`` (a float32 CPU tensor, not under functorch)."""
    return (isinstance(x, torch.Tensor) and x.device.type == "cpu" and x.dtype == torch.float32 and x.numel() > 0
            and not torch._C._are_functorch_transforms_active())


def _transfer(x: torch.Tensor, which: str) -> torch.Tensor:
    if torch.is_grad_enabled() and x.requires_grad:
        return _Transfer.apply(x, which)
    return _apply(x, which, False)[0]


def encode(x: torch.Tensor) -> torch.Tensor:
    """Linear light in [0,1] → sRGB-encoded values (float32 CPU tensor, any shape; clamped to [0,1])."""
    return _transfer(x, "encode")


def decode(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in [0,1] → linear light (float32 CPU tensor, any shape; clamped to [0,1])."""
    return _transfer(x, "decode")
