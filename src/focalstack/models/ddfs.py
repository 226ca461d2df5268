"""DDFS: deep depth from a focal stack through a defocus-model cost volume (after Fujimura et al.,
IJCV 2024, "Deep Depth from Focal Stack with Defocus Model for Camera-Setting Invariance";
re-implemented from the paper, with facts about the authors' cost-volume script from
``peer-implementations-notes.md`` §5).

**Cost volume** (:func:`ddfs_cost_volume`, no learnable parameters, computed without gradients):

1. ``D`` depth hypotheses per sample inside the depth range, uniform in inverse depth
   (``sampling="inverse"``, default) or in depth (``"depth"``; the paper: no significant difference).
2. For every frame f and hypothesis d, the PSF of the thin-lens CoC ``C(d, d_f)`` (pixels, from the
   camera: focal length, per-frame f-number, pixel size; capped at ``max_coc_px``): a Gaussian of
   σ = psf_scale·C (focalstack's renderer convention, default) or an anti-aliased pillbox of diameter
   4σ (= C at the default psf_scale; the paper's disk PSF).
3. Every frame is Wiener–Hunt deconvolved per hypothesis (Laplacian regulariser, ``balance`` 0.01 as in
   the authors' script): ``X = conj(K)·Y / (|K|² + balance·|L|²)`` — **one batched real FFT** over
   [B, F, D, 3] (:func:`wiener_deconvolve`), frames reflect-padded by the kernel radius against
   wrap-around ringing and cropped back.
4. Cross-frame consistency: the standard deviation over the frames with a Gaussian-weighted
   neighbourhood (σ = ``cost_sigma`` = 1 px, paper eq. 6): ``cost = Σ_RGB sqrt(G∗var_F(J))`` with the
   per-pixel variance over frames. Any number of frames ≥ 1 (F = 1 gives cost 0 everywhere: no cue).
5. Outlier bound (paper eq. 7, a tanh-like function reaching ``f1`` at ``c_max``):
   ``f(x) = tanh(atanh(f1)·x / c_max)``, c_max = 0.3, f1 = 0.999.
6. Per-pixel min–max normalisation over the hypotheses to [0, 1].

**Network** (paper §3.4, smaller): the normalised cost volume (D channels) concatenated with the
reference frame — the frame with the farthest focus distance, the paper's training choice — goes
through a conv-BN-ReLU encoder (``levels`` stride-2 stages, ``width·2^i`` channels, after
MVDepthNet); the decoder predicts cost logits at the coarsest scale and refines them at every ×2
upsampling step (residual cost refinement from the decoder features), followed by the adaptive cost
aggregation of paper eq. 11: 9 neighbours on a dilation-2 grid with learned offsets and softmax
weights (``grid_sample``). A softmax over hypotheses and the **soft-argmin** give the depth
(expectation of the hypotheses, in the sampling space), a convex combination of depths inside the
range: metric and smoothly bounded.

**AIF** (not part of DDFS, which predicts depth only; added so every focalstack model returns one):
the deconvolved images are merged per hypothesis over the frames with weights ∝ 1/(1 + C²) (frames
near focus dominate) and the hypotheses are blended by the predicted depth distribution,
``aif = Σ_d p_d · J̄_d`` — the expected deblurred image, differentiable w.r.t. the network.

**Deviations** (documented): D = 16 hypotheses by default (paper 64; its ablation: D ≥ 16 suffices);
hypotheses span each sample's depth range instead of a fixed 0.1–3 m; one L1 depth loss on the
final output through the shared trainer (the paper sums L1 over the 1/8…1 scales); Gaussian PSF by
default to match focalstack's renderer (``psf="disk"`` for the paper's). Scale augmentation (paper
§4.3) is the trainer's ``--scale-aug MIN MAX`` (``TrainConfig.scale_aug``), which needs a fixed
``--depth-range`` so the hypotheses stay put while scene and camera scale.

The model needs the full camera, not only focus distances: it reads the lens from the
:class:`~focalstack.optics.CameraBatch` every caller passes (the model contract,
:mod:`focalstack.models.base`).

Any H×W (encoder input padded to a multiple of ``2^levels``, cropped back). Defaults ``width=16,
levels=3, num_hypotheses=16``: ≈ 0.57 M parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import kornia
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..optics.camera import CameraBatch
from ..optics.thin_lens import coc_diameter_m
from ..render.light import from_linear, to_linear
from ..render.psf import support_radius_px, window_size_px
from .base import FocalStackModel, ModelConfig, StackInputs
from .common import conv_bn_relu, pad_to_multiple

__all__ = ["DDFSNet", "DDFSConfig", "depth_hypotheses", "hypothesis_coc_px", "psf_kernels", "wiener_deconvolve",
           "ddfs_cost_volume", "outlier_bound", "soft_argmin_depth"]


# ---- cost volume ------------------------------------------------------------------------------
def depth_hypotheses(depth_range_m: torch.Tensor, n: int, sampling: str = "inverse") -> torch.Tensor:
    """[B,2] (near, far) metres → [B,n] hypotheses near → far, uniform in inverse depth or depth."""
    t = torch.linspace(0.0, 1.0, n, device=depth_range_m.device, dtype=torch.float32).view(1, n)
    near, far = depth_range_m[:, 0:1].float(), depth_range_m[:, 1:2].float()
    if sampling == "inverse":
        return 1.0 / (1.0 / near + t * (1.0 / far - 1.0 / near))
    if sampling == "depth":
        return near + t * (far - near)
    raise ValueError(f"sampling must be 'inverse' or 'depth', got {sampling!r}")


def hypothesis_coc_px(camera: CameraBatch, focus_distances_m: torch.Tensor, depth_m: torch.Tensor) -> torch.Tensor:
    """CoC diameter in pixels of every frame at every hypothesis: fd [B,F], depth [B,D] → [B,F,D]
    (thin lens, Gur & Wolf eq. 1, per-frame f-numbers)."""
    b = depth_m.shape[0]
    f = camera.focal_length_m.view(b, 1, 1).float()
    px = camera.pixel_size_m.view(b, 1, 1).float()
    n = camera.f_numbers.view(b, -1, 1).float()
    fd = focus_distances_m.view(b, -1, 1).float()
    d = depth_m.view(b, 1, -1).float()
    return coc_diameter_m(d, fd, f, n) / px


def psf_kernels(sigma_px: torch.Tensor, psf: str = "gaussian", radius: int | None = None) -> torch.Tensor:
    """Normalised PSF kernels [..., k, k] (k = 2·radius + 1) for σ [...] in pixels.

    gaussian: exp(−r²/2σ²); disk: anti-aliased pillbox of diameter 4σ (radius ≥ 0.5 px, so a
    sub-pixel disk is the identity). radius None: from the largest σ (3σ, resp. 2σ + 1)."""
    smax = float(sigma_px.max()) if sigma_px.numel() else 0.0
    if radius is None:
        radius = support_radius_px(smax, psf)
    radius = max(radius, 1)
    r = torch.arange(-radius, radius + 1, device=sigma_px.device, dtype=torch.float32)
    r2 = (r.view(-1, 1) ** 2 + r.view(1, -1) ** 2)
    s = sigma_px.float().unsqueeze(-1).unsqueeze(-1)
    if psf == "gaussian":
        k = torch.exp(-r2 / (2.0 * s.clamp_min(1e-3) ** 2))
    elif psf == "disk":
        k = (2.0 * s).clamp_min(0.5) + 0.5 - r2.sqrt()
        k = k.clamp(0.0, 1.0)
    else:
        raise ValueError(f"psf must be 'gaussian' or 'disk', got {psf!r}")
    return k / k.sum(dim=(-2, -1), keepdim=True)


_LAPLACIAN = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])


def _transfer(kernels: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
    """Kernels [..., k, k] centred → optical transfer functions [..., hp, wp//2+1] (rfft2), the kernel
    centre moved to pixel (0, 0) so deconvolution does not shift the image."""
    k = kernels.shape[-1]
    r = k // 2
    full = F.pad(kernels, (0, wp - k, 0, hp - k))
    full = torch.roll(full, shifts=(-r, -r), dims=(-2, -1))
    return torch.fft.rfft2(full)


def wiener_deconvolve(images: torch.Tensor, kernels: torch.Tensor, balance: float = 0.01,
                      margin: int | None = None) -> torch.Tensor:
    """Wiener–Hunt deconvolution of every image with every kernel of its frame, one batched FFT.

    Args:
        images: [B,F,C,H,W].
        kernels: [B,F,D,k,k] (odd k, each summing to 1): D candidate PSFs per frame.
        balance: regularisation weight of the Laplacian prior (skimage's ``balance``).
        margin: reflect padding in pixels against wrap-around (default: the kernel radius).

    Returns: [B,F,D,C,H,W] — ``irfft2(conj(K)·Y / (|K|² + balance·|L|²))`` cropped to H×W.
    """
    b, f, c, h, w = images.shape
    k = kernels.shape[-1]
    m = k // 2 if margin is None else int(margin)
    x = images.float().reshape(b * f, c, h, w)
    if m > 0:
        mode = "reflect" if m < h and m < w else "replicate"
        x = F.pad(x, (m, m, m, m), mode=mode)
    hp, wp = h + 2 * m, w + 2 * m
    if k > hp or k > wp:  # tiny images: shrink the kernel window to the padded image (mass renormalised)
        t = min(hp, wp) if min(hp, wp) % 2 == 1 else min(hp, wp) - 1
        o = (k - t) // 2
        kernels = kernels[..., o:o + t, o:o + t]
        kernels = kernels / kernels.sum(dim=(-2, -1), keepdim=True)
    y = torch.fft.rfft2(x).view(b, f, 1, c, hp, wp // 2 + 1)
    kt = _transfer(kernels.float(), hp, wp).unsqueeze(3)                      # [B,F,D,1,hp,wf]
    lap = _transfer(_LAPLACIAN.to(images.device), hp, wp)                   # [hp,wf]
    den = kt.real ** 2 + kt.imag ** 2 + balance * (lap.real ** 2 + lap.imag ** 2)
    out = torch.fft.irfft2(kt.conj() * y / den, s=(hp, wp))
    return out[..., m:m + h, m:m + w]


def outlier_bound(cost: torch.Tensor, c_max: float = 0.3, f1: float = 0.999) -> torch.Tensor:
    """Paper eq. 7: a tanh-like bound reaching ``f1`` at ``c_max`` (and → 1 beyond)."""
    return torch.tanh(math.atanh(f1) * cost / c_max)


def ddfs_cost_volume(frames: torch.Tensor, focus_distances_m: torch.Tensor, camera: CameraBatch,
                     hypotheses_m: torch.Tensor, psf: str = "gaussian", balance: float = 0.01,
                     cost_sigma: float = 1.0, c_max: float = 0.3, f1: float = 0.999,
                     max_coc_px: float = 20.0, normalise: bool = True):
    """The DDFS cost volume (module doc, steps 2–6).

    Args:
        frames: [B,F,3,H,W] in [0,1]; focus_distances_m: [B,F]; camera: lens parameters per sample;
        hypotheses_m: [B,D] metres.

    Returns: (cost [B,D,H,W] in [0,1] — low = the frames agree after deblurring for that depth,
    candidates [B,D,3,H,W] — the frames' deconvolutions merged per hypothesis, weights ∝ 1/(1+C²))."""
    b, f, c, h, w = frames.shape
    coc = hypothesis_coc_px(camera, focus_distances_m, hypotheses_m).clamp(max=max_coc_px)   # [B,F,D]
    sigma = coc * camera.psf_scale.view(b, 1, 1).float()
    kern = psf_kernels(sigma, psf)
    deb = wiener_deconvolve(to_linear(frames), kern, balance)       # [B,F,D,3,H,W]; deconvolves radiance
    d = deb.shape[2]
    ks = window_size_px(cost_sigma)

    def blur(x):  # Gaussian-weighted neighbourhood over the image axes
        return kornia.filters.gaussian_blur2d(x.reshape(-1, 1, h, w), (ks, ks), (cost_sigma, cost_sigma),
                                              border_type="replicate").view(x.shape)

    # Gaussian-weighted cross-frame variance: Σ_u' γ(u'−u)·mean_F (J_f(u') − mean_F J(u'))², zero where
    # the deblurred frames agree (the authors' script subtracts the *blurred* mean instead, which adds
    # the local texture contrast of the deblurred images to the cost and favours under-deblurring)
    var = blur(deb.var(dim=1, unbiased=False))                                                # [B,D,3,H,W]
    cost = var.clamp_min(0).add(1e-12).sqrt().sum(dim=2)                                       # [B,D,H,W]
    cost = outlier_bound(cost, c_max, f1)
    if normalise:
        lo = cost.amin(dim=1, keepdim=True)
        hi = cost.amax(dim=1, keepdim=True)
        cost = (cost - lo) / (hi - lo + 1e-6)
    wts = 1.0 / (1.0 + coc ** 2)
    wts = (wts / wts.sum(dim=1, keepdim=True)).view(b, f, d, 1, 1, 1)
    cand = from_linear((wts * deb).sum(dim=1).clamp(0, 1))
    return cost, cand


def soft_argmin_depth(logits: torch.Tensor, hypotheses_m: torch.Tensor, sampling: str = "inverse") -> tuple[torch.Tensor, torch.Tensor]:
    """Cost logits [B,D,H,W] (higher = more likely) → (depth [B,1,H,W], probabilities [B,D,H,W]):
    the expectation of the hypotheses [B,D] under softmax(logits), in the sampling space."""
    p = torch.softmax(logits.float(), dim=1)
    hyp = hypotheses_m.view(*hypotheses_m.shape, 1, 1).float()
    lo, hi = hypotheses_m.amin(1).view(-1, 1, 1, 1), hypotheses_m.amax(1).view(-1, 1, 1, 1)
    if sampling == "inverse":
        inv = (p * (1.0 / hyp)).sum(dim=1, keepdim=True)
        depth = 1.0 / inv.clamp(min=1.0 / hi, max=1.0 / lo)
    else:
        depth = (p * hyp).sum(dim=1, keepdim=True).clamp(min=lo, max=hi)
    return depth, p


# ---- network ----------------------------------------------------------------------------------
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def adaptive_aggregation(cost: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor,
                         dilation: int = 2) -> torch.Tensor:
    """Paper eq. 11: C'(p) = Σ_j w_j(p) · C(p + dilation·n_j + Δp_j(p)) over the 3×3 neighbours n_j.

    cost [B,D,h,w]; offsets [B,18,h,w] (Δy, Δx per neighbour, pixels); weights [B,9,h,w] (sum 1)."""
    b, d, h, w = cost.shape
    ys = torch.arange(h, device=cost.device, dtype=cost.dtype).view(1, 1, h, 1)
    xs = torch.arange(w, device=cost.device, dtype=cost.dtype).view(1, 1, 1, w)
    base = torch.tensor(_NEIGHBOURS, device=cost.device, dtype=cost.dtype) * dilation       # [9,2]
    off = offsets.view(b, 9, 2, h, w)
    py = ys + base[:, 0].view(1, 9, 1, 1) + off[:, :, 0]
    px = xs + base[:, 1].view(1, 9, 1, 1) + off[:, :, 1]
    grid = torch.stack([2.0 * px / max(w - 1, 1) - 1.0, 2.0 * py / max(h - 1, 1) - 1.0], dim=-1)
    src = cost.unsqueeze(1).expand(b, 9, d, h, w).reshape(b * 9, d, h, w)
    smp = F.grid_sample(src, grid.view(b * 9, h, w, 2), mode="bilinear", padding_mode="border",
                        align_corners=True).view(b, 9, d, h, w)
    return (weights.unsqueeze(2) * smp).sum(dim=1)


SAMPLINGS = ("inverse", "depth")
PSFS = ("gaussian", "disk")


@dataclass(frozen=True)
class DDFSConfig(ModelConfig):
    """DDFS's options.

    width: channels of the first encoder stage; stage i has width·2^i.
    levels: stride-2 encoder stages (inputs padded to a multiple of 2^levels).
    num_hypotheses: depth hypotheses D of the cost volume.
    sampling: "inverse" (uniform in inverse depth) or "depth".
    psf: "gaussian" (σ = psf_scale·CoC, focalstack's renderer) or "disk" (the paper's pillbox).
    balance, cost_sigma, c_max, f1, max_coc_px: cost-volume constants (module doc).
    aggregation: the adaptive cost aggregation module (paper eq. 11) at every decoder scale.
    """

    width: int = field(default=16, metadata={"help": "channels of the first encoder stage"})
    levels: int = field(default=3, metadata={"help": "stride-2 encoder stages"})
    num_hypotheses: int = field(default=16, metadata={"help": "depth hypotheses D of the cost volume"})
    sampling: str = field(default="inverse", metadata={"choices": SAMPLINGS, "help": "hypothesis spacing"})
    psf: str = field(default="gaussian", metadata={"choices": PSFS, "help": "PSF of the deconvolution"})
    balance: float = field(default=0.01, metadata={"help": "Wiener-Hunt regularisation weight"})
    cost_sigma: float = field(default=1.0, metadata={"help": "σ (px) of the cost neighbourhood"})
    c_max: float = field(default=0.3, metadata={"help": "outlier bound: cost reaching f1"})
    f1: float = field(default=0.999, metadata={"help": "outlier bound: value at c_max"})
    max_coc_px: float = field(default=20.0, metadata={"help": "CoC cap of the PSFs, px"})
    aggregation: bool = field(default=True, metadata={"help": "adaptive cost aggregation (paper eq. 11)"})

    def __post_init__(self):
        super().__post_init__()   # sampling, psf
        if self.width < 1 or self.levels < 1 or self.num_hypotheses < 2:
            raise ValueError(f"DDFSNet: width, levels ≥ 1 and num_hypotheses ≥ 2 required, got "
                             f"{self.width}, {self.levels}, {self.num_hypotheses}")


class DDFSNet(FocalStackModel):
    """DDFS: cost volume + reference frame → encoder-decoder → soft-argmin depth (see module doc);
    options: :class:`DDFSConfig`. Needs the whole camera (the PSFs need the lens)."""

    Config = DDFSConfig

    def __init__(self, config: DDFSConfig | None = None, **options):
        super().__init__(config, **options)
        o = self.config
        width, levels, num_hypotheses, aggregation = o.width, o.levels, o.num_hypotheses, o.aggregation
        self.width, self.levels, self.num_hypotheses = width, levels, num_hypotheses
        self.sampling, self.psf, self.aggregation = o.sampling, o.psf, aggregation
        self.cv = dict(balance=o.balance, cost_sigma=o.cost_sigma, c_max=o.c_max, f1=o.f1, max_coc_px=o.max_coc_px)
        d = num_hypotheses
        ch = [width * 2 ** i for i in range(levels + 1)]
        self.enc = nn.ModuleList([nn.Sequential(conv_bn_relu(3 + d, ch[0]), conv_bn_relu(ch[0], ch[0]))])
        for i in range(1, levels + 1):
            self.enc.append(nn.Sequential(conv_bn_relu(ch[i - 1], ch[i], stride=2), conv_bn_relu(ch[i], ch[i])))
        self.head0 = nn.Conv2d(ch[-1], d, 3, padding=1)
        self.dec = nn.ModuleList()
        self.heads = nn.ModuleList()
        self.offsets = nn.ModuleList()
        self.weights = nn.ModuleList()
        for i in range(levels - 1, -1, -1):
            self.dec.append(nn.Sequential(conv_bn_relu(ch[i + 1] + ch[i] + d, ch[i]), conv_bn_relu(ch[i], ch[i])))
            head = nn.Conv2d(ch[i], d, 3, padding=1)
            nn.init.zeros_(head.weight)                  # refinement starts as the identity
            nn.init.zeros_(head.bias)
            self.heads.append(head)
            if aggregation:
                off = nn.Conv2d(ch[i], 18, 3, padding=1)
                wt = nn.Conv2d(ch[i], 9, 3, padding=1)
                for m in (off, wt):                      # zero offsets, uniform 3×3 weights at start
                    nn.init.zeros_(m.weight)
                    nn.init.zeros_(m.bias)
                self.offsets.append(off)
                self.weights.append(wt)

    def run(self, x_in: StackInputs) -> dict:
        """→ {"depth_m": [B,1,H,W] in [near, far], "aif": [B,3,H,W] in [0,1], "prob": [B,D,H,W]
        (softmax over hypotheses), "hypotheses_m": [B,D], "cost": [B,D,H,W] (input volume)}."""
        cam = x_in.lens()
        frames, fd, rng = x_in.frames, x_in.focus_distances_m, x_in.depth_range_m
        b = frames.shape[0]
        hyp = depth_hypotheses(rng, self.num_hypotheses, self.sampling)
        # the cost volume is a fixed function of data (no parameters): no graph, float32 FFTs
        with torch.no_grad(), torch.autocast(device_type=frames.device.type, enabled=False):
            cost, cand = ddfs_cost_volume(frames.float(), fd, cam, hyp, self.psf, **self.cv)
        ref = torch.gather(frames, 1, fd.argmax(dim=1).view(b, 1, 1, 1, 1).expand(b, 1, *frames.shape[2:]))[:, 0]
        x = torch.cat([ref * 2.0 - 1.0, cost.to(frames.dtype)], dim=1)
        x, h0, w0 = pad_to_multiple(x, 2 ** self.levels)
        skips = []
        for stage in self.enc:
            x = stage(x)
            skips.append(x)
        y = skips[-1]
        c = self.head0(y)
        for j, i in enumerate(range(self.levels - 1, -1, -1)):
            skip = skips[i]
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            c = F.interpolate(c, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = self.dec[j](torch.cat([y, skip, c], dim=1))
            c = c + self.heads[j](y)
            if self.aggregation:
                c = adaptive_aggregation(c, self.offsets[j](y), torch.softmax(self.weights[j](y), dim=1))
        logits = c[..., :h0, :w0]
        depth, p = soft_argmin_depth(logits, hyp, self.sampling)
        aif = (p.unsqueeze(2) * cand).sum(dim=1).clamp(0, 1)
        return {"depth_m": depth, "aif": aif, "prob": p, "hypotheses_m": hyp, "cost": cost}
