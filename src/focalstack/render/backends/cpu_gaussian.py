"""Gaussian kernels of the "cpu" backend, compiled once per window radius R.

Same weights and maths as :mod:`focalstack.render.reference`; what differs from the general
kernels of :mod:`.cpu` (which serve the disk PSF) is how the work is laid out, and that R is a
compile-time constant (``numba.literally``): the tap loop over |dx| = 0..R is then fully
unrolled inside the loop over pixels (in passes of a few taps for wide windows, see
``_FWD_TAPS_PER_PASS``), so LLVM vectorises over pixels with every partial sum of a pixel in a
register instead of a memory round trip per tap.

The Gaussian weight of source q at offset (dy, dx) factorises,
``w_q(dy, dx) = P0_q · E_q[|dy|] · E_q[|dx|]`` with ``P0 = 1/2πσ²`` and ``E[d] = e^{−d²/2σ²}``
(the R+1 values per source pixel come from :func:`._numba_common.source_row`), which both
kernels use:

* **Forward** (scatter from source rows, written as gathers along the row): for a source row s
  and each |dy| = ay, ``A_c = P0·E[ay]·V_c`` (V = (1, I_0..I_{C−1}); channel 0 is the
  normaliser), then ``hz_c(j) = Σ_{|dx|≤R} E[|dx|](j∓dx)·A_c(j∓dx)`` and hz is added to the
  output rows s ± ay. Those live in a ring buffer of 2R+1 float64 rows (≈ 60 KiB at W = 256):
  an output row is final once source row o + R has been added, and is written out then.
  Every weight is computed once per source pixel and shared by the channels.
* **Backward** (gather over source pixels q, h = ∂L/∂J / D and hJ = Σ_c h_c·J_c as in the
  reference): with vs[ay] = h(row i + ay) + h(row i − ay),
  ``T0 = Σ_ax E[ax]·(vs[ay](q−ax) + vs[ay](q+ax))`` and ``T2`` the same with ax² E[ax];
  ``G = Σ_ay E[ay]·T0`` and ``K = Σ_ay E[ay]·(ay²·T0 + T2)`` give
  ``∂L/∂I_q = P0·G`` and ``∂L/∂σ_q = P0·(Σ_c I_c K_c − K_hJ)/σ³ − 2·P0·(Σ_c I_c G_c − G_hJ)/σ``
  (∂w/∂σ = w·(r²/σ³ − 2/σ), r² = ay² + ax²).

Accumulation: per-tap products and the short row sums in the image dtype, the output
accumulators (ring) and the per-pixel combinations in float64. Factors below ``tiny`` are
flushed to 0 so that no denormal reaches the tap loops (see ``cpu._flush_below``).
Tasks = (image, band of rows), as in :mod:`.cpu`.
"""

from __future__ import annotations

import numpy as np
from numba import literally, njit

from ._numba_common import SIGMA_MIN, gauss_row, gauss_row_scratch, h_row

# Row taps |dx| = 1..R (forward and backward) are unrolled in passes of at most these many: LLVM
# stops fully unrolling a longer loop (forward R ≥ 11, backward R ≥ 15), and the pixel loop
# around it then no longer vectorises (measured: 3.5–6× the time per tap). Partial sums carry
# between passes in the image dtype, so the sums and their order are the same as in one pass.
_FWD_TAPS_PER_PASS = 8
_BWD_TAPS_PER_PASS = 14


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _row_taps(Ex, a0, a1, q, lo, hi, t0, t1):  # pragma: no cover - numba
    """Forward row taps |dx| = lo..hi of channels a0, a1 around padded column q, added to (t0, t1).
    Inlined in numba's IR, so with constant lo/hi (R a literal) LLVM unrolls the loop."""
    for ax in range(lo, hi + 1):
        axu = np.uint64(ax)
        ea = Ex[axu, q - axu]
        eb = Ex[axu, q + axu]
        t0 += ea * a0[q - axu] + eb * a0[q + axu]
        t1 += ea * a1[q - axu] + eb * a1[q + axu]
    return t0, t1


@njit(nogil=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _forward_r(img, sig, out, den, R, tiny, lowp, rows, first, step):  # pragma: no cover - numba
    B, C, H, W = img.shape
    C1 = C + 1
    C1p = C1 + (C1 & 1)                       # channel pairs: one spare all-zero channel if odd
    NR = 2 * R + 1
    WP = W + 2 * R
    Wu = np.uint64(W)                         # unsigned offsets vectorise (see cpu.py)
    Ru = np.uint64(R)
    RA = min(R, _FWD_TAPS_PER_PASS)
    nchunk = (H + rows - 1) // rows
    for task in range(first, B * nchunk, step):
        b = task // nchunk
        r0 = (task - b * nchunk) * rows
        r1 = min(H, r0 + rows)
        tz = np.empty(1, dtype=img.dtype)
        tz[0] = tiny
        tzv = tz[0]                                   # the flush threshold in the image dtype
        ring = np.zeros((NR, C1, W), dtype=img.dtype)   # output rows (o mod NR): [0] Σw, [1+c] Σw·I_c
        A = np.zeros((C1p, WP), dtype=img.dtype)      # P0·E[ay]·V_c of the source row, zero pads
        Ex = np.zeros((R + 1, WP), dtype=img.dtype)   # E[ax] of the source row, zero pads
        HZ = np.empty((C1p, W), dtype=img.dtype)
        P0, inv_s, s64, s64b, bits64, f1, f2, bits32 = gauss_row_scratch(img, W)
        for s in range(r0 - R, r1 + R):
            if s >= 0 and s < H:
                gauss_row(sig[b, 0, s], P0, Ex, inv_s, s64, s64b, bits64, f1, f2, bits32, R, tiny, lowp)
                for ay in range(R + 1):
                    dn = s + ay >= r0 and s + ay < r1
                    up = ay > 0 and s - ay >= r0 and s - ay < r1
                    if not (dn or up):
                        continue
                    eay = Ex[ay]
                    for q in range(Wu):
                        z = P0[q] * eay[Ru + q]
                        A[0, Ru + q] = z if z >= tzv else 0.0
                    for c in range(C):
                        irow = img[b, c, s]
                        cu = np.uint64(1 + c)
                        for q in range(Wu):
                            A[cu, Ru + q] = A[0, Ru + q] * irow[q]
                    for c in range(0, C1p, 2):
                        a0 = A[c]
                        a1 = A[c + 1]
                        h0 = HZ[c]
                        h1 = HZ[c + 1]
                        for j in range(Wu):
                            e = Ex[0, Ru + j]
                            h0[j], h1[j] = _row_taps(Ex, a0, a1, Ru + j, 1, RA, e * a0[Ru + j], e * a1[Ru + j])
                        if R > RA:                           # the taps past RA: a second unrolled pass
                            for j in range(Wu):
                                h0[j], h1[j] = _row_taps(Ex, a0, a1, Ru + j, RA + 1, R, h0[j], h1[j])
                    for k in range(2):
                        if (dn if k == 0 else up):
                            o = s + ay if k == 0 else s - ay
                            slot = ring[o % NR]
                            for c in range(C1):
                                rc = slot[c]
                                hc = HZ[c]
                                for j in range(Wu):
                                    rc[j] += hc[j]
            o = s - R                    # every source row of output row o has been added
            if o >= r0 and o < r1:
                slot = ring[o % NR]
                drow = den[b, 0, o]
                d0 = slot[0]
                for j in range(Wu):
                    drow[j] = d0[j]
                for c in range(C):
                    orow = out[b, c, o]
                    sc = slot[1 + c]
                    for j in range(Wu):
                        orow[j] = sc[j] / d0[j]
                slot[:, :] = 0.0


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _row_taps_g(Ex, vr, q, Ru, lo, hi, t0):  # pragma: no cover - numba
    """Backward row taps |dx| = lo..hi of source q: t0 + Σ E[ax]·(v(q−ax) + v(q+ax))."""
    for ax in range(lo, hi + 1):
        axu = np.uint64(ax)
        t0 += Ex[axu, q] * (vr[Ru + q - axu] + vr[Ru + q + axu])
    return t0


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _row_taps_k(Ex, vr, sq, q, Ru, lo, hi, t0, t2):  # pragma: no cover - numba
    """As :func:`_row_taps_g`, with t2 + Σ ax²·E[ax]·(…) beside it (the ∂/∂σ terms)."""
    for ax in range(lo, hi + 1):
        axu = np.uint64(ax)
        e = Ex[axu, q] * (vr[Ru + q - axu] + vr[Ru + q + axu])
        t0 += e
        t2 += sq[axu] * e
    return t0, t2


@njit(nogil=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _backward_r(img, sig, out, den, gout, gimg, gsig, R, tiny, lowp, rows, need_i, need_s,
                first, step):  # pragma: no cover - numba
    B, C, H, W = img.shape
    CH = C + 1 if need_s else C      # channels of h, plus hJ when ∂L/∂σ is wanted
    WP = W + 2 * R
    Wu = np.uint64(W)
    Ru = np.uint64(R)
    RA = min(R, _BWD_TAPS_PER_PASS)
    nchunk = (H + rows - 1) // rows
    sq = np.empty(R + 1, dtype=img.dtype)        # ax² in the image dtype (no float64 promotion)
    for a in range(R + 1):
        sq[a] = a * a
    # one scratch for all tasks of this call: its pages are faulted in once (a fresh ~1 MiB
    # allocation per task costs a page fault per 4 KiB each time)
    hb = np.empty((min(rows, H) + 2 * R, CH, WP), dtype=img.dtype)
    for task in range(first, B * nchunk, step):
        b = task // nchunk
        r0 = (task - b * nchunk) * rows
        r1 = min(H, r0 + rows)
        x_lo = r0 - R
        nx = r1 - r0 + 2 * R
        # h = g / D and hJ = Σ_c h_c·J_c (float64 maths, image-dtype storage) of the rows the
        # band's sources reach; rows outside the image and the R-column pads stay 0
        hb[:, :, :Ru] = 0.0
        hb[:, :, Ru + Wu:] = 0.0
        inv_d = np.empty(W)
        hj64 = np.empty(W)
        for xl in range(nx):
            x = x_lo + xl
            if x < 0 or x >= H:
                hb[xl, :, :] = 0.0
                continue
            h_row(den, gout, out, b, x, hb[xl], R, inv_d, hj64, need_s)
        vs = np.empty((R + 1, CH, WP), dtype=img.dtype)
        Ex = np.empty((R + 1, W), dtype=img.dtype)
        G = np.empty((CH, W), dtype=img.dtype)
        K = np.empty((CH, W), dtype=img.dtype)
        P0, inv_s, s64, s64b, bits64, f1, f2, bits32 = gauss_row_scratch(img, W)
        T0 = np.empty(W, dtype=img.dtype)             # row-tap partial sums between passes
        T2 = np.empty(W, dtype=img.dtype)
        F1 = np.empty(W)
        F2 = np.empty(W)
        x1 = np.empty(W)
        x2 = np.empty(W)
        for i in range(r0, r1):
            gauss_row(sig[b, 0, i], P0, Ex, inv_s, s64, s64b, bits64, f1, f2, bits32, 0, tiny, lowp)
            il = i - x_lo
            for c in range(CH):
                v0 = vs[0, c]
                h0 = hb[il, c]
                for j in range(WP):
                    v0[j] = h0[j]
                for a in range(1, R + 1):
                    va = vs[a, c]
                    hd = hb[il + a, c]
                    hu = hb[il - a, c]
                    for j in range(WP):
                        va[j] = hd[j] + hu[j]
            for c in range(CH):
                gc = G[c]
                kc = K[c]
                for q in range(Wu):
                    gc[q] = 0.0
                    kc[q] = 0.0
                for ay in range(R + 1):
                    vr = vs[ay, c]
                    eay = Ex[ay]
                    # taps |dx| ≤ RA in one unrolled pass, the rest in a second (see _BWD_TAPS_PER_PASS)
                    if need_s:
                        ay2 = sq[ay]
                        for q in range(Wu):
                            t0 = Ex[0, q] * vr[Ru + q]
                            T0[q], T2[q] = _row_taps_k(Ex, vr, sq, q, Ru, 1, RA, t0, sq[0] * t0)  # sq[0]·t0: 0 in the image dtype
                        if R > RA:
                            for q in range(Wu):
                                T0[q], T2[q] = _row_taps_k(Ex, vr, sq, q, Ru, RA + 1, R, T0[q], T2[q])
                        for q in range(Wu):
                            gc[q] += eay[q] * T0[q]
                            kc[q] += eay[q] * (ay2 * T0[q] + T2[q])
                    else:
                        for q in range(Wu):
                            T0[q] = _row_taps_g(Ex, vr, q, Ru, 1, RA, Ex[0, q] * vr[Ru + q])
                        if R > RA:
                            for q in range(Wu):
                                T0[q] = _row_taps_g(Ex, vr, q, Ru, RA + 1, R, T0[q])
                        for q in range(Wu):
                            gc[q] += eay[q] * T0[q]
            if need_i:
                for c in range(C):
                    grow = gimg[b, c, i]
                    gc = G[c]
                    for q in range(Wu):
                        grow[q] = np.float64(P0[q]) * np.float64(gc[q])
            if need_s:
                srow = sig[b, 0, i]
                for q in range(Wu):
                    iv = np.float64(inv_s[q])
                    live = iv * np.float64(P0[q]) if np.float64(srow[q]) >= SIGMA_MIN else 0.0
                    F1[q] = live * iv * iv
                    F2[q] = 2.0 * live
                    x1[q] = -np.float64(G[C, q])
                    x2[q] = -np.float64(K[C, q])
                for c in range(C):
                    irow = img[b, c, i]
                    gc = G[c]
                    kc = K[c]
                    for q in range(Wu):
                        iv = np.float64(irow[q])
                        x1[q] += iv * np.float64(gc[q])
                        x2[q] += iv * np.float64(kc[q])
                grow = gsig[b, 0, i]
                for q in range(Wu):
                    grow[q] = F1[q] * x2[q] - F2[q] * x1[q]


# Thin wrappers that make R a literal (one compiled specialisation per window radius).
@njit(nogil=True, cache=True)
def forward_kernel(img, sig, out, den, R, tiny, lowp, rows, first, step):  # pragma: no cover - numba
    _forward_r(img, sig, out, den, literally(R), tiny, lowp, rows, first, step)


@njit(nogil=True, cache=True)
def backward_kernel(img, sig, out, den, gout, gimg, gsig, R, tiny, lowp, rows, need_i, need_s,
                    first, step):  # pragma: no cover - numba
    _backward_r(img, sig, out, den, gout, gimg, gsig, literally(R), tiny, lowp, rows, need_i, need_s,
                first, step)
