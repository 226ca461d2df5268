"""Fused CPU render backend ("cpu"): numba kernels for the forward and the analytic backward.

Same maths and weights as :mod:`focalstack.render.reference` (see its docstring), with k²
whole-image tensor passes replaced by row-local loops. Two kernel families:

* the Gaussian PSF with windows up to k = 2·MAX_UNROLLED_RADIUS + 1 — every training and
  refinement step — runs the per-radius kernels of :mod:`.cpu_gaussian` (R a compile-time
  constant, tap loops unrolled inside the pixel loops; ~1.7× faster than the kernels below);
* the disk PSF and wider Gaussian windows run the general kernels of this module, described
  here:

* **Parallelism**: tasks = (image b, band of ``rows`` consecutive rows), dealt round-robin
  to ``torch.get_num_threads()`` Python threads running ``nogil`` kernels. (numba's
  ``parallel=True``/prange does the same job but roughly triples the first-run compile
  time.) Every task owns its output rows: no race, no atomic, results independent of the
  thread count.
* **Weights**: every per-pixel constant (1/2σ², the normaliser, ρ and 1/A for the disk) is
  computed once per source pixel. A tap weight depends only on |dy|, |dx| and the source's
  σ, so one weight row serves the four taps (±dy, ±dx) (eight with the (dx, dy) transpose
  in the backward). Gaussian: e^{−(dy²+dx²)a} = e^{−dy²a}·e^{−dx²a}, and the R+1 values
  e^{−d²a} come from one e^{−a} per pixel (a vectorised exp within 1 ulp of libm's, in the
  kernels: no torch op whose OpenMP threads would then spin against ours) through the
  recurrence e^{−(d+1)²a} = e^{−d²a}·e^{−(2d+1)a}: products only, equal to exp(−r²a) to a
  few ulp (≈1e-15 relative). Weights below 1e-30 (float64: 1e-280) are flushed to 0 so that
  no denormal reaches the tap loops (< 1e-20 of any normaliser). Disk:
  clamp(ρ − |u| + ½, 0, 1)/A(ρ) with |u| a per-tap constant.
* **Forward** (gather J(x) = Σ_u w_{x−u}(u)·I(x−u) / Σ_u w_{x−u}(u)): each source row s is
  visited once per task; for every |dy| it builds hz(j) = Σ_{|dx|} Σ_± w·(1, I) at source
  column j ∓ |dx| and adds it to the output rows s ± |dy|. Each weight is computed once and
  applied to every channel; the short per-(row, |dy|) sums (2R+1 terms) run in the image
  dtype, the numerator/denominator accumulators in float64 (float32 ones cost 4× in the
  accuracy of ∂L/∂σ, which needs J to full float32 precision where J ≈ I).
* **Backward**: one gather pass over SOURCE pixels q for both gradients, h = g/D and
  hJ = Σ_c h_c·J_c prepared per task (computed in float64)::

      ∂L/∂I_q = Σ_u w_q(u)·h(q+u)
      ∂L/∂σ_q = Σ_u ∂w_q(u)/∂σ · (Σ_c I_{q,c}·h_c(q+u) − hJ(q+u))

  ∂w/∂σ = F1·v − F2·w with per-pixel F1, F2 and per-tap v (Gaussian: w·(r²/σ³ − 2/σ), so
  v = r²·w; disk: 2·(1{0<raw<1}/A − w·A′/A), v = the indicator), so the tap loop only
  accumulates G_c = Σ w·h_c and K_c = Σ v·h_c for the channels and hJ (in the image dtype:
  float32 keeps the gradients within ~3e-5 of the exact ones, as good as the float32
  reference); the channel sums are combined per pixel in float64 at the end. ∂w/∂σ is zero
  where σ < SIGMA_MIN_PX.
* **Vectorisation**: the hot loops index with unsigned offsets (numba wraps negative signed
  indices, which stops LLVM from vectorising) and touch few distinct arrays.
* **Memory**: scratch O((rows + 2R)·(C + R)·W) per running task; never a k²·H·W buffer.

float32 and float64 inputs are both supported (numba specialises the kernels per dtype; the
float64 path is float64 throughout). ``cache=True`` keeps the compiled kernels in
__pycache__ (first run: ~15 s of compilation for both dtypes).
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
from numba import njit

from ._numba_common import SIGMA_MIN, disk_area as _disk_area, disk_darea as _disk_darea, h_row, source_row as _source_row
from ...parallel import kernel_threads, num_threads, run_parallel as _run_parallel, run_parallel_calls as _run_parallel_calls  # noqa: F401
from ..autograd import defocus_function, grad_buffers

try:  # the per-radius Gaussian kernels (numba.literally); without them the general kernels serve
    from . import cpu_gaussian as _cg
except ImportError:  # pragma: no cover - very old numba
    _cg = None

_SMIN = SIGMA_MIN


# --------------------------------------------------------------------------- forward


@njit(nogil=True, fastmath=False, cache=True)
def _forward_kernel(img, sig, out, den, R, disk, tiny, rows, first, step):  # pragma: no cover - numba
    """Tasks first, first+step, … of the forward; task = (image, band of ``rows`` output rows).

    Each source row s of the band (plus an R-row halo) is visited once: for every |dy| it builds
    hz(j) = Σ_{|dx|} Σ_± w_q(|dy|, |dx|)·(1, I_q), q = j ∓ |dx| (weights are symmetric in the
    signs of dy and dx), and adds hz to the output rows s ± |dy| of the band.

    (The loops index 2-D arrays with offsets and update two channels per pass: the form LLVM
    vectorises best here. Channel 0 of V is the constant 1, so hz[0] is the denominator.)
    """
    B, C, H, W = img.shape
    C1 = C + 1
    WP = W + 2 * R                     # rows padded by R zero columns on each side
    nchunk = (H + rows - 1) // rows
    # unsigned offsets: numba adds a negative-index wrap-around to signed ones, which stops
    # LLVM from vectorising the loops below
    Wu = np.uint64(W)
    Ru = np.uint64(R)
    for task in range(first, B * nchunk, step):
        b = task // nchunk
        r0 = (task - b * nchunk) * rows
        r1 = min(H, r0 + rows)
        acc = np.zeros((r1 - r0, C1, W))             # [0] Σw, [1+c] Σw·I_c (float64)
        # the per-(source row, |dy|) sums are short (2R+1 taps): image dtype
        V = np.zeros((C1, WP), dtype=img.dtype)      # (1, I_c) of the source row, zero pads
        V[0, R:R + W] = 1.0
        wp = np.zeros(WP, dtype=img.dtype)           # weight row of one (|dy|, |dx|), zero pads
        hz = np.empty((C1, W), dtype=img.dtype)
        P0 = np.empty(W)
        P1 = np.empty(W)
        E = np.empty((R + 1, W))
        rr = np.empty(W)
        bits = np.empty(W, dtype=np.int64)
        za = np.empty(W)
        for s_row in range(max(0, r0 - R), min(H, r1 + R)):
            for c in range(C):
                irow = img[b, c, s_row]
                cu = np.uint64(1 + c)
                for q in range(Wu):
                    V[cu, Ru + q] = irow[q]
            _source_row(sig, b, s_row, disk, P0, P1, E, rr, bits)
            for ay in range(R + 1):
                # this source row reaches output rows s_row + ay and s_row − ay
                hit_dn = s_row + ay >= r0 and s_row + ay < r1
                hit_up = ay > 0 and s_row - ay >= r0 and s_row - ay < r1
                if not (hit_dn or hit_up):
                    continue
                if not disk:
                    for q in range(W):
                        za[q] = P0[q] * E[ay, q]
                for ax in range(R + 1):
                    if disk:
                        rt = math.sqrt(np.float64(ay * ay + ax * ax))
                        for q in range(Wu):
                            wp[Ru + q] = min(max(P0[q] - rt + 0.5, 0.0), 1.0) * P1[q]
                    else:
                        eax = E[ax]
                        for q in range(Wu):
                            wq = za[q] * eax[q]
                            wp[Ru + q] = wq if wq >= tiny else 0.0   # no denormals (see _flush_below)
                    la = np.uint64(R - ax)
                    lb = np.uint64(R + ax)
                    if ax == 0:
                        for c in range(C1):
                            cu = np.uint64(c)
                            for j in range(Wu):
                                hz[cu, j] = wp[Ru + j] * V[cu, Ru + j]
                    else:
                        for c in range(0, C1 - 1, 2):   # two channels per pass
                            c0 = np.uint64(c)
                            c1 = np.uint64(c + 1)
                            for j in range(Wu):
                                a = wp[la + j]
                                bb = wp[lb + j]
                                hz[c0, j] += a * V[c0, la + j] + bb * V[c0, lb + j]
                                hz[c1, j] += a * V[c1, la + j] + bb * V[c1, lb + j]
                        if C1 % 2 == 1:
                            c0 = np.uint64(C1 - 1)
                            for j in range(Wu):
                                hz[c0, j] += wp[la + j] * V[c0, la + j] + wp[lb + j] * V[c0, lb + j]
                for k in range(2):
                    if (hit_dn if k == 0 else hit_up):
                        il = np.uint64((s_row + ay if k == 0 else s_row - ay) - r0)
                        for c in range(C1):
                            cu = np.uint64(c)
                            for j in range(Wu):
                                acc[il, cu, j] += hz[cu, j]
        for il in range(r1 - r0):
            drow = den[b, 0, r0 + il]
            for j in range(W):
                drow[j] = acc[il, 0, j]
                acc[il, 0, j] = 1.0 / acc[il, 0, j]
            for c in range(C):
                orow = out[b, c, r0 + il]
                for j in range(W):
                    orow[j] = acc[il, 1 + c, j] * acc[il, 0, j]


# --------------------------------------------------------------------------- backward


@njit(nogil=True, fastmath=False, cache=True)
def _backward_kernel(img, sig, out, den, gout, gimg, gsig, R, disk, tiny, rows, need_i, need_s,
                     first, step):  # pragma: no cover - numba
    """Tasks first, first+step, … of the backward; task = (image, band of ``rows`` source rows).

    For a source row i: vs[a] = h(i+a) + h(i−a) (a > 0; vs[0] = h(i); zero outside the image),
    then for each pair |dy| = ay ≤ |dx| = ax one weight row w (and v = r²w, or the disk's
    1{0<raw<1}) serves the eight taps (±ay, ±ax), (±ax, ±ay):
    G += w·hh, K += v·hh, hh = vs[ay](q ∓ ax) + vs[ax](q ∓ ay), per channel of h and hJ.
    """
    B, C, H, W = img.shape
    WP = W + 2 * R
    CH = C + 1 if need_s else C      # channels of h, plus hJ when ∂L/∂σ is wanted
    Z = R + 1                        # an all-zero row of vs
    nchunk = (H + rows - 1) // rows
    Wu = np.uint64(W)                # unsigned offsets vectorise (see the forward)
    Ru = np.uint64(R)
    u0 = np.uint64(0)
    u1 = np.uint64(1)
    for task in range(first, B * nchunk, step):
        b = task // nchunk
        r0 = (task - b * nchunk) * rows
        r1 = min(H, r0 + rows)
        x_lo = max(0, r0 - R)
        x_hi = min(H, r1 + R)
        nx = x_hi - x_lo
        # h = g / D (channels 0..C−1) and hJ = Σ_c h_c·J_c (channel C), computed in float64,
        # kept (like every buffer of the tap loops) in the image dtype
        hb = np.zeros((nx, CH, W), dtype=img.dtype)
        inv_d = np.empty(W)
        hj64 = np.empty(W)
        for xl in range(nx):
            h_row(den, gout, out, b, x_lo + xl, hb[xl], 0, inv_d, hj64, need_s)
        vs = np.zeros((R + 2, CH, WP), dtype=img.dtype)
        GK = np.empty((2, CH, W), dtype=img.dtype)   # [0]: G = Σ_u w·h(q+u); [1]: K = Σ_u v·h(q+u)
        wv = np.empty((2, W), dtype=img.dtype)       # [0]: w; [1]: v = r²·w (Gaussian) | 1{0<raw<1} (disk)
        P0 = np.empty(W)
        P1 = np.empty(W)
        F1 = np.empty(W)            # Gaussian: live/σ³   | disk: 2·live/A
        F2 = np.empty(W)            # Gaussian: 2·live/σ  | disk: 2·live·A′/A
        E = np.empty((R + 1, W))
        rr = np.empty(W)
        bits = np.empty(W, dtype=np.int64)
        za = np.empty(W)
        x1 = np.empty(W)
        x2 = np.empty(W)
        for i in range(r0, r1):
            _source_row(sig, b, i, disk, P0, P1, E, rr, bits)
            srow = sig[b, 0, i]
            if disk:
                for q in range(W):
                    live = 2.0 if np.float64(srow[q]) >= _SMIN else 0.0
                    F1[q] = live * P1[q]
                    F2[q] = live * _disk_darea(P0[q]) * P1[q]
            else:
                for q in range(W):
                    sv = np.float64(srow[q])
                    inv_s = 1.0 / max(sv, _SMIN)
                    live = inv_s if sv >= _SMIN else 0.0
                    F1[q] = live * inv_s * inv_s
                    F2[q] = 2.0 * live
            for a in range(R + 1):
                have_d = i + a < H
                have_u = a > 0 and i - a >= 0
                xd = i + a - x_lo
                xu = i - a - x_lo
                au = np.uint64(a)
                for c in range(CH):
                    cu = np.uint64(c)
                    if have_d and have_u:
                        for j in range(Wu):
                            vs[au, cu, Ru + j] = hb[xd, c, j] + hb[xu, c, j]
                    elif have_d:
                        for j in range(Wu):
                            vs[au, cu, Ru + j] = hb[xd, c, j]
                    elif have_u:
                        for j in range(Wu):
                            vs[au, cu, Ru + j] = hb[xu, c, j]
                    else:
                        for j in range(Wu):
                            vs[au, cu, Ru + j] = 0.0
            GK[:, :, :] = 0.0
            # pairs ay ≤ ax: w(ay, ax) = w(ax, ay) serves the taps (±ay, ±ax) and (±ax, ±ay)
            for ay in range(R + 1):
                if not disk:
                    for q in range(W):
                        za[q] = P0[q] * E[ay, q]
                for ax in range(ay, R + 1):
                    r2 = np.float64(ay * ay + ax * ax)
                    if disk:
                        rt = math.sqrt(r2)
                        for q in range(W):
                            raw = P0[q] - rt + 0.5
                            wv[0, q] = min(max(raw, 0.0), 1.0) * P1[q]
                            wv[1, q] = 1.0 if (raw > 0.0 and raw < 1.0) else 0.0
                    else:
                        for q in range(W):
                            wq = za[q] * E[ax, q]
                            if wq < tiny:          # no denormals (see _flush_below)
                                wq = 0.0
                            wv[0, q] = wq
                            wv[1, q] = r2 * wq
                    ra = np.uint64(ay)
                    la = np.uint64(R - ax)
                    lb = np.uint64(R + ax)
                    if ay == ax:
                        # (±a, ±a); the centre (0, 0) reads vs[0] once (the second operand is zero)
                        rb = np.uint64(ay if ax > 0 else Z)
                        for c in range(CH):
                            cu = np.uint64(c)
                            if need_s:
                                for q in range(Wu):
                                    hh = vs[ra, cu, la + q] + vs[rb, cu, lb + q]
                                    GK[u0, cu, q] += wv[u0, q] * hh
                                    GK[u1, cu, q] += wv[u1, q] * hh
                            else:
                                for q in range(Wu):
                                    GK[u0, cu, q] += wv[u0, q] * (vs[ra, cu, la + q] + vs[rb, cu, lb + q])
                    else:
                        # (±ay, ±ax) and (±ax, ±ay); for ay = 0 the second pair is the one tap (±ax, 0)
                        rc = np.uint64(ax)
                        rd = np.uint64(ax if ay > 0 else Z)
                        lc = np.uint64(R - ay)
                        ld = np.uint64(R + ay)
                        for c in range(CH):
                            cu = np.uint64(c)
                            if need_s:
                                for q in range(Wu):
                                    hh = (vs[ra, cu, la + q] + vs[ra, cu, lb + q]) + (vs[rc, cu, lc + q]
                                                                                     + vs[rd, cu, ld + q])
                                    GK[u0, cu, q] += wv[u0, q] * hh
                                    GK[u1, cu, q] += wv[u1, q] * hh
                            else:
                                for q in range(Wu):
                                    GK[u0, cu, q] += wv[u0, q] * ((vs[ra, cu, la + q] + vs[ra, cu, lb + q])
                                                                  + (vs[rc, cu, lc + q] + vs[rd, cu, ld + q]))
            if need_i:
                for c in range(C):
                    grow = gimg[b, c, i]
                    for q in range(W):
                        grow[q] = GK[0, c, q]
            if need_s:
                # ∂L/∂σ = F1·Σ_u v·S − F2·Σ_u w·S with S = Σ_c I_c·h_c(q+u) − hJ(q+u)
                for q in range(W):
                    x1[q] = -np.float64(GK[0, C, q])
                    x2[q] = -np.float64(GK[1, C, q])
                for c in range(C):
                    irow = img[b, c, i]
                    for q in range(W):
                        iv = np.float64(irow[q])
                        x1[q] += iv * np.float64(GK[0, c, q])
                        x2[q] += iv * np.float64(GK[1, c, q])
                grow = gsig[b, 0, i]
                for q in range(W):
                    grow[q] = F1[q] * x2[q] - F2[q] * x1[q]


# --------------------------------------------------------------------------- glue


def _flush_below(dtype: torch.dtype) -> float:
    """Gaussian tap weights below this are set to 0, so that the tap loops never meet
    denormals (a slow path on x86: 1.6× on the whole call with σ down to 0 px). A tap weight
    that small is < 1e-20 of any output's normaliser (≥ the centre weight 1/2πσ², σ ≤ 10³ px):
    invisible in the result and in both gradients."""
    return 1e-30 if dtype == torch.float32 else 1e-280


def _factor_flush_below(dtype: torch.dtype) -> float:
    """The per-radius Gaussian kernels flush each weight *factor* (E[d], P0·E[d]) below this, so
    that their products (≥ 1e-32 in float32) stay normal numbers for image values ≥ 1e-6. A
    factor that small is < 1e-14 of any normaliser with σ ≤ 10³ px (the flushed source has
    P0·E ≤ 13·1e-16): invisible in the result and in both gradients."""
    return 1e-16 if dtype == torch.float32 else 1e-150


def _rows_per_task(b: int, h: int, threads: int) -> int:
    """Rows per task: bands of ≤ 32 rows, shrunk (to ≥ 4) until each thread has ≥ 4 tasks."""
    rows = 32
    while rows > 4 and b * -(-h // rows) < 4 * threads:
        rows //= 2
    return max(1, min(rows, h))


def _rows_per_band(b: int, h: int, threads: int, radius: int) -> int:
    """Rows per task of the per-radius kernels, whose bands cost 2R halo rows each: whole
    images when the batch alone gives every thread ≥ 4 tasks (or divides evenly among them),
    else the fewest bands (≥ 16 rows) that do."""
    if b >= 4 * threads or b % threads == 0:
        return h
    bands = -(-4 * threads // b)
    return max(min(h, 16), -(-h // bands))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


# Gaussian windows up to this radius use the per-radius kernels of .cpu_gaussian (one compiled
# specialisation per R, a few seconds each on first use, then cached); wider ones (k > 33, σ > ~5 px
# at ±3σ) use the general kernels here, whose tap loops are not unrolled.
MAX_UNROLLED_RADIUS = 16


def _use_gaussian_kernels(psf: str, radius: int) -> bool:
    return psf == "gaussian" and radius <= MAX_UNROLLED_RADIUS and _cg is not None


_entry_points: dict = {}
_entry_lock = threading.Lock()


def _specialised(kernel, args: tuple, r_index: int):
    """The compiled entry point of ``kernel`` for these argument types with args[r_index] (the
    radius) as a literal. Calling the dispatcher itself would re-enter numba's compiler (under
    its global lock, ~5 ms) on every call, because a plain int never matches a Literal[int]
    signature; the entry point is a direct, GIL-free call."""
    from numba import typeof, types
    sig = tuple(types.literal(a) if i == r_index else typeof(a) for i, a in enumerate(args + (0, 1)))
    ep = _entry_points.get((kernel, sig))
    if ep is None:
        with _entry_lock:
            ep = _entry_points.get((kernel, sig))
            if ep is None:
                ep = _entry_points[(kernel, sig)] = kernel.compile(sig)
    return ep


def _runs(radius, b: int):
    """(first image, end image, radius) of each run of consecutive images sharing one window radius:
    ``radius`` is one int for the batch or one per image (see :func:`focalstack.render.defocus`)."""
    if isinstance(radius, int):
        return [(0, b, radius)] if b else []
    runs = []
    for i, r in enumerate(radius):
        if runs and runs[-1][2] == r:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1, int(r)])
    return [tuple(r) for r in runs]


def forward(image: torch.Tensor, sigma: torch.Tensor, radius, psf: str):
    """(J, D) for contiguous CPU tensors (no autograd); ``radius``: one int, or one per image."""
    out = torch.empty_like(image)
    den = torch.empty_like(sigma)
    if image.numel() == 0:
        return out, den
    threads = num_threads()
    b = image.shape[0]
    _run_parallel_calls([_forward_call(image[i0:i1], sigma[i0:i1], out[i0:i1], den[i0:i1], r, psf, b, threads)
                         for i0, i1, r in _runs(radius, b)], threads)
    return out, den


def _forward_call(image, sigma, out, den, radius: int, psf: str, batch: int, threads: int):
    """(kernel, args) of the forward over these images; bands sized for the whole ``batch``."""
    h = image.shape[2]
    if _use_gaussian_kernels(psf, radius):
        args = (_np(image), _np(sigma), out.numpy(), den.numpy(), int(radius), _factor_flush_below(image.dtype),
                image.dtype == torch.float32, _rows_per_band(batch, h, threads, radius))
        return _specialised(_cg.forward_kernel, args, 4), args
    return _forward_kernel, (_np(image), _np(sigma), out.numpy(), den.numpy(), int(radius), psf == "disk",
                             _flush_below(image.dtype), _rows_per_task(batch, h, threads))


def backward(grad_out, image, sigma, out, den, radius, psf: str, need_i: bool = True, need_s: bool = True):
    """(∂L/∂I, ∂L/∂σ) (None where not needed) for contiguous CPU tensors; ``radius`` as in :func:`forward`."""
    g_img, g_sig, trivial = grad_buffers(image, sigma, need_i, need_s)
    if trivial:
        return g_img, g_sig
    threads = num_threads()
    b = image.shape[0]
    calls = []
    for i0, i1, r in _runs(radius, b):
        sl = slice(i0, i1)
        calls.append(_backward_call(grad_out[sl], image[sl], sigma[sl], out[sl], den[sl],
                                    g_img[sl] if need_i else None, g_sig[sl] if need_s else None, r, psf, b, threads))
    _run_parallel_calls(calls, threads)
    return g_img, g_sig


def _backward_call(grad_out, image, sigma, out, den, g_img, g_sig, radius: int, psf: str, batch: int, threads: int):
    """(kernel, args) of the backward over these images (None gradient buffer: not wanted)."""
    h = image.shape[2]
    need_i, need_s = g_img is not None, g_sig is not None
    dummy = np.empty((0, 0, 0, 0), dtype=_np(image).dtype)
    args = (_np(image), _np(sigma), _np(out), _np(den), _np(grad_out),
            g_img.numpy() if need_i else dummy, g_sig.numpy() if need_s else dummy, int(radius))
    if _use_gaussian_kernels(psf, radius):
        args = args + (_factor_flush_below(image.dtype), image.dtype == torch.float32,
                       _rows_per_band(batch, h, threads, radius), bool(need_i), bool(need_s))
        return _specialised(_cg.backward_kernel, args, 7), args
    return _backward_kernel, args + (psf == "disk", _flush_below(image.dtype), _rows_per_task(batch, h, threads),
                                     bool(need_i), bool(need_s))


_DefocusCPU = defocus_function(forward, backward, "_DefocusCPU")


def defocus_cpu(image: torch.Tensor, sigma: torch.Tensor, radius: int, psf: str = "gaussian") -> torch.Tensor:
    """The "cpu" backend: validated contiguous CPU tensors, image [B,C,H,W], sigma [B,1,H,W];
    ``radius`` one int, or a tuple of one per image (each image rendered with its own window)."""
    if image.device.type != "cpu":
        raise ValueError(f"defocus backend 'cpu' needs CPU tensors, got {image.device}")
    radius = int(radius) if isinstance(radius, int) else tuple(int(r) for r in radius)
    return _DefocusCPU.apply(image.contiguous(), sigma.contiguous(), radius, psf)


def available(image: torch.Tensor) -> bool:
    return image.device.type == "cpu"
