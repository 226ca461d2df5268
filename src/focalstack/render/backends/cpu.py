"""Fused CPU render backend ("cpu"): numba kernels for the forward and the analytic backward.

Same maths as :mod:`focalstack.render.reference` (see its docstring), in one pass per output
row instead of k² whole-image tensor ops:

* **Parallelism**: tasks = (image b, band of ``rows`` consecutive rows), dealt round-robin
  to ``torch.get_num_threads()`` Python threads running the ``nogil`` kernels (numba's
  ``parallel=True`` does the same job but triples the first-run compile time: ~30 s instead
  of ~10 s for both dtypes). Every task owns its output rows: no race, no atomic.
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

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit

from .. import psf as _psf

_SMIN = float(_psf.SIGMA_MIN_PX)
_PI = math.pi
_PI_12 = math.pi / 12.0


# --------------------------------------------------------------------------- forward


@njit(inline="always", fastmath=False, cache=True)
def _disk_area(rho):  # pragma: no cover - numba
    """A(ρ) of psf.py, branch-free so that the loops around it vectorise."""
    t = rho + 0.5
    return _PI * rho * rho + _PI_12 if rho >= 0.5 else _PI * (t * t * t) / 3.0


@njit(inline="always", fastmath=False, cache=True)
def _disk_darea(rho):  # pragma: no cover - numba
    t = rho + 0.5
    return 2.0 * _PI * rho if rho >= 0.5 else _PI * (t * t)


@njit(nogil=True, fastmath=False, cache=True)
def _forward_kernel(img, sig, ex, out, den, R, disk, rows, first, step):  # pragma: no cover - numba
    """Tasks first, first+step, … of the forward; task = (image, band of ``rows`` output rows)."""
    B, C, H, W = img.shape
    WP = W + 2 * R                     # rows padded by R zero columns on each side
    nchunk = (H + rows - 1) // rows
    for task in range(first, B * nchunk, step):
        b = task // nchunk
        r0 = (task - b * nchunk) * rows
        r1 = min(H, r0 + rows)
        s_lo = max(0, r0 - R)
        s_hi = min(H, r1 + R)
        ns = s_hi - s_lo
        # float64 zero-padded copy of the source rows (band + halo) and per-source constants
        V = np.zeros((ns, C, WP))
        P0 = np.empty((ns, W))          # Gaussian: 1/(2πσ²)      | disk: ρ = 2σ
        P1 = np.empty((ns, W))          # Gaussian: e^{−a}        | disk: 1/A(ρ)
        P2 = np.empty((ns, W))          # Gaussian: e^{−2a}
        EA = np.empty((ns, W))          # Gaussian: e^{−dy²·a} for the current |dy|   (a = 1/2σ²)
        RA = np.empty((ns, W))          # Gaussian: e^{−(2|dy|+1)·a}
        for sl in range(ns):
            srow = sig[b, 0, s_lo + sl]
            for c in range(C):
                irow = img[b, c, s_lo + sl]
                vrow = V[sl, c, R:R + W]
                for q in range(W):
                    vrow[q] = irow[q]
            p0 = P0[sl]
            p1 = P1[sl]
            if disk:
                for q in range(W):
                    rho = 2.0 * max(np.float64(srow[q]), _SMIN)
                    p0[q] = rho
                    p1[q] = 1.0 / _disk_area(rho)
            else:
                erow = ex[b, 0, s_lo + sl]
                p2 = P2[sl]
                ea = EA[sl]
                ra = RA[sl]
                for q in range(W):
                    s = max(np.float64(srow[q]), _SMIN)
                    e1 = erow[q]
                    p0[q] = 0.5 / (s * s) / _PI
                    p1[q] = e1
                    p2[q] = e1 * e1
                    ea[q] = 1.0
                    ra[q] = e1
        acc = np.zeros((r1 - r0, C + 1, W))   # [0] Σw, [1+c] Σw·I_c
        wp = np.zeros(WP)                     # weight row of the current (|dy|, |dx|), zero pads
        w = wp[R:R + W]
        za = np.empty(W)
        eb = np.empty(W)
        rb = np.empty(W)
        hz = np.empty((C + 1, W))
        for ay in range(R + 1):
            for sl in range(ns):
                s_row = s_lo + sl
                # this source row reaches output rows s_row + ay and s_row − ay
                hit_dn = s_row + ay >= r0 and s_row + ay < r1
                hit_up = ay > 0 and s_row - ay >= r0 and s_row - ay < r1
                if not (hit_dn or hit_up):
                    continue
                # hz = Σ_{|dx|} Σ_± w(|dy|, |dx|) at the source q = j ∓ |dx|, times (1, I_c)
                if not disk:
                    p0 = P0[sl]
                    ea = EA[sl]
                    e1 = P1[sl]
                    for q in range(W):
                        za[q] = p0[q] * ea[q]
                        eb[q] = 1.0
                        rb[q] = e1[q]
                for ax in range(R + 1):
                    if disk:
                        rt = math.sqrt(np.float64(ay * ay + ax * ax))
                        p0 = P0[sl]
                        p1 = P1[sl]
                        for q in range(W):
                            w[q] = min(max(p0[q] - rt + 0.5, 0.0), 1.0) * p1[q]
                    else:
                        if ax > 0:
                            e2 = P2[sl]
                            for q in range(W):
                                eb[q] *= rb[q]
                                rb[q] *= e2[q]
                        for q in range(W):
                            w[q] = za[q] * eb[q]
                    if ax == 0:
                        h0 = hz[0]
                        for j in range(W):
                            h0[j] = w[j]
                        for c in range(C):
                            hc = hz[1 + c]
                            vc = V[sl, c, R:R + W]
                            for j in range(W):
                                hc[j] = w[j] * vc[j]
                    else:
                        wl = wp[R - ax:R - ax + W]
                        wr = wp[R + ax:R + ax + W]
                        h0 = hz[0]
                        for j in range(W):
                            h0[j] += wl[j] + wr[j]
                        for c in range(C):
                            hc = hz[1 + c]
                            vl = V[sl, c, R - ax:R - ax + W]
                            vr = V[sl, c, R + ax:R + ax + W]
                            for j in range(W):
                                hc[j] += wl[j] * vl[j] + wr[j] * vr[j]
                if hit_dn:
                    ad = acc[s_row + ay - r0]
                    for c in range(C + 1):
                        adc = ad[c]
                        hc = hz[c]
                        for j in range(W):
                            adc[j] += hc[j]
                if hit_up:
                    ad = acc[s_row - ay - r0]
                    for c in range(C + 1):
                        adc = ad[c]
                        hc = hz[c]
                        for j in range(W):
                            adc[j] += hc[j]
            if not disk:   # e^{−(|dy|+1)²a} = e^{−dy²a}·e^{−(2|dy|+1)a}
                for sl in range(ns):
                    ea = EA[sl]
                    ra = RA[sl]
                    e2 = P2[sl]
                    for q in range(W):
                        ea[q] *= ra[q]
                        ra[q] *= e2[q]
        for il in range(r1 - r0):
            dacc = acc[il, 0]
            for c in range(C):
                orow = out[b, c, r0 + il]
                ac = acc[il, 1 + c]
                for j in range(W):
                    orow[j] = ac[j] / dacc[j]
            drow = den[b, 0, r0 + il]
            for j in range(W):
                drow[j] = dacc[j]


# --------------------------------------------------------------------------- backward


@njit(nogil=True, fastmath=False, cache=True)
def _backward_kernel(img, sig, ex, out, den, gout, gimg, gsig, R, disk, rows, need_i, need_s,
                     first, step):  # pragma: no cover - numba
    """Tasks first, first+step, … of the backward; task = (image, band of ``rows`` source rows)."""
    B, C, H, W = img.shape
    WP = W + 2 * R
    CH = C + 1 if need_s else C      # channels of h, plus hJ when ∂L/∂σ is wanted
    nchunk = (H + rows - 1) // rows
    for task in range(first, B * nchunk, step):
        b = task // nchunk
        r0 = (task - b * nchunk) * rows
        r1 = min(H, r0 + rows)
        x_lo = max(0, r0 - R)
        x_hi = min(H, r1 + R)
        nx = x_hi - x_lo
        # h = g / D (channels 0..C−1) and hJ = Σ_c h_c·J_c (channel C), zero-padded, float64
        hb = np.zeros((nx, CH, WP))
        for xl in range(nx):
            x = x_lo + xl
            drow = den[b, 0, x]
            for c in range(C):
                grow = gout[b, c, x]
                hr = hb[xl, c, R:R + W]
                for j in range(W):
                    hr[j] = np.float64(grow[j]) / np.float64(drow[j])
                if need_s:
                    orow = out[b, c, x]
                    hjr = hb[xl, C, R:R + W]
                    for j in range(W):
                        hjr[j] += hr[j] * np.float64(orow[j])
        vs = np.zeros((CH, WP))     # h(i+|dy|) + h(i−|dy|), zero pads
        G = np.empty((CH, W))       # Σ_u w·h(q+u)
        K = np.empty((CH, W))       # Σ_u v·h(q+u); v = r²·w (Gaussian) or 1{0<raw<1} (disk)
        w = np.empty(W)
        v = np.empty(W)
        P0 = np.empty(W)            # Gaussian: 1/(2πσ²)  | disk: ρ
        P1 = np.empty(W)            # Gaussian: e^{−a}    | disk: 1/A
        P2 = np.empty(W)            # Gaussian: e^{−2a}
        F1 = np.empty(W)            # Gaussian: live/σ³   | disk: 2·live/A
        F2 = np.empty(W)            # Gaussian: 2·live/σ  | disk: 2·live·A′/A
        ea = np.empty(W)
        ra = np.empty(W)
        za = np.empty(W)
        eb = np.empty(W)
        rb = np.empty(W)
        for i in range(r0, r1):
            srow = sig[b, 0, i]
            if disk:
                for q in range(W):
                    sv = np.float64(srow[q])
                    live = 1.0 if sv >= _SMIN else 0.0
                    rho = 2.0 * max(sv, _SMIN)
                    inv = 1.0 / _disk_area(rho)
                    P0[q] = rho
                    P1[q] = inv
                    F1[q] = 2.0 * live * inv
                    F2[q] = 2.0 * live * _disk_darea(rho) * inv
            else:
                erow = ex[b, 0, i]
                for q in range(W):
                    sv = np.float64(srow[q])
                    s = max(sv, _SMIN)
                    live = 1.0 if sv >= _SMIN else 0.0
                    e1 = erow[q]
                    P0[q] = 0.5 / (s * s) / _PI
                    P1[q] = e1
                    P2[q] = e1 * e1
                    F1[q] = live / (s * s * s)
                    F2[q] = 2.0 * live / s
                    ea[q] = 1.0
                    ra[q] = e1
            G[:, :] = 0.0
            K[:, :] = 0.0
            for ay in range(R + 1):
                xd = i + ay
                xu = i - ay
                have_d = xd < H
                have_u = ay > 0 and xu >= 0
                if have_d or have_u:
                    for c in range(CH):
                        vr = vs[c, R:R + W]
                        if have_d and have_u:
                            hd = hb[xd - x_lo, c, R:R + W]
                            hu = hb[xu - x_lo, c, R:R + W]
                            for j in range(W):
                                vr[j] = hd[j] + hu[j]
                        elif have_d:
                            hd = hb[xd - x_lo, c, R:R + W]
                            for j in range(W):
                                vr[j] = hd[j]
                        else:
                            hu = hb[xu - x_lo, c, R:R + W]
                            for j in range(W):
                                vr[j] = hu[j]
                    if not disk:
                        for q in range(W):
                            za[q] = P0[q] * ea[q]
                            eb[q] = 1.0
                            rb[q] = P1[q]
                    for ax in range(R + 1):
                        r2 = np.float64(ay * ay + ax * ax)
                        if disk:
                            rt = math.sqrt(r2)
                            for q in range(W):
                                raw = P0[q] - rt + 0.5
                                w[q] = min(max(raw, 0.0), 1.0) * P1[q]
                                v[q] = 1.0 if (raw > 0.0 and raw < 1.0) else 0.0
                        else:
                            if ax > 0:
                                for q in range(W):
                                    eb[q] *= rb[q]
                                    rb[q] *= P2[q]
                            for q in range(W):
                                wq = za[q] * eb[q]
                                w[q] = wq
                                v[q] = r2 * wq
                        for c in range(CH):
                            gc = G[c]
                            kc = K[c]
                            if ax == 0:
                                hh = vs[c, R:R + W]
                                if need_s:
                                    for q in range(W):
                                        gc[q] += w[q] * hh[q]
                                        kc[q] += v[q] * hh[q]
                                else:
                                    for q in range(W):
                                        gc[q] += w[q] * hh[q]
                            else:
                                hl = vs[c, R - ax:R - ax + W]
                                hr_ = vs[c, R + ax:R + ax + W]
                                if need_s:
                                    for q in range(W):
                                        hh_ = hl[q] + hr_[q]
                                        gc[q] += w[q] * hh_
                                        kc[q] += v[q] * hh_
                                else:
                                    for q in range(W):
                                        gc[q] += w[q] * (hl[q] + hr_[q])
                if not disk:
                    for q in range(W):
                        ea[q] *= ra[q]
                        ra[q] *= P2[q]
            if need_i:
                for c in range(C):
                    grow = gimg[b, c, i]
                    gc = G[c]
                    for q in range(W):
                        grow[q] = gc[q]
            if need_s:
                # ∂L/∂σ = F1·Σ_u v·S − F2·Σ_u w·S with S = Σ_c I_c·h_c(q+u) − hJ(q+u)
                x1 = w
                x2 = v
                for q in range(W):
                    x1[q] = -G[C, q]
                    x2[q] = -K[C, q]
                for c in range(C):
                    irow = img[b, c, i]
                    gc = G[c]
                    kc = K[c]
                    for q in range(W):
                        iv = np.float64(irow[q])
                        x1[q] += iv * gc[q]
                        x2[q] += iv * kc[q]
                grow = gsig[b, 0, i]
                for q in range(W):
                    grow[q] = F1[q] * x2[q] - F2[q] * x1[q]


# --------------------------------------------------------------------------- glue


def num_threads() -> int:
    """Worker threads of the kernels: torch's intra-op thread count (``torch.set_num_threads``)."""
    return max(1, torch.get_num_threads())


def _rows_per_task(b: int, h: int, threads: int) -> int:
    """Rows per task: bands of ≤ 32 rows, shrunk (to ≥ 4) until each thread has ≥ 4 tasks."""
    rows = 32
    while rows > 4 and b * -(-h // rows) < 4 * threads:
        rows //= 2
    return max(1, min(rows, h))


_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _run_parallel(kernel, args: tuple, threads: int) -> None:
    """Run ``kernel(*args, first, step)`` on ``threads`` threads; task t goes to thread t mod threads.

    The kernels are ``nogil`` numba functions, so plain Python threads run them in parallel.
    (numba's ``parallel=True``/prange would do the same but costs ~3× the compile time here.)
    """
    global _pool, _pool_size
    if threads <= 1:
        kernel(*args, 0, 1)
        return
    with _pool_lock:
        if _pool is None or _pool_size < threads - 1:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="focalstack-cpu")
            _pool_size = threads - 1
        pool = _pool
    futures = [pool.submit(kernel, *args, t, threads) for t in range(1, threads)]
    kernel(*args, 0, threads)
    for f in futures:
        f.result()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _exp_table(sigma: torch.Tensor) -> torch.Tensor:
    """exp(−1/2σ²) (σ clamped), float64, [B,1,H,W]: the only exp the Gaussian kernels need.

    torch's vectorised exp (≤ 1 ulp) on all cores; the kernels build every tap's
    exp(−(dy²+dx²)/2σ²) from it by exact products (see the module docstring).
    """
    s = sigma.detach().to(torch.float64).clamp_min(_SMIN)
    return torch.exp(-0.5 / (s * s))


_NO_EXP = np.empty((0, 0, 0, 0), dtype=np.float64)


def forward(image: torch.Tensor, sigma: torch.Tensor, radius: int, psf: str):
    """(J, D, ex) for contiguous CPU tensors (no autograd); ex is exp(−1/2σ²) (None for the disk)."""
    b, c, h, w = image.shape
    out = torch.empty_like(image)
    den = torch.empty_like(sigma)
    if image.numel() == 0:
        return out, den, None
    threads = num_threads()
    rows = _rows_per_task(b, h, threads)
    disk = psf == "disk"
    ex = None if disk else _exp_table(sigma)
    _run_parallel(_forward_kernel,
                  (_np(image), _np(sigma), _NO_EXP if disk else ex.numpy(), out.numpy(), den.numpy(),
                   int(radius), disk, rows), threads)
    return out, den, ex


def backward(grad_out, image, sigma, out, den, ex, radius: int, psf: str, need_i: bool = True,
             need_s: bool = True):
    """(∂L/∂I, ∂L/∂σ) (None where not needed) for contiguous CPU tensors; ex from ``forward``
    (or None: recomputed)."""
    b, c, h, w = image.shape
    g_img = torch.empty_like(image) if need_i else None
    g_sig = torch.empty_like(sigma) if need_s else None
    if image.numel() == 0 or not (need_i or need_s):
        return (g_img.zero_() if need_i else None), (g_sig.zero_() if need_s else None)
    threads = num_threads()
    rows = _rows_per_task(b, h, threads)
    disk = psf == "disk"
    if not disk and ex is None:
        ex = _exp_table(sigma)
    dummy = np.empty((0, 0, 0, 0), dtype=_np(image).dtype)
    _run_parallel(_backward_kernel,
                  (_np(image), _np(sigma), _NO_EXP if disk else _np(ex), _np(out), _np(den), _np(grad_out),
                   g_img.numpy() if need_i else dummy, g_sig.numpy() if need_s else dummy,
                   int(radius), disk, rows, bool(need_i), bool(need_s)), threads)
    return g_img, g_sig


class _DefocusCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, image, sigma, radius: int, psf: str):
        out, den, ex = forward(image, sigma, radius, psf)
        ctx.save_for_backward(image, sigma, out, den)
        ctx.ex = ex   # not an autograd input/output: a plain attribute is enough
        ctx.radius, ctx.psf = radius, psf
        return out

    @staticmethod
    def backward(ctx, grad_out):
        image, sigma, out, den = ctx.saved_tensors
        need_i, need_s = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        g_img, g_sig = backward(grad_out.contiguous(), image, sigma, out, den, ctx.ex, ctx.radius, ctx.psf,
                                need_i, need_s)
        return g_img, g_sig, None, None


def defocus_cpu(image: torch.Tensor, sigma: torch.Tensor, radius: int, psf: str = "gaussian") -> torch.Tensor:
    """The "cpu" backend: validated contiguous CPU tensors, image [B,C,H,W], sigma [B,1,H,W]."""
    if image.device.type != "cpu":
        raise ValueError(f"defocus backend 'cpu' needs CPU tensors, got {image.device}")
    return _DefocusCPU.apply(image.contiguous(), sigma.contiguous(), int(radius), psf)


def available(image: torch.Tensor) -> bool:
    return image.device.type == "cpu"
