"""Fused CPU render backend ("cpu"): numba kernels for the forward and the analytic backward.

Same maths as :mod:`focalstack.render.reference` (see its docstring), in one pass per output
row instead of k² whole-image tensor ops:

* **Parallelism**: ``prange`` over tasks = (image b, band of ``rows`` consecutive rows).
  Every task owns its output rows, so there is no race and no atomic.
* **Forward** (a gather over output pixels x, source p = x − u): for each source pixel the
  per-pixel constants (1/2σ², the normaliser) are computed once per task. For the Gaussian,
  exp(−|u|²/2σ²) = exp(−dy²/2σ²)·exp(−dx²/2σ²), so a task tabulates, for each source pixel of
  its band plus a halo of R rows, the R+1 values exp(−d²/2σ²), d = 0…R (R+1 exps per source
  pixel instead of k²; each tap weight is then two products, equal to the direct formula to
  ~2 ulp in float64). When that table would be too large (huge windows) the kernel falls back
  to one ``exp`` per tap. Each tap's weight is computed once into a row buffer and applied to
  every channel; numerator and denominator are accumulated in float64 row buffers.
* **Backward**: one gather pass over SOURCE pixels q for both gradients (q is local, so its
  exp table is just R+1 values per pixel): with h = g/D and hJ = Σ_c h_c·J_c (computed per
  task for its rows plus halo, in float64)::

      ∂L/∂I_q = Σ_u w_q(u)·h(q+u)
      ∂L/∂σ_q = Σ_u ∂w_q(u)/∂σ · (Σ_c I_{q,c}·h_c(q+u) − hJ(q+u))

  ∂w/∂σ is split into per-pixel factors times per-tap sums (Gaussian: w·(r²/σ³ − 2/σ);
  disk: 2·(1{0<raw<1}/A − w·A′/A)), so the tap loop only accumulates two sums.
* Memory: O(task band × W × (C + R)) scratch per running task; never a k²·H·W buffer.

float32 and float64 inputs are both supported (numba specialises the kernels per dtype;
accumulation is always float64). ``cache=True`` keeps the compiled kernels in __pycache__.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange

from .. import psf as _psf

_SMIN = float(_psf.SIGMA_MIN_PX)
_PI = math.pi
_PI_12 = math.pi / 12.0

MODE_GAUSS_TABLE = 0   # Gaussian with per-source separable exp tables
MODE_GAUSS_DIRECT = 1  # Gaussian with one exp per tap (fallback for very large windows)
MODE_DISK = 2          # anti-aliased disk

# Scratch budget of the forward's per-task exp table (bytes); above it: MODE_GAUSS_DIRECT.
_TABLE_BYTES = 16 << 20


# --------------------------------------------------------------------------- forward


@njit(parallel=True, fastmath=False, cache=True)
def _forward_kernel(img, sig, out, den, R, mode, rows):  # pragma: no cover - numba
    B, H = img.shape[0], img.shape[2]
    nchunk = (H + rows - 1) // rows
    for task in prange(B * nchunk):
        _forward_task(img, sig, out, den, R, mode, rows, task)


@njit(fastmath=False, cache=True)
def _forward_task(img, sig, out, den, R, mode, rows, task):  # pragma: no cover - numba
    B, C, H, W = img.shape
    nchunk = (H + rows - 1) // rows
    nt = R + 2 if mode == MODE_GAUSS_TABLE else 2
    if True:
        b = task // nchunk
        r0 = (task - b * nchunk) * rows
        r1 = min(H, r0 + rows)
        s_lo = max(0, r0 - R)
        s_hi = min(H, r1 + R)
        # per-source constants of the band + halo
        T = np.empty((s_hi - s_lo, nt, W))
        for sl in range(s_hi - s_lo):
            srow = sig[b, 0, s_lo + sl]
            Ts = T[sl]
            if mode == MODE_DISK:
                for q in range(W):
                    s = max(np.float64(srow[q]), _SMIN)
                    rho = 2.0 * s
                    if rho >= 0.5:
                        area = _PI * rho * rho + _PI_12
                    else:
                        area = _PI * (rho + 0.5) ** 3 / 3.0
                    Ts[0, q] = rho
                    Ts[1, q] = 1.0 / area
            else:
                for q in range(W):
                    s = max(np.float64(srow[q]), _SMIN)
                    a = 0.5 / (s * s)
                    Ts[0, q] = a / _PI
                    Ts[1, q] = a
                if mode == MODE_GAUSS_TABLE:
                    for d in range(R, -1, -1):   # row 1 holds `a` until d = 0 overwrites it
                        e = Ts[1 + d]
                        a_ = Ts[1]
                        d2 = np.float64(d * d)
                        for q in range(W):
                            e[q] = math.exp(-d2 * a_[q])
        acc = np.empty((C, W))
        dacc = np.empty(W)
        wb = np.empty(W)
        g = np.empty(W)
        for i in range(r0, r1):
            acc[:, :] = 0.0
            dacc[:] = 0.0
            for dy in range(-R, R + 1):
                s_row = i - dy
                if s_row < 0 or s_row >= H:
                    continue
                Ts = T[s_row - s_lo]
                if mode == MODE_GAUSS_TABLE:
                    n_ = Ts[0]
                    ey = Ts[1 + abs(dy)]
                    for q in range(W):
                        g[q] = n_[q] * ey[q]
                for dx in range(-R, R + 1):
                    # source column q, output column j = q + dx, both inside [0, W)
                    qlo = max(0, -dx)
                    qhi = min(W, W - dx)
                    m = qhi - qlo
                    if m <= 0:
                        continue
                    jlo = qlo + dx
                    r2 = np.float64(dy * dy + dx * dx)
                    wv = wb[:m]
                    if mode == MODE_GAUSS_TABLE:
                        gv = g[qlo:qhi]
                        ev = Ts[1 + abs(dx), qlo:qhi]
                        for t in range(m):
                            wv[t] = gv[t] * ev[t]
                    elif mode == MODE_GAUSS_DIRECT:
                        nv = Ts[0, qlo:qhi]
                        av = Ts[1, qlo:qhi]
                        for t in range(m):
                            wv[t] = math.exp(-r2 * av[t]) * nv[t]
                    else:
                        rt = math.sqrt(r2)
                        rv = Ts[0, qlo:qhi]
                        iv = Ts[1, qlo:qhi]
                        for t in range(m):
                            raw = rv[t] - rt + 0.5
                            wv[t] = min(max(raw, 0.0), 1.0) * iv[t]
                    dv = dacc[jlo:jlo + m]
                    for t in range(m):
                        dv[t] += wv[t]
                    for c in range(C):
                        src = img[b, c, s_row, qlo:qhi]
                        av_ = acc[c, jlo:jlo + m]
                        for t in range(m):
                            av_[t] += wv[t] * src[t]
            for c in range(C):
                orow = out[b, c, i]
                ac = acc[c]
                for j in range(W):
                    orow[j] = ac[j] / dacc[j]
            drow = den[b, 0, i]
            for j in range(W):
                drow[j] = dacc[j]


# --------------------------------------------------------------------------- backward


@njit(parallel=True, fastmath=False, cache=True)
def _backward_kernel(img, sig, out, den, gout, gimg, gsig, R, mode, rows, need_i, need_s):  # pragma: no cover
    B, H = img.shape[0], img.shape[2]
    nchunk = (H + rows - 1) // rows
    for task in prange(B * nchunk):
        _backward_task(img, sig, out, den, gout, gimg, gsig, R, mode, rows, need_i, need_s, task)


@njit(fastmath=False, cache=True)
def _backward_task(img, sig, out, den, gout, gimg, gsig, R, mode, rows, need_i, need_s, task):  # pragma: no cover
    B, C, H, W = img.shape
    nchunk = (H + rows - 1) // rows
    gauss = mode != MODE_DISK
    if True:
        b = task // nchunk
        r0 = (task - b * nchunk) * rows
        r1 = min(H, r0 + rows)
        x_lo = max(0, r0 - R)
        x_hi = min(H, r1 + R)
        nx = x_hi - x_lo
        # h = g / D and hJ = Σ_c h_c J_c on the rows the band's taps reach
        hb = np.empty((C, nx, W))
        hj = np.zeros((nx, W))
        for xl in range(nx):
            x = x_lo + xl
            drow = den[b, 0, x]
            hjr = hj[xl]
            for c in range(C):
                grow = gout[b, c, x]
                orow = out[b, c, x]
                hr = hb[c, xl]
                for j in range(W):
                    v = np.float64(grow[j]) / np.float64(drow[j])
                    hr[j] = v
                    hjr[j] += v * np.float64(orow[j])
        # per-source-row scratch
        E = np.empty((R + 1, W))        # Gaussian: exp(−d²a), d = 0..R
        p0 = np.empty(W)                # Gaussian: a/π (normaliser) | disk: ρ
        p1 = np.empty(W)                # Gaussian: live/σ³          | disk: 1/A
        p2 = np.empty(W)                # Gaussian: 2·live/σ         | disk: 2·live/A
        p3 = np.empty(W)                # Gaussian: −                | disk: 2·live·A′/A
        gacc = np.empty((C, W))
        A0 = np.empty(W)
        A1 = np.empty(W)
        g = np.empty(W)
        wb = np.empty(W)
        cb = np.empty(W)
        S = np.empty(W)
        for i in range(r0, r1):
            srow = sig[b, 0, i]
            if gauss:
                for q in range(W):
                    sv = np.float64(srow[q])
                    s = max(sv, _SMIN)
                    live = 1.0 if sv >= _SMIN else 0.0
                    a = 0.5 / (s * s)
                    p0[q] = a / _PI
                    p1[q] = live / (s * s * s)
                    p2[q] = 2.0 * live / s
                    E[0, q] = a
                for d in range(R, -1, -1):   # E[0] holds `a` until d = 0 overwrites it
                    d2 = np.float64(d * d)
                    e = E[d]
                    a_ = E[0]
                    for q in range(W):
                        e[q] = math.exp(-d2 * a_[q])
            else:
                for q in range(W):
                    sv = np.float64(srow[q])
                    s = max(sv, _SMIN)
                    live = 1.0 if sv >= _SMIN else 0.0
                    rho = 2.0 * s
                    if rho >= 0.5:
                        area = _PI * rho * rho + _PI_12
                        darea = 2.0 * _PI * rho
                    else:
                        area = _PI * (rho + 0.5) ** 3 / 3.0
                        darea = _PI * (rho + 0.5) ** 2
                    inv = 1.0 / area
                    p0[q] = rho
                    p1[q] = inv
                    p2[q] = 2.0 * live * inv
                    p3[q] = 2.0 * live * darea * inv
            gacc[:, :] = 0.0
            A0[:] = 0.0
            A1[:] = 0.0
            for dy in range(-R, R + 1):
                x = i + dy
                if x < 0 or x >= H:
                    continue
                xl = x - x_lo
                if gauss:
                    ey = E[abs(dy)]
                    for q in range(W):
                        g[q] = p0[q] * ey[q]
                for dx in range(-R, R + 1):
                    # source column q (local), output column q + dx, both inside [0, W)
                    qlo = max(0, -dx)
                    qhi = min(W, W - dx)
                    m = qhi - qlo
                    if m <= 0:
                        continue
                    xlo = qlo + dx
                    r2 = np.float64(dy * dy + dx * dx)
                    wv = wb[:m]
                    cv = cb[:m]
                    if gauss:
                        gv = g[qlo:qhi]
                        ev = E[abs(dx), qlo:qhi]
                        for t in range(m):
                            wv[t] = gv[t] * ev[t]
                    else:
                        rt = math.sqrt(r2)
                        rv = p0[qlo:qhi]
                        iv = p1[qlo:qhi]
                        for t in range(m):
                            raw = rv[t] - rt + 0.5
                            cv[t] = 1.0 if (raw > 0.0 and raw < 1.0) else 0.0
                            wv[t] = min(max(raw, 0.0), 1.0) * iv[t]
                    Sv = S[:m]
                    if need_s:
                        hjv = hj[xl, xlo:xlo + m]
                        for t in range(m):
                            Sv[t] = -hjv[t]
                    for c in range(C):
                        hv = hb[c, xl, xlo:xlo + m]
                        if need_i:
                            gv_ = gacc[c, qlo:qhi]
                            for t in range(m):
                                gv_[t] += wv[t] * hv[t]
                        if need_s:
                            Iv = img[b, c, i, qlo:qhi]
                            for t in range(m):
                                Sv[t] += np.float64(Iv[t]) * hv[t]
                    if need_s:
                        a0 = A0[qlo:qhi]
                        a1 = A1[qlo:qhi]
                        if gauss:
                            for t in range(m):
                                ws = wv[t] * Sv[t]
                                a0[t] += ws
                                a1[t] += r2 * ws
                        else:
                            for t in range(m):
                                a0[t] += cv[t] * Sv[t]
                                a1[t] += wv[t] * Sv[t]
            if need_i:
                for c in range(C):
                    grow = gimg[b, c, i]
                    ga = gacc[c]
                    for q in range(W):
                        grow[q] = ga[q]
            if need_s:
                grow = gsig[b, 0, i]
                if gauss:
                    # ∂w/∂σ = w·(r²/σ³ − 2/σ)
                    for q in range(W):
                        grow[q] = p1[q] * A1[q] - p2[q] * A0[q]
                else:
                    # ∂w/∂σ = 2·(1{0<raw<1}/A − w·A′/A)
                    for q in range(W):
                        grow[q] = p2[q] * A0[q] - p3[q] * A1[q]


# --------------------------------------------------------------------------- glue


def _mode(radius: int, width: int, rows: int, psf: str) -> int:
    if psf == "disk":
        return MODE_DISK
    table = (rows + 2 * radius) * (radius + 2) * width * 8
    return MODE_GAUSS_TABLE if table <= _TABLE_BYTES else MODE_GAUSS_DIRECT


def _rows_per_task(b: int, h: int) -> int:
    """Rows per parallel task: ≥ 4 tasks per thread where possible, bands of 4…32 rows."""
    threads = max(1, numba.get_num_threads())
    rows = 32
    while rows > 4 and b * -(-h // rows) < 4 * threads:
        rows //= 2
    return max(1, min(rows, h))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def forward(image: torch.Tensor, sigma: torch.Tensor, radius: int, psf: str):
    """(J, D) for contiguous CPU tensors (no autograd)."""
    b, c, h, w = image.shape
    out = torch.empty_like(image)
    den = torch.empty_like(sigma)
    if image.numel() == 0:
        return out, den
    rows = _rows_per_task(b, h)
    mode = _mode(radius, w, rows, psf)
    _forward_kernel(_np(image), _np(sigma), out.numpy(), den.numpy(), int(radius), mode, rows)
    return out, den


def backward(grad_out, image, sigma, out, den, radius: int, psf: str, need_i: bool = True, need_s: bool = True):
    """(∂L/∂I, ∂L/∂σ) (None where not needed) for contiguous CPU tensors."""
    b, c, h, w = image.shape
    g_img = torch.empty_like(image) if need_i else None
    g_sig = torch.empty_like(sigma) if need_s else None
    if image.numel() == 0 or not (need_i or need_s):
        return (g_img.zero_() if need_i else None), (g_sig.zero_() if need_s else None)
    rows = _rows_per_task(b, h)
    mode = MODE_DISK if psf == "disk" else MODE_GAUSS_TABLE
    dummy = np.empty((0, 0, 0, 0), dtype=_np(image).dtype)
    _backward_kernel(_np(image), _np(sigma), _np(out), _np(den), _np(grad_out),
                     g_img.numpy() if need_i else dummy, g_sig.numpy() if need_s else dummy,
                     int(radius), mode, rows, bool(need_i), bool(need_s))
    return g_img, g_sig


class _DefocusCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, image, sigma, radius: int, psf: str):
        out, den = forward(image, sigma, radius, psf)
        ctx.save_for_backward(image, sigma, out, den)
        ctx.radius, ctx.psf = radius, psf
        return out

    @staticmethod
    def backward(ctx, grad_out):
        image, sigma, out, den = ctx.saved_tensors
        need_i, need_s = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        g_img, g_sig = backward(grad_out.contiguous(), image, sigma, out, den, ctx.radius, ctx.psf, need_i, need_s)
        return g_img, g_sig, None, None


def defocus_cpu(image: torch.Tensor, sigma: torch.Tensor, radius: int, psf: str = "gaussian") -> torch.Tensor:
    """The "cpu" backend: validated contiguous CPU tensors, image [B,C,H,W], sigma [B,1,H,W]."""
    if image.device.type != "cpu":
        raise ValueError(f"defocus backend 'cpu' needs CPU tensors, got {image.device}")
    return _DefocusCPU.apply(image.contiguous(), sigma.contiguous(), int(radius), psf)


def available(image: torch.Tensor) -> bool:
    return image.device.type == "cpu"
