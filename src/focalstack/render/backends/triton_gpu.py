"""Fused GPU render backend ("triton"): Triton forward and analytic-backward kernels.

Same maths as :mod:`focalstack.render.reference` (see its docstring):

* **Forward**: one program per tile of ``BLOCK_H × BLOCK_W`` output pixels of one image. For
  every tap u it loads the source σ once, computes the tap weight once (Gaussian or disk, the
  formulas of psf.py, σ clamped at SIGMA_MIN_PX) and applies it to all channels at once (a
  ``[BLOCK_C, pixels]`` block); numerator and denominator stay in registers.
* **Backward**: one program per tile of SOURCE pixels q (σ_q and I_q are loaded once); per tap
  one weight and one ∂w/∂σ, then ∂L/∂I_q += w·h(q+u) and
  ∂L/∂σ_q += ∂w/∂σ·(Σ_c I_{q,c}·h_c(q+u) − hJ(q+u)), h = g/D and hJ = Σ_c h_c·J_c prepared
  by two elementwise torch ops.

Accumulation is float32 (float64 for float64 tensors). CUDA tensors run the compiled kernels.
With ``TRITON_INTERPRET=1`` set before triton is imported, the same kernels run in Triton's
interpreter on CPU tensors (numpy; slow — how the tests check them without a GPU).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .. import psf as _psf
from ..autograd import defocus_function, grad_buffers

SMIN = tl.constexpr(_psf.SIGMA_MIN_PX)
PI = tl.constexpr(math.pi)
PI_12 = tl.constexpr(math.pi / 12.0)

BLOCK_H = 8
BLOCK_W = 32


@triton.jit
def _tile(C, H, W, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """This program's image b, its tile's pixel rows/cols (i, j), the in-image mask, the channel
    lanes and their mask, and H·W."""
    tiles_w = tl.cdiv(W, BLOCK_W)
    tiles = tl.cdiv(H, BLOCK_H) * tiles_w
    pid = tl.program_id(0)
    b = (pid // tiles).to(tl.int64)          # one 1-D grid over (image, tile): no 65535 limit on B
    tile = pid % tiles
    p = tl.arange(0, BLOCK_H * BLOCK_W)
    i = (tile // tiles_w) * BLOCK_H + p // BLOCK_W
    j = (tile % tiles_w) * BLOCK_W + p % BLOCK_W
    inside = (i < H) & (j < W)
    cs = tl.arange(0, BLOCK_C)
    cmask = cs < C
    return b, i, j, inside, cs, cmask, H * W


@triton.jit
def _forward_kernel(img_ptr, sig_ptr, out_ptr, den_ptr, C, H, W, R,
                    DISK: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr,
                    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    b, i, j, inside, cs, cmask, hw = _tile(C, H, W, BLOCK_C, BLOCK_H, BLOCK_W)
    img_b = img_ptr + b * C * hw
    sig_b = sig_ptr + b * hw
    acc = tl.zeros([BLOCK_C, BLOCK_H * BLOCK_W], dtype=ACC)
    dacc = tl.zeros([BLOCK_H * BLOCK_W], dtype=ACC)
    for dy in range(-R, R + 1):
        si = i - dy
        row_ok = inside & (si >= 0) & (si < H)
        for dx in range(-R, R + 1):
            sj = j - dx
            m = row_ok & (sj >= 0) & (sj < W)
            src = si * W + sj
            s = tl.load(sig_b + src, mask=m, other=1.0).to(ACC)
            s = tl.maximum(s, SMIN)
            r2 = tl.zeros([BLOCK_H * BLOCK_W], dtype=ACC) + (dy * dy + dx * dx)
            if DISK:
                rho = 2.0 * s
                cover = tl.minimum(tl.maximum(rho - tl.sqrt(r2) + 0.5, 0.0), 1.0)
                t = rho + 0.5
                w = cover / tl.where(rho >= 0.5, PI * rho * rho + PI_12, PI * (t * t * t) / 3.0)
            else:
                inv2s2 = 0.5 / (s * s)
                w = tl.exp(-r2 * inv2s2) * (inv2s2 / PI)
            w = tl.where(m, w, 0.0)
            dacc += w
            v = tl.load(img_b + cs[:, None] * hw + src[None, :], mask=cmask[:, None] & m[None, :], other=0.0)
            acc += w[None, :] * v.to(ACC)
    pix = i * W + j
    outv = acc / tl.where(inside, dacc, 1.0)[None, :]
    tl.store(out_ptr + b * C * hw + cs[:, None] * hw + pix[None, :], outv,
             mask=cmask[:, None] & inside[None, :])
    tl.store(den_ptr + b * hw + pix, dacc, mask=inside)


@triton.jit
def _backward_kernel(img_ptr, sig_ptr, h_ptr, hj_ptr, gimg_ptr, gsig_ptr, C, H, W, R,
                     DISK: tl.constexpr, NEED_I: tl.constexpr, NEED_S: tl.constexpr,
                     ACC: tl.constexpr, BLOCK_C: tl.constexpr,
                     BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    b, i, j, inside, cs, cmask, hw = _tile(C, H, W, BLOCK_C, BLOCK_H, BLOCK_W)
    pix = i * W + j
    cm2 = cmask[:, None] & inside[None, :]
    sv = tl.load(sig_ptr + b * hw + pix, mask=inside, other=1.0).to(ACC)
    s = tl.maximum(sv, SMIN)
    live = tl.where(sv >= SMIN, 1.0, 0.0).to(ACC)
    iq = tl.load(img_ptr + b * C * hw + cs[:, None] * hw + pix[None, :], mask=cm2, other=0.0).to(ACC)
    h_b = h_ptr + b * C * hw
    hj_b = hj_ptr + b * hw
    if DISK:
        rho = 2.0 * s
        t = rho + 0.5
        area = tl.where(rho >= 0.5, PI * rho * rho + PI_12, PI * (t * t * t) / 3.0)
        darea = tl.where(rho >= 0.5, 2.0 * PI * rho, PI * (t * t))
        inv_area = 1.0 / area
        # ∂w/∂σ = 2·live·(1{0<raw<1}/A − cover·A′/A²)
        f1 = 2.0 * live * inv_area
        f2 = 2.0 * live * darea * inv_area * inv_area
    else:
        inv_s2 = 1.0 / (s * s)
        norm = 0.5 * inv_s2 / PI
        # ∂w/∂σ = w·(r²/σ² − 2)/σ
        live_s = live / s
    gi = tl.zeros([BLOCK_C, BLOCK_H * BLOCK_W], dtype=ACC)
    gs = tl.zeros([BLOCK_H * BLOCK_W], dtype=ACC)
    for dy in range(-R, R + 1):
        xi = i + dy
        row_ok = inside & (xi >= 0) & (xi < H)
        for dx in range(-R, R + 1):
            xj = j + dx
            m = row_ok & (xj >= 0) & (xj < W)
            x = xi * W + xj
            r2 = tl.zeros([BLOCK_H * BLOCK_W], dtype=ACC) + (dy * dy + dx * dx)
            if DISK:
                raw = rho - tl.sqrt(r2) + 0.5
                cover = tl.minimum(tl.maximum(raw, 0.0), 1.0)
                w = cover / area
                dw = f1 * tl.where((raw > 0.0) & (raw < 1.0), 1.0, 0.0) - f2 * cover
            else:
                w = tl.exp(-0.5 * r2 * inv_s2) * norm
                dw = w * (r2 * inv_s2 - 2.0) * live_s
            hx = tl.load(h_b + cs[:, None] * hw + x[None, :], mask=cmask[:, None] & m[None, :], other=0.0).to(ACC)
            if NEED_I:
                gi += w[None, :] * hx
            if NEED_S:
                hjx = tl.load(hj_b + x, mask=m, other=0.0).to(ACC)
                gs += dw * (tl.sum(iq * hx, axis=0) - hjx)
    if NEED_I:
        tl.store(gimg_ptr + b * C * hw + cs[:, None] * hw + pix[None, :], gi, mask=cm2)
    if NEED_S:
        tl.store(gsig_ptr + b * hw + pix, gs, mask=inside)


def interpreting() -> bool:
    """True when the kernels were built by Triton's interpreter (TRITON_INTERPRET=1 set before
    triton was imported): then they run on CPU tensors."""
    from triton.runtime.interpreter import InterpretedFunction
    return isinstance(_forward_kernel, InterpretedFunction)


def _check_device(image: torch.Tensor) -> None:
    if image.device.type != "cuda" and not interpreting():
        raise ValueError("defocus backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 set before "
                         f"importing triton, to run its interpreter on CPU tensors); got {image.device}")


def _launch_args(image: torch.Tensor):
    b, c, h, w = image.shape
    grid = (triton.cdiv(h, BLOCK_H) * triton.cdiv(w, BLOCK_W) * b,)
    acc = tl.float64 if image.dtype == torch.float64 else tl.float32
    return grid, acc, triton.next_power_of_2(max(c, 1))


def forward(image: torch.Tensor, sigma: torch.Tensor, radius: int, psf: str):
    b, c, h, w = image.shape
    out = torch.empty_like(image)
    den = torch.empty_like(sigma)
    if image.numel() == 0:
        return out, den
    grid, acc, block_c = _launch_args(image)
    _forward_kernel[grid](
        image, sigma, out, den, c, h, w, int(radius),
        DISK=psf == "disk", ACC=acc, BLOCK_C=block_c, BLOCK_H=BLOCK_H, BLOCK_W=BLOCK_W)
    return out, den


def backward(grad_out, image, sigma, out, den, radius: int, psf: str, need_i: bool = True, need_s: bool = True):
    b, c, h, w = image.shape
    g_img, g_sig, trivial = grad_buffers(image, sigma, need_i, need_s)
    if trivial:
        return g_img, g_sig
    hgrad = (grad_out / den).contiguous()
    hj = (hgrad * out).sum(1, keepdim=True).contiguous()
    grid, acc, block_c = _launch_args(image)
    _backward_kernel[grid](
        image, sigma, hgrad, hj, g_img if need_i else hgrad, g_sig if need_s else hj, c, h, w, int(radius),
        DISK=psf == "disk", NEED_I=bool(need_i), NEED_S=bool(need_s), ACC=acc, BLOCK_C=block_c,
        BLOCK_H=BLOCK_H, BLOCK_W=BLOCK_W)
    return g_img, g_sig


_DefocusTriton = defocus_function(forward, backward, "_DefocusTriton")


def defocus_triton(image: torch.Tensor, sigma: torch.Tensor, radius: int, psf: str = "gaussian") -> torch.Tensor:
    """The "triton" backend on validated contiguous tensors. CUDA: compiled kernels; CPU: the
    Triton interpreter (slow — meant for tests without a GPU)."""
    _check_device(image)
    return _DefocusTriton.apply(image.contiguous(), sigma.contiguous(), int(radius), psf)


def available(image: torch.Tensor) -> bool:
    return image.device.type == "cuda"
