"""numba helpers shared by the CPU kernels (:mod:`.cpu`, :mod:`.cpu_gaussian`): a vectorisable
exp and the per-source-row constants of both PSFs (the weights of :mod:`focalstack.render.psf`)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .. import psf as _psf

SIGMA_MIN = float(_psf.SIGMA_MIN_PX)
_PI = math.pi
_PI_12 = math.pi / 12.0
_INV_PI = 1.0 / math.pi

# exp(x), x ≤ 0, vectorisable (see source_row): x = n·ln2 + r, |r| ≤ ln2/2, e^r by its
# degree-13 Taylor polynomial (truncation < 1e-17), 2^n from the exponent bits
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01      # fdlibm's split of ln 2
_LN2_LO = 1.90821492927058770002e-10
_TWO_M64 = 2.0 ** -64
(_E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9, _E10, _E11, _E12, _E13) = (1.0 / math.factorial(k) for k in range(2, 14))




@njit(inline="always", fastmath=False, cache=True)
def disk_area(rho):  # pragma: no cover - numba
    """A(ρ) of psf.py, branch-free so that the loops around it vectorise."""
    t = rho + 0.5
    return _PI * rho * rho + _PI_12 if rho >= 0.5 else _PI * (t * t * t) / 3.0


@njit(inline="always", fastmath=False, cache=True)
def disk_darea(rho):  # pragma: no cover - numba
    t = rho + 0.5
    return 2.0 * _PI * rho if rho >= 0.5 else _PI * (t * t)


@njit(inline="always", fastmath=False, cache=True)
def exp_neg(a, out, bits):  # pragma: no cover - numba
    """out = exp(−a) for a ≥ 0, within 1 ulp of libm's exp (exactly 0 beyond a ≈ 745.1), in
    two loops LLVM vectorises (a libm call per element costs 4–12× more)."""
    bf = bits.view(np.float64)
    for i in range(a.shape[0]):
        x = -min(a[i], 746.0)
        n = np.floor(x * _LOG2E + 0.5)
        r = (x - n * _LN2_HI) - n * _LN2_LO
        p = _E13 * r + _E12
        p = p * r + _E11
        p = p * r + _E10
        p = p * r + _E9
        p = p * r + _E8
        p = p * r + _E7
        p = p * r + _E6
        p = p * r + _E5
        p = p * r + _E4
        p = p * r + _E3
        p = p * r + _E2
        p = p * r + 1.0
        out[i] = p * r + 1.0
        bits[i] = np.int64(n + 1087.0) << 52        # 2^(n+64): a normal number for n ≥ −1077
    for i in range(a.shape[0]):
        out[i] = (out[i] * bf[i]) * _TWO_M64        # one rounding, also into the denormals


@njit(inline="always", fastmath=False, cache=True)
def source_row(sig, b, row, disk, P0, P1, E, rr, bits):  # pragma: no cover - numba
    """Per-source constants of one row. Gaussian: P0 = 1/(2πσ²), E[d] = e^{−d²a} (a = 1/2σ²)
    for d = 0..R from the one e^{−a} by the exact recurrence e^{−(d+1)²a} = e^{−d²a}·e^{−(2d+1)a};
    P1 = e^{−2a} (scratch). Disk: P0 = ρ = 2σ, P1 = 1/A(ρ)."""
    W = P0.shape[0]
    srow = sig[b, 0, row]
    if disk:
        for q in range(W):
            rho = 2.0 * max(np.float64(srow[q]), SIGMA_MIN)
            P0[q] = rho
            P1[q] = 1.0 / disk_area(rho)
    else:
        for q in range(W):
            inv_s = 1.0 / max(np.float64(srow[q]), SIGMA_MIN)
            a = 0.5 * inv_s * inv_s
            P0[q] = a * _INV_PI
            P1[q] = a
        exp_neg(P1, rr, bits)            # rr = e^{−a} = e^{−(2d+1)a} at d = 0
        e0 = E[0]
        for q in range(W):
            P1[q] = rr[q] * rr[q]         # e^{−2a}
            e0[q] = 1.0
        for d in range(1, E.shape[0]):
            ed = E[d]
            ep = E[d - 1]
            for q in range(W):
                ed[q] = ep[q] * rr[q]
                rr[q] *= P1[q]


# float32 exp(−a) for the float32 Gaussian kernels: the same range reduction in float32
# (Cody–Waite split of ln 2), e^r by its degree-7 Taylor polynomial (|r| ≤ ln2/2: truncation
# < 6e-9, below float32's 6e-8 ulp), 2^n from the exponent bits; a ≤ 87 keeps 2^n normal.
_F = np.float32
_ONE_F, _HALF_F, _AMAX_F, _BIAS_F = _F(1.0), _F(0.5), _F(87.0), _F(127.0)
_LOG2E_F = _F(1.4426950408889634)
_LN2_HI_F = _F(0.693359375)
_LN2_LO_F = _F(-2.12194440e-4)
_INV_PI_F = _F(1.0 / math.pi)
_SMIN_F = _F(SIGMA_MIN)
(_F2, _F3, _F4, _F5, _F6, _F7) = (_F(1.0 / math.factorial(k)) for k in range(2, 8))


@njit(inline="always", cache=True)
def gauss_row(srow, P0, E, inv_s, s64, s64b, bits64, f1, f2, bits32, off, tiny, lowp):  # pragma: no cover - numba
    """Gaussian constants of one source row in the dtype of P0/E/inv_s (the image dtype):
    P0[q] = 1/2πσ², E[d, off+q] = e^{−d²/2σ²} for d = 0..R (values below ``tiny`` flushed to 0,
    so no denormal ever reaches a tap loop), inv_s[q] = 1/σ, σ clamped at SIGMA_MIN.

    ``lowp`` (float32 images): everything in float32 — one float32 exp per pixel and the
    recurrence e^{−(d+1)²a} = e^{−d²a}·e^{−(2d+1)a} (a few ulp at d = R). Otherwise the
    float64 :func:`source_row` (within 1 ulp of libm), rounded once into the arrays.
    Scratch: s64, s64b (float64), bits64 (int64), f1, f2 (image dtype), bits32 (int32), all [W]."""
    W = srow.shape[0]
    R1 = E.shape[0]
    if lowp:
        bf = bits32.view(np.float32)
        for q in range(W):
            iv = _ONE_F / max(_F(srow[q]), _SMIN_F)
            a = _HALF_F * iv * iv
            inv_s[q] = iv
            P0[q] = a * _INV_PI_F
            x = -min(a, _AMAX_F)
            n = np.floor(x * _LOG2E_F + _HALF_F)
            r = (x - n * _LN2_HI_F) - n * _LN2_LO_F
            p = _F7 * r + _F6
            p = p * r + _F5
            p = p * r + _F4
            p = p * r + _F3
            p = p * r + _F2
            p = p * r + _ONE_F
            f1[q] = p * r + _ONE_F
            bits32[q] = np.int32(n + _BIAS_F) << 23
        tf = _F(tiny)
        for q in range(W):
            e1 = f1[q] * bf[q]                       # e^{−a}
            e1 = e1 if e1 >= tf else _F(0.0)
            e2 = e1 * e1                             # e^{−2a}
            f1[q] = e1
            f2[q] = e2 if e2 >= tf else _F(0.0)
            E[0, off + q] = _ONE_F
        for d in range(1, R1):
            ed = E[d]
            ep = E[d - 1]
            for q in range(W):
                v = ep[off + q] * f1[q]              # e^{−d²a} = e^{−(d−1)²a}·e^{−(2d−1)a}
                ed[off + q] = v if v >= tf else _F(0.0)
                w = f1[q] * f2[q]
                f1[q] = w if w >= tf else _F(0.0)
    else:
        for q in range(W):
            iv = 1.0 / max(np.float64(srow[q]), SIGMA_MIN)
            a = 0.5 * iv * iv
            inv_s[q] = iv
            P0[q] = a * _INV_PI
            s64[q] = a
        exp_neg(s64, s64b, bits64)                   # s64b = e^{−a}
        for q in range(W):
            s64[q] = s64b[q] * s64b[q]               # e^{−2a}
            E[0, off + q] = 1.0
        for d in range(1, R1):
            ed = E[d]
            for q in range(W):
                # e^{−d²a} in float64 from E[d−1] (exact in the float64 path) and e^{−(2d−1)a}
                v = np.float64(E[d - 1, off + q]) * s64b[q]
                ed[off + q] = v if v >= tiny else 0.0
                s64b[q] *= s64[q]


@njit(inline="always", cache=True)
def gauss_row_scratch(img, W):  # pragma: no cover - numba
    """Arrays for :func:`gauss_row` on rows of W pixels of ``img``'s dtype:
    (P0, inv_s, s64, s64b, bits64, f1, f2, bits32)."""
    return (np.empty(W, dtype=img.dtype), np.empty(W, dtype=img.dtype), np.empty(W), np.empty(W),
            np.empty(W, dtype=np.int64), np.empty(W, dtype=img.dtype), np.empty(W, dtype=img.dtype),
            np.empty(W, dtype=np.int32))


@njit(inline="always", cache=True)
def h_row(den, gout, out, b, x, hrow, off, inv_d, hj64, need_hj):  # pragma: no cover - numba
    """The backward's per-output quantities of row x: hrow[c, off+j] = ∂L/∂J_c / D (c < C) and,
    with ``need_hj``, hrow[C, off+j] = Σ_c h_c·J_c — float64 maths, stored in hrow's dtype.
    Scratch: inv_d, hj64 (float64, [W])."""
    C = gout.shape[1]
    W = gout.shape[3]
    ou = np.uint64(off)
    drow = den[b, 0, x]
    for j in range(W):
        inv_d[j] = 1.0 / np.float64(drow[j])
        hj64[j] = 0.0
    for c in range(C):
        grow = gout[b, c, x]
        orow = out[b, c, x]
        hc = hrow[c]
        for j in range(np.uint64(W)):
            hv = np.float64(grow[j]) * inv_d[j]
            hc[ou + j] = hv
            hj64[j] += hv * np.float64(orow[j])
    if need_hj:
        hc = hrow[C]
        for j in range(np.uint64(W)):
            hc[ou + j] = hj64[j]
