"""RGB-D → focal stack synthesis: the thin-lens renderer applied to an all-in-focus image and a
metric depth map, with optional occlusion-aware layered compositing, sensor noise and quantisation.

Two image-formation models (``synthesize_stack(..., occlusion_aware=...)``):

* **Plain** (default): :func:`focalstack.render.render_stack`, the per-pixel gather model used
  for training — every SOURCE pixel spreads with its own Gaussian σ and each output pixel
  renormalises by the sum of weights it received. It has no notion of occlusion: a sharp far
  pixel next to a blurred near object keeps (almost) only its own colour, so blurred foreground
  does not spill over an in-focus background. Cost O(F·H·W·k²) (k = window size).
* **Occlusion-aware** (layered, "near over far"): the depth is quantised into L layers uniformly
  in inverse depth (CoC is linear in 1/depth, so this spreads the σ quantisation error evenly);
  each layer gets one σ per frame (that of the mean inverse depth of its pixels, so a layer
  holding a single depth is rendered exactly). The background hidden behind nearer layers is
  unknown in an RGB-D image, so each layer's mask α_l is extended behind nearer layers by up to
  the largest blur radius, with the colour of its nearest own pixel (nearest-neighbour
  inpainting via a distance transform). For each frame and layer the premultiplied colour
  ``aif_l·α_l`` and ``α_l`` are blurred with that constant σ (separable Gaussian convolution, or
  a 2-D disk kernel), and layers are composited back to front with "over"::

      C ← C̃_l + (1 − α̃_l)·C,   A ← α̃_l + (1 − α̃_l)·A,   frame = C / A

  Each blurred layer is divided by the equally blurred all-ones image, so image borders are
  renormalised exactly as in the plain renderer; dividing by the accumulated alpha A fills
  what is left uncovered. Blurred near objects thus spread over sharp
  far ones at depth edges (and their fringe shows the inpainted background), while blurred far
  content never bleeds over a near one. Cost: L distance transforms, then O(F·L·H·W·k)
  with separable kernels — usually *cheaper* than the plain model's O(F·H·W·k²) for large σ.
  It is not the model the networks are trained to invert; use it to test robustness to
  occlusion effects.

Invalid depths (0, negative or non-finite) are filled with the nearest valid neighbour before
rendering (:func:`fill_invalid_depth`); the stored ground-truth depth keeps them invalid (0).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..optics.camera import FocalStackCamera
from ..render import from_linear, render_stack, to_linear
from ..render import psf as _psf
from .format import FocalStackSample

DEFAULT_NUM_LAYERS = 16


# ---- inputs -----------------------------------------------------------------------------------
def _as_tensor(x, dtype=torch.float32) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a tensor or numpy array, got {type(x).__name__}")
    return x.to(dtype)


def valid_depth_mask(depth_m: torch.Tensor) -> torch.Tensor:
    """True where depth is finite and > 0."""
    return torch.isfinite(depth_m) & (depth_m > 0)


def fill_invalid_depth(depth_m, source: str = "depth") -> torch.Tensor:
    """Replace invalid depths (≤ 0 or non-finite) by the nearest valid pixel's depth.

    Raises ValueError naming ``source`` when no pixel is valid."""
    from scipy.ndimage import distance_transform_edt

    d = _as_tensor(depth_m)
    if d.dim() != 2:
        raise ValueError(f"{source}: depth must be [H,W], got {tuple(d.shape)}")
    valid = valid_depth_mask(d)
    if bool(valid.all()):
        return d.clone()
    if not bool(valid.any()):
        raise ValueError(f"{source}: depth has no valid pixels (all zero, negative or non-finite)")
    idx = distance_transform_edt(~valid.numpy(), return_distances=False, return_indices=True)
    arr = d.numpy()[idx[0], idx[1]]
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def auto_kernel_size(sigma_px: torch.Tensor, psf: str = "gaussian", quantile: float = 0.999) -> int:
    """Odd window holding the PSF of the ``quantile`` σ (not the max: a few spurious near depths
    would otherwise blow the window up; their PSFs are truncated and renormalised)."""
    s = sigma_px.detach().flatten().float()
    if s.numel() == 0:
        return 1
    q = float(torch.quantile(s[:16_000_000], quantile)) if s.numel() > 1 else float(s.max())
    return 2 * _psf.support_radius_px(q, psf) + 1


# ---- constant-σ blur --------------------------------------------------------------------------
def _gauss1d(sigma: float, radius: int, dtype, device) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / max(sigma, _psf.SIGMA_MIN_PX)) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def blur_constant(x: torch.Tensor, sigma_px: float, psf: str = "gaussian", radius: int | None = None) -> torch.Tensor:
    """Blur [N,C,H,W] with one σ (zero padding, unnormalised at the border — callers divide by
    an equally blurred all-ones channel). Gaussian: separable; disk: 2-D kernel of :mod:`focalstack.render.psf`;
    gaussian_matched: the Gaussian at :func:`focalstack.render.psf.matched_gaussian_sigma` (σ)."""
    sigma_px, psf = _psf.as_kernel(sigma_px, psf)
    if radius is None:
        radius = _psf.support_radius_px(sigma_px, psf)
    if sigma_px < 1e-3 or radius == 0:
        return x
    c = x.shape[1]
    if psf == "gaussian":
        g = _gauss1d(sigma_px, radius, x.dtype, x.device)
        y = F.conv2d(F.pad(x, (radius, radius, 0, 0)), g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(F.pad(y, (0, 0, radius, radius)), g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    yy, xx = torch.meshgrid(torch.arange(-radius, radius + 1), torch.arange(-radius, radius + 1), indexing="ij")
    r2 = (yy ** 2 + xx ** 2).to(torch.float64)
    k = torch.stack([_psf.weight(float(v), torch.tensor(sigma_px, dtype=torch.float64), psf) for v in r2.flatten()])
    k = (k / k.sum()).view(1, 1, 2 * radius + 1, 2 * radius + 1).to(x.dtype).to(x.device)
    return F.conv2d(F.pad(x, (radius,) * 4), k.expand(c, 1, -1, -1), groups=c)


# ---- layered (occlusion-aware) rendering -------------------------------------------------------
def depth_layers(depth_m: torch.Tensor, num_layers: int = DEFAULT_NUM_LAYERS) -> tuple[torch.Tensor, list[float]]:
    """Quantise valid depth [H,W] into ≤ num_layers layers uniform in inverse depth.

    Returns (labels [H,W] long, 0 = farthest, and the representative depth of each non-empty
    layer: 1 / mean inverse depth of its pixels). Empty bins are dropped."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be ≥ 1, got {num_layers}")
    inv = 1.0 / depth_m.double()
    lo, hi = float(inv.min()), float(inv.max())
    if hi - lo <= 1e-12 * max(hi, 1.0):
        raw = torch.zeros_like(inv, dtype=torch.long)
    else:
        raw = ((inv - lo) / (hi - lo) * num_layers).floor().long().clamp(0, num_layers - 1)
    present = torch.unique(raw)  # sorted: far → near
    labels = torch.searchsorted(present, raw)
    sums = torch.zeros(len(present), dtype=torch.float64).index_add_(0, labels.flatten(), inv.flatten())
    counts = torch.bincount(labels.flatten(), minlength=len(present)).double()
    reps = (counts / sums).tolist()
    return labels, reps


def _extended_layers(aif: torch.Tensor, labels: torch.Tensor, num: int, reach_px: int):
    """Per layer l: (colour [3,H,W], alpha [H,W]). The layer is extended *behind* nearer layers
    (labels > l) up to ``reach_px`` from its own pixels, with the colour of its nearest own pixel
    (a cheap inpainting of the hidden background), so that a blurred near object's fringe shows
    the background behind it rather than a hole."""
    from scipy.ndimage import distance_transform_edt

    lab = labels.numpy()
    img = aif.numpy()
    out = []
    for l in range(num):
        own = lab == l
        behind = lab > l
        if reach_px > 0 and behind.any():
            dist, (iy, ix) = distance_transform_edt(~own, return_indices=True)
            ext = own | (behind & (dist <= reach_px))
            col = np.where(ext[None], img[:, iy, ix], 0.0)
        else:
            ext, col = own, img * own[None]
        out.append((torch.from_numpy(np.ascontiguousarray(col, dtype=np.float32)).to(aif.dtype),
                    torch.from_numpy(ext.astype(np.float32)).to(aif.dtype)))
    return out


def layered_stack(aif: torch.Tensor, depth_m: torch.Tensor, camera: FocalStackCamera,
                  num_layers: int = DEFAULT_NUM_LAYERS, psf: str = "gaussian",
                  kernel_size: int | None = None) -> torch.Tensor:
    """Occlusion-aware focal stack (see the module docstring): aif [3,H,W], valid depth [H,W] → [F,3,H,W].
    ``kernel_size`` (odd) caps the blur window; None = the full support of each layer's σ."""
    labels, reps = depth_layers(depth_m, num_layers)
    sig = camera.sigma_px(torch.tensor(reps, dtype=torch.float64).view(1, 1, 1, -1))[0, :, 0, 0, :]  # [F,L]
    cap = None if kernel_size is None else int(kernel_size) // 2
    reach = _psf.support_radius_px(float(sig.max()), psf) if len(reps) > 1 else 0
    if cap is not None:
        reach = min(reach, cap)
    layers = _extended_layers(to_linear(aif.detach().cpu().float()), labels, len(reps), reach)   # blur radiance
    h, w = aif.shape[1:]
    frames = []
    for k in range(camera.num_frames):
        col = torch.zeros(1, 3, h, w, dtype=aif.dtype, device=aif.device)
        acc = torch.zeros(1, 1, h, w, dtype=aif.dtype, device=aif.device)
        for l, (c_l, a_l) in enumerate(layers):  # far → near: each layer goes OVER what is behind it
            s = float(sig[k, l])
            r = _psf.support_radius_px(s, psf)
            if cap is not None:
                r = min(r, cap)
            x = torch.cat([c_l, a_l[None], torch.ones_like(a_l)[None]], 0).to(device=aif.device, dtype=aif.dtype)[None]
            layer = blur_constant(x, s, psf, r)
            layer = layer[:, :4] / layer[:, 4:].clamp_min(1e-12)  # renormalise at the image border
            ca, aa = layer[:, :3], layer[:, 3:].clamp(0.0, 1.0)
            col = ca + (1.0 - aa) * col
            acc = aa + (1.0 - aa) * acc
        frames.append((col / acc.clamp_min(1e-6))[0])
    return from_linear(torch.stack(frames).clamp(0.0, 1.0))


# ---- the one entry point -----------------------------------------------------------------------
def synthesize_stack(aif, depth_m, camera: FocalStackCamera, occlusion_aware: bool = False,
                     kernel_size: int | None = None, psf: str = "gaussian",
                     num_layers: int = DEFAULT_NUM_LAYERS, source: str = "depth") -> torch.Tensor:
    """Render a focal stack from an all-in-focus image and metric depth.

    Args:
        aif: [3,H,W] float in [0,1] (tensor or numpy array).
        depth_m: [H,W] metres; invalid pixels (0/NaN/inf) are filled from the nearest valid one.
        camera: the focal-stack camera (its pixel size must match the images' resolution).
        occlusion_aware: layered near-over-far compositing instead of the plain gather model.
        kernel_size: odd render window; None = ±3σ of the 99.9th-percentile σ (plain mode; see
            :func:`auto_kernel_size`) or each layer's full support (layered mode).
        psf: one of :data:`focalstack.render.psf.PSFS`.
        num_layers: depth layers of the occlusion-aware mode.
        source: name used in error messages.

    Returns:
        frames [F,3,H,W] float32 in [0,1], in camera focus order.
    """
    aif = _as_tensor(aif)
    if aif.dim() != 3 or aif.shape[0] != 3:
        raise ValueError(f"{source}: aif must be [3,H,W], got {tuple(aif.shape)}")
    depth = fill_invalid_depth(depth_m, source)
    if tuple(depth.shape) != tuple(aif.shape[1:]):
        raise ValueError(f"{source}: depth {tuple(depth.shape)} does not match the image {tuple(aif.shape[1:])}")
    with torch.no_grad():
        if occlusion_aware:
            return layered_stack(aif, depth, camera, num_layers=num_layers, psf=psf, kernel_size=kernel_size)
        d = depth.view(1, 1, *depth.shape)
        if kernel_size is None:
            kernel_size = auto_kernel_size(camera.sigma_px(d), psf)
        out = render_stack(aif.unsqueeze(0), d, camera, kernel_size=kernel_size, psf=psf)[0]
    return out.clamp(0.0, 1.0)


# ---- sensor model ------------------------------------------------------------------------------
def quantize(x: torch.Tensor, bits: int | None = 8) -> torch.Tensor:
    """Clip to [0,1] and round to the 2^bits − 1 levels of an integer image (None/0 = clip only)."""
    x = x.clamp(0.0, 1.0)
    if not bits:
        return x
    levels = float(2 ** int(bits) - 1)
    return torch.round(x * levels) / levels


def add_sensor_noise(frames: torch.Tensor, noise_std: float = 0.01, quantize_bits: int | None = 8,
                     seed: int | Sequence[int] = 0) -> torch.Tensor:
    """Additive Gaussian noise of std ``noise_std`` (in [0,1] units; 0 = none), then quantisation.
    Deterministic in ``seed`` (a numpy Generator seed)."""
    if noise_std < 0:
        raise ValueError(f"noise_std must be ≥ 0, got {noise_std}")
    if noise_std > 0:
        rng = np.random.default_rng(seed)
        n = rng.standard_normal(size=tuple(frames.shape), dtype=np.float32) * np.float32(noise_std)
        frames = frames + torch.from_numpy(n).to(frames.dtype)
    return quantize(frames, quantize_bits)


def make_sample(aif, depth_m, camera: FocalStackCamera, name: str = "", *, occlusion_aware: bool = False,
                noise_std: float = 0.01, quantize_bits: int | None = 8, seed: int | Sequence[int] = 0,
                kernel_size: int | None = None, psf: str = "gaussian", num_layers: int = DEFAULT_NUM_LAYERS,
                source: str | None = None) -> FocalStackSample:
    """A :class:`FocalStackSample` from RGB-D: rendered frames + noise + quantisation; the AIF is
    quantised (no noise); depth is stored as float32 metres with invalid pixels set to 0."""
    aif = _as_tensor(aif).clamp(0.0, 1.0)
    depth = _as_tensor(depth_m)
    frames = synthesize_stack(aif, depth, camera, occlusion_aware=occlusion_aware, kernel_size=kernel_size,
                              psf=psf, num_layers=num_layers, source=source or name or "depth")
    frames = add_sensor_noise(frames, noise_std, quantize_bits, seed)
    depth_out = torch.where(valid_depth_mask(depth), depth, torch.zeros_like(depth)).to(torch.float32)
    return FocalStackSample(frames.float().contiguous(), camera, depth_out.contiguous(),
                            quantize(aif, quantize_bits).float().contiguous(), name=name)


def resize_rgbd(aif: torch.Tensor, depth_m: torch.Tensor, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize an RGB-D pair by ``factor`` (area filter for colour, nearest for depth, so no
    depths are invented across edges). Pair with ``camera.resized(factor)``."""
    import cv2

    if not (factor > 0 and math.isfinite(factor)):
        raise ValueError(f"resize factor must be positive, got {factor}")
    if factor == 1.0:
        return aif, depth_m
    h, w = depth_m.shape
    nh, nw = max(1, int(round(h * factor))), max(1, int(round(w * factor)))
    img = aif.permute(1, 2, 0).numpy()
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    img = cv2.resize(img, (nw, nh), interpolation=interp)
    dep = cv2.resize(depth_m.numpy(), (nw, nh), interpolation=cv2.INTER_NEAREST)
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), torch.from_numpy(np.ascontiguousarray(dep))
