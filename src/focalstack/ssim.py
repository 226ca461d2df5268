"""SSIM loss ``mean(clamp((1 − SSIM)/2, 0, 1))`` — kornia's ``ssim_loss`` — as one fused CPU op.

Why: in the zero-shot optimiser and in training, kornia's SSIM (five separable Gaussian blurs
of x, y, x², y², xy through depthwise ``conv2d`` + their autograd) took ~80 % of a step on CPU,
several times the defocus renderer itself. Here the five moments come from one pass over each
image plane (numba, ``nogil``, planes spread over torch's intra-op threads), and the backward is
analytic: with the per-pixel SSIM S = A₁A₂ / (B₁B₂ + ε), A₁ = 2μₓμᵧ + c₁, A₂ = 2σₓᵧ + c₂,
B₁ = μₓ² + μᵧ² + c₁, B₂ = σₓ² + σᵧ² + c₂ (moments over the window, σ's as E[xy] − μₓμᵧ),

    ∂S/∂μₓ = 2/D · (μᵧ(A₂ − A₁) − μₓ S (B₂ − B₁)),   ∂S/∂E[x²] = −S B₁ / D,   ∂S/∂E[xy] = 2 A₁ / D

(and x ↔ y), so ∂L/∂x = Gᵀ(∂L/∂μₓ) + 2x·Gᵀ(∂L/∂E[x²]) + y·Gᵀ(∂L/∂E[xy]), Gᵀ the adjoint of
the reflect-padded separable Gaussian blur G.

Conventions are kornia's exactly (checked in the tests): Gaussian window of ``window`` taps with
σ = 1.5 px, reflect padding (torch "reflect": the edge pixel is not repeated), c₁ = (0.01 L)²,
c₂ = (0.03 L)², ε = 1e-12 in the denominator, the loss clamped to [0, 1] per pixel (its gradient
is 0 where the clamp is active). Shapes: pred, target [N, C, H, W] with H, W > window // 2.
CUDA tensors, or anything else the kernels do not take, go to kornia; same value either way.

The kernels use only helpers in this file, so numba's per-file cache cannot go stale
(compare ``render/backends/_numba_cache``).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

__all__ = ["ssim_loss", "ssim_loss_reference", "gaussian_window"]

SSIM_SIGMA_PX = 1.5
# The forward keeps the five moment maps (5 × the input) for the backward up to this size, else the
# backward recomputes them (memory stays bounded on photo-sized stacks).
KEEP_MOMENTS_MAX_BYTES = 512 * 2 ** 20


def gaussian_window(window: int, dtype=np.float64) -> np.ndarray:
    """The normalised 1-D Gaussian window kornia's SSIM uses: σ = 1.5 px, ``window`` taps (odd)."""
    n = np.arange(window, dtype=np.float64) - (window - 1) / 2.0
    g = np.exp(-(n ** 2) / (2.0 * SSIM_SIGMA_PX ** 2))
    return (g / g.sum()).astype(dtype)


def ssim_loss_reference(pred: torch.Tensor, target: torch.Tensor, window: int = 11, max_val: float = 1.0):
    """kornia's ``ssim_loss`` (mean reduction): the reference the fused op is tested against."""
    import kornia
    return kornia.losses.ssim_loss(pred, target, window_size=window, max_val=max_val, reduction="mean")


# ---- kernels ----------------------------------------------------------------------------------

@njit(cache=True, nogil=True, inline="always")
def _reflect(t, n):
    if t < 0:
        return -t
    if t >= n:
        return 2 * (n - 1) - t
    return t


@njit(cache=True, nogil=True)
def _moments(x, y, g, out):
    """out[0..4] = G(x), G(y), G(x²), G(y²), G(xy) for one plane x, y [H, W] (reflect padding)."""
    h, w = x.shape
    k = g.shape[0]
    r = k // 2
    tmp = np.empty((5, h, w), dtype=x.dtype)
    xp = np.empty(w + 2 * r, dtype=x.dtype)
    yp = np.empty(w + 2 * r, dtype=x.dtype)
    for i in range(h):
        for t in range(w + 2 * r):
            s = _reflect(t - r, w)
            xp[t] = x[i, s]
            yp[t] = y[i, s]
        for j in range(w):
            tmp[0, i, j] = 0.0
            tmp[1, i, j] = 0.0
            tmp[2, i, j] = 0.0
            tmp[3, i, j] = 0.0
            tmp[4, i, j] = 0.0
        for q in range(k):
            gq = g[q]
            for j in range(w):
                a = xp[j + q]
                b = yp[j + q]
                tmp[0, i, j] += gq * a
                tmp[1, i, j] += gq * b
                tmp[2, i, j] += gq * a * a
                tmp[3, i, j] += gq * b * b
                tmp[4, i, j] += gq * a * b
    for m in range(5):
        for i in range(h):
            for j in range(w):
                out[m, i, j] = 0.0
            for q in range(k):
                gq = g[q]
                src = _reflect(i + q - r, h)
                for j in range(w):
                    out[m, i, j] += gq * tmp[m, src, j]


@njit(cache=True, nogil=True)
def _ssim_terms(mu1, mu2, e11, e22, e12, c1, c2, eps):
    s11 = e11 - mu1 * mu1
    s22 = e22 - mu2 * mu2
    s12 = e12 - mu1 * mu2
    a1 = 2.0 * mu1 * mu2 + c1
    a2 = 2.0 * s12 + c2
    b1 = mu1 * mu1 + mu2 * mu2 + c1
    b2 = s11 + s22 + c2
    d = b1 * b2 + eps
    return a1, a2, b1, b2, d, a1 * a2 / d


@njit(cache=True, nogil=True)
def _forward_kernel(x, y, g, c1, c2, eps, keep, kept, sums, first, step):
    """sums[p] = Σ over plane p of clamp((1 − S)/2, 0, 1); planes first, first + step, …
    With ``keep`` the moments of plane p are left in kept[p] [5, H, W] for the backward."""
    n, h, w = x.shape
    mom = np.empty((5, h, w), dtype=x.dtype)
    for p in range(first, n, step):
        if keep:
            mom = kept[p]
        _moments(x[p], y[p], g, mom)
        acc = 0.0
        for i in range(h):
            for j in range(w):
                s = _ssim_terms(mom[0, i, j], mom[1, i, j], mom[2, i, j], mom[3, i, j], mom[4, i, j],
                                c1, c2, eps)[5]
                v = (1.0 - s) * 0.5
                acc += min(max(v, 0.0), 1.0)
        sums[p] = acc


@njit(cache=True, nogil=True)
def _adjoint_blur(m, g, out):
    """out = Gᵀ m for one plane m [H, W]: the adjoint of the reflect-padded separable blur."""
    h, w = m.shape
    k = g.shape[0]
    r = k // 2
    tmp = np.zeros((h, w), dtype=m.dtype)
    for i in range(h):                      # vertical pass, transposed: scatter rows back
        for q in range(k):
            gq = g[q]
            dst = _reflect(i + q - r, h)
            for j in range(w):
                tmp[dst, j] += gq * m[i, j]
    gp = np.empty(w + 2 * r, dtype=m.dtype)
    for i in range(h):                      # horizontal pass, transposed, then fold the padding
        for t in range(w + 2 * r):
            gp[t] = 0.0
        for q in range(k):
            gq = g[q]
            for j in range(w):
                gp[j + q] += gq * tmp[i, j]
        for j in range(w):
            out[i, j] = gp[j + r]
        for t in range(r):
            out[i, _reflect(t - r, w)] += gp[t]
            out[i, _reflect(w + t, w)] += gp[w + r + t]


@njit(cache=True, nogil=True)
def _backward_kernel(x, y, g, c1, c2, eps, kept_ok, kept, scale, want_x, want_y, gx, gy, first, step):
    """gx, gy [N, H, W] = scale · ∂(Σ clamp((1 − S)/2, 0, 1))/∂x, ∂y (planes first, first + step, …);
    the moments come from kept[p] when the forward kept them (``kept_ok``), else are recomputed."""
    n, h, w = x.shape
    mom = np.empty((5, h, w), dtype=x.dtype)
    dm = np.empty((5, h, w), dtype=x.dtype)       # ∂L/∂(μx, μy, E[x²], E[y²], E[xy])
    adj = np.empty((h, w), dtype=x.dtype)
    for p in range(first, n, step):
        if kept_ok:
            mom = kept[p]
        else:
            _moments(x[p], y[p], g, mom)
        for i in range(h):
            for j in range(w):
                mu1 = mom[0, i, j]
                mu2 = mom[1, i, j]
                a1, a2, b1, b2, d, s = _ssim_terms(mu1, mu2, mom[2, i, j], mom[3, i, j], mom[4, i, j],
                                                   c1, c2, eps)
                v = (1.0 - s) * 0.5
                gl = -0.5 * scale if 0.0 <= v <= 1.0 else 0.0   # ∂L/∂S
                gd = gl * 2.0 / d
                dm[0, i, j] = gd * (mu2 * (a2 - a1) - mu1 * s * (b2 - b1))
                dm[1, i, j] = gd * (mu1 * (a2 - a1) - mu2 * s * (b2 - b1))
                dm[2, i, j] = -gl * s * b1 / d
                dm[3, i, j] = dm[2, i, j]
                dm[4, i, j] = gd * a1
        xp = x[p]
        yp = y[p]
        if want_x:
            gxp = gx[p]
            _adjoint_blur(dm[0], g, gxp)
            _adjoint_blur(dm[2], g, adj)
            for i in range(h):
                for j in range(w):
                    gxp[i, j] += 2.0 * xp[i, j] * adj[i, j]
        if want_x or want_y:
            _adjoint_blur(dm[4], g, adj)           # E[xy] feeds both gradients
            for i in range(h):
                for j in range(w):
                    if want_x:
                        gx[p, i, j] += yp[i, j] * adj[i, j]
                    if want_y:
                        gy[p, i, j] = xp[i, j] * adj[i, j]
        if want_y:
            gyp = gy[p]
            _adjoint_blur(dm[1], g, adj)
            for i in range(h):
                for j in range(w):
                    gyp[i, j] += adj[i, j]
            _adjoint_blur(dm[3], g, adj)
            for i in range(h):
                for j in range(w):
                    gyp[i, j] += 2.0 * yp[i, j] * adj[i, j]


# ---- autograd op -------------------------------------------------------------------------------

def _planes(t: torch.Tensor) -> np.ndarray:
    n, c, h, w = t.shape
    return t.detach().contiguous().reshape(n * c, h, w).numpy()


def _consts(window: int, max_val: float, dtype):
    g = gaussian_window(window, np.float32 if dtype == torch.float32 else np.float64)
    return g, (0.01 * max_val) ** 2, (0.03 * max_val) ** 2, 1e-12


class _FusedSSIMLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pred, target, window, max_val):
        from .parallel import num_threads, run_parallel as _run_parallel

        x, y = _planes(pred), _planes(target)
        g, c1, c2, eps = _consts(window, max_val, pred.dtype)
        sums = np.zeros(x.shape[0], dtype=np.float64)
        threads = min(num_threads(), x.shape[0])
        # keep the five moment maps for the backward when a gradient is wanted and they are not too large
        keep = torch.is_grad_enabled() and (pred.requires_grad or target.requires_grad) \
            and 5 * x.size * x.itemsize <= KEEP_MOMENTS_MAX_BYTES
        kept = np.empty((x.shape[0], 5, *x.shape[1:]) if keep else (1, 5, 1, 1), dtype=x.dtype)
        _run_parallel(_forward_kernel, (x, y, g, c1, c2, eps, keep, kept, sums), threads)
        ctx.save_for_backward(pred, target)
        ctx.window, ctx.max_val = window, max_val
        ctx.kept = kept if keep else None
        return pred.new_tensor(sums.sum() / pred.numel())

    @staticmethod
    def backward(ctx, grad):
        from .parallel import num_threads, run_parallel as _run_parallel

        pred, target = ctx.saved_tensors
        want_x, want_y = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        x, y = _planes(pred), _planes(target)
        g, c1, c2, eps = _consts(ctx.window, ctx.max_val, pred.dtype)
        gx = np.zeros_like(x) if want_x else np.zeros((1, 1, 1), dtype=x.dtype)
        gy = np.zeros_like(y) if want_y else np.zeros((1, 1, 1), dtype=x.dtype)
        scale = float(grad) / pred.numel()
        threads = min(num_threads(), x.shape[0])
        kept = ctx.kept
        ctx.kept = None
        kept_ok = kept is not None
        if kept is None:
            kept = np.empty((1, 5, 1, 1), dtype=x.dtype)
        _run_parallel(_backward_kernel, (x, y, g, c1, c2, eps, kept_ok, kept, scale, want_x, want_y, gx, gy),
                      threads)
        dx = torch.from_numpy(gx).view_as(pred) if want_x else None
        dy = torch.from_numpy(gy).view_as(target) if want_y else None
        return dx, dy, None, None


def _fused_ok(pred: torch.Tensor, target: torch.Tensor, window: int) -> bool:
    return (pred.device.type == "cpu" and target.device.type == "cpu" and pred.dim() == 4
            and pred.shape == target.shape and pred.dtype == target.dtype
            and pred.dtype in (torch.float32, torch.float64) and window % 2 == 1
            and min(pred.shape[-2:]) > window // 2 and pred.numel() > 0
            and not torch._C._are_functorch_transforms_active())


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, window: int = 11, max_val: float = 1.0) -> torch.Tensor:
    """mean(clamp((1 − SSIM(pred, target))/2, 0, 1)) over [N, C, H, W] images with values in
    [0, ``max_val``] — kornia's ``ssim_loss`` (module doc), fused on CPU. Differentiable in both."""
    if _fused_ok(pred, target, window):
        return _FusedSSIMLoss.apply(pred, target, int(window), float(max_val))
    return ssim_loss_reference(pred, target, window, max_val)
