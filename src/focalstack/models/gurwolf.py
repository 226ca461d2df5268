"""Gur & Wolf: single-image depth trained through the defocus renderer (after Gur & Wolf, CVPR 2019,
"Single Image Depth Estimation Trained via Depth from Defocus Cues"; re-implemented from the paper).

**Training scheme** (paper §4.1, Fig. 2). A network f maps one all-in-focus (AIF) image I to depth
D̄ = f(I); the fixed PSF layer g renders the focused images J̄ = g(I, D̄, ρ) at the training focus
distances, compared with the focused images J. In focalstack, J are the frames of a training sample
and I is its ``aif.png``:

* ``--supervision self`` with ``--model gurwolf`` **uses the sample's AIF as the input image and as
  the image to render from** (this model declares ``image_input = True`` in the model contract,
  :mod:`focalstack.models.base`; the trainer then passes ``image=batch["aif"]`` and requires aif.png
  in every training sample). The AIF output of the model
  *is* its input image, so the self-supervised reconstruction term renders from I exactly as in the
  paper. No depth ground truth is used.
* Losses (paper eqs. 10–13; set by :attr:`GurWolfNet.LOSS_DEFAULTS` when a fresh run is started from
  the CLI, override with ``--w-*``): reconstruction ``0.85·(1−SSIM)/2 + 0.15·L1`` (λ1 = 1),
  edge-aware smoothness (λ2 = 1e-3, β = 1 as in eq. 11; on mean-normalised inverse depth, focalstack's
  scale-free form) and the sharpness loss ``‖S(J̄) − S(J)‖₁`` with ``S = −ΔI − C(I) − V(I)``
  (λ3 = 0.1, :func:`focalstack.losses.focus_sharpness_map`). The AIF guidance / AIF blur terms of the
  core method do not apply (the AIF is given): their weights are 0.
* ``--supervision depth`` trains on depth L1 from the same input image.

**Focus sequences F1/F2/F6/F10** (paper §5): the training stacks hold the first 1, 2, 6 or 10 focus
distances of the sequence ``[0.2, 0.8, 0.1, 0.9, 0.3, 0.7, 0.4, 0.6, 0.5, 0.35] × max depth``;
:func:`focus_sequence` gives them in metres (e.g. for ``focalstack synth --focus …``).

**Input at inference** (no AIF available, only a focal stack): ``forward(frames, …)`` without
``image=`` uses a classical all-in-focus fusion of the stack (``focalstack.classical.pyramid_fusion``,
no gradients), or the frame itself for a one-frame stack. The focus distances are not used: the
depth comes from the single image (it is therefore tied to the training camera and depth range).

**Network** (paper §4.2, DeepLabV3+ with a dense ASPP and self-attention, much smaller and trained
from scratch as in the paper): a residual encoder of ``levels`` stride-2 stages (no pooling; stage i
has ``width·2^i`` channels), a **dense ASPP** at the coarsest scale (1×1 conv and atrous 3×3 convs
with dilations 2, 4, 6, each fed the concatenation of the input and all previous branches, plus an
image-pooling branch), a **self-attention** block (query/key/value 1×1 convs, softmax over
positions, residual weight γ initialised at 0), and a DeepLabV3+ decoder fusing the 1/4-scale
features, upsampled to full size. Output: one logit per pixel → metric depth bounded smoothly to the
range by a sigmoid in inverse depth (as DAIF-Net; the authors map a [0, 1] output linearly).
``input_scale`` < 1 runs the network on a downscaled image (the paper: 0.5), upsampling the logit.
BatchNorm as in DeepLab. Defaults ``width=16, levels=3``: ≈ 0.34 M parameters.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dataclasses import dataclass, field

from .base import FocalStackModel, ModelConfig, StackInputs
from .common import conv_bn_relu, depth_from_logit, pad_to_multiple

__all__ = ["GurWolfNet", "GurWolfConfig", "FOCUS_SEQUENCE", "focus_sequence", "FOCUS_SETUPS"]

# Paper §5: the order in which training focus distances are taken, as fractions of the maximum depth.
FOCUS_SEQUENCE = (0.2, 0.8, 0.1, 0.9, 0.3, 0.7, 0.4, 0.6, 0.5, 0.35)
FOCUS_SETUPS = {"F1": 1, "F2": 2, "F6": 6, "F10": 10}


def focus_sequence(setup: str | int, max_depth_m: float) -> list[float]:
    """Focus distances (metres) of a Gur & Wolf training setup: ``setup`` "F1"/"F2"/"F6"/"F10" (or the
    number of frames, 1–10) → the first n entries of :data:`FOCUS_SEQUENCE` × ``max_depth_m``."""
    n = FOCUS_SETUPS.get(str(setup).upper(), None) if not isinstance(setup, int) else setup
    if n is None or not 1 <= n <= len(FOCUS_SEQUENCE):
        raise ValueError(f"focus setup must be one of {', '.join(FOCUS_SETUPS)} or 1..10, got {setup!r}")
    if not max_depth_m > 0:
        raise ValueError(f"max_depth_m must be positive, got {max_depth_m}")
    return [round(v * max_depth_m, 6) for v in FOCUS_SEQUENCE[:n]]


class _ResBlock(nn.Module):
    """Residual block (stride-2 convolution instead of pooling, as the paper's encoder)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.a = conv_bn_relu(cin, cout, stride=stride)
        self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.skip = None if (cin == cout and stride == 1) else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        s = x if self.skip is None else self.skip(x)
        return F.relu(self.b(self.a(x)) + s)


class DenseASPP(nn.Module):
    """1×1 conv + atrous 3×3 convs (dilations ascending), each fed the input and every previous branch
    (dense connections), plus global image pooling; concatenated and projected by a 1×1 conv."""

    def __init__(self, cin: int, branch: int, cout: int, dilations=(2, 4, 6)):
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(cin, branch, k=1)])
        c = cin + branch
        for d in dilations:
            self.branches.append(conv_bn_relu(c, branch, dilation=d))
            c += branch
        # image pooling: no BatchNorm (one value per channel at batch size 1 cannot be normalised)
        self.pool = nn.Sequential(nn.Conv2d(cin, branch, 1), nn.ReLU(inplace=True))
        self.project = conv_bn_relu(branch * (len(dilations) + 2), cout, k=1)

    def forward(self, x):
        feats = [x]
        outs = []
        for br in self.branches:
            o = br(torch.cat(feats, dim=1))
            feats.append(o)
            outs.append(o)
        g = self.pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat(outs + [g], dim=1))


class SelfAttention(nn.Module):
    """SAGAN-style self-attention over positions, x + γ·attention(x) with γ starting at 0."""

    def __init__(self, c: int):
        super().__init__()
        self.q = nn.Conv2d(c, max(1, c // 8), 1)
        self.k = nn.Conv2d(c, max(1, c // 8), 1)
        self.v = nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        b, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)                     # [B,N,c']
        k = self.k(x).flatten(2)                                     # [B,c',N]
        att = torch.softmax(q @ k / max(1, k.shape[1]) ** 0.5, dim=-1)
        v = self.v(x).flatten(2)                                     # [B,C,N]
        return x + self.gamma * (v @ att.transpose(1, 2)).view(b, c, h, w)


FUSIONS = ("pyramid", "soft")


@dataclass(frozen=True)
class GurWolfConfig(ModelConfig):
    """Gur & Wolf's options: width, levels (stride-2 encoder stages, ≥ 2), input_scale (run the net
    on the image resized by this factor; paper 0.5), fusion (how an input image is made from a stack
    when none is given: "pyramid" or "soft")."""

    width: int = field(default=16, metadata={"help": "channels of the first encoder stage"})
    levels: int = field(default=3, metadata={"help": "stride-2 encoder stages (≥ 2)"})
    input_scale: float = field(default=1.0, metadata={"help": "resize factor of the input image (paper 0.5)"})
    fusion: str = field(default="pyramid", metadata={"choices": FUSIONS, "help": "stack → input image"})

    def __post_init__(self):
        super().__post_init__()   # fusion
        if self.width < 1 or self.levels < 2:
            raise ValueError(f"GurWolfNet: width ≥ 1 and levels ≥ 2 required, got {self.width}, {self.levels}")
        if not 0 < self.input_scale <= 1:
            raise ValueError(f"GurWolfNet: input_scale must be in (0, 1], got {self.input_scale}")


class GurWolfNet(FocalStackModel):
    """Single-image depth (see module doc); options: :class:`GurWolfConfig`. Its input is ``image=``
    (``image_input``); the camera is not read."""

    Config = GurWolfConfig
    image_input = True
    # loss weights of the paper (eq. 13) applied by `focalstack train` to a fresh run of this model
    LOSS_DEFAULTS = {"recon": 1.0, "aif_guide": 0.0, "aif_sharp": 0.0, "smooth": 1e-3, "smooth_beta": 1.0,
                     "render_sharp": 0.1, "alpha": 0.85}   # the paper's SSIM share (focalstack's default is 0)

    def __init__(self, config: GurWolfConfig | None = None, **options):
        super().__init__(config, **options)
        o = self.config
        width, levels = o.width, o.levels
        self.width, self.levels, self.input_scale, self.fusion = width, levels, o.input_scale, o.fusion
        ch = [width * 2 ** i for i in range(levels)]
        self.stages = nn.ModuleList()
        cin = 3
        for c in ch:
            self.stages.append(nn.Sequential(_ResBlock(cin, c, stride=2), _ResBlock(c, c)))
            cin = c
        self.aspp = DenseASPP(ch[-1], max(8, ch[-1] // 2), ch[-1])
        self.attention = SelfAttention(ch[-1])
        low = ch[1]                                                  # 1/4-scale features (DeepLabV3+)
        self.low = conv_bn_relu(low, max(8, low // 2), k=1)
        self.fuse = nn.Sequential(conv_bn_relu(ch[-1] + max(8, low // 2), ch[1]), conv_bn_relu(ch[1], ch[1]))
        self.refine = conv_bn_relu(ch[1] + 3, width)
        self.head = nn.Conv2d(width, 1, 3, padding=1)
        nn.init.normal_(self.head.weight, std=1e-3)                  # start mid-range (inverse depth)
        nn.init.zeros_(self.head.bias)

    @torch.no_grad()
    def input_image(self, frames: torch.Tensor) -> torch.Tensor:
        """The single image used when none is given: frames [B,F,3,H,W] → [B,3,H,W] (classical AIF fusion)."""
        if frames.shape[1] == 1:
            return frames[:, 0]
        from ..classical.fusion import fuse
        return fuse(frames.float(), self.fusion).to(frames.dtype)

    def depth_logit(self, image: torch.Tensor) -> torch.Tensor:
        """image [B,3,H,W] in [0,1] → depth logit [B,1,H,W]."""
        h, w = image.shape[-2:]
        x = image
        if self.input_scale < 1:
            size = (max(4, round(h * self.input_scale)), max(4, round(w * self.input_scale)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        x0, h0, w0 = pad_to_multiple(x * 2.0 - 1.0, 2 ** self.levels)
        feats = []
        y = x0
        for st in self.stages:
            y = st(y)
            feats.append(y)
        y = self.attention(self.aspp(y))
        lowf = self.low(feats[1])
        y = F.interpolate(y, size=lowf.shape[-2:], mode="bilinear", align_corners=False)
        y = self.fuse(torch.cat([y, lowf], dim=1))
        y = F.interpolate(y, size=x0.shape[-2:], mode="bilinear", align_corners=False)
        y = self.refine(torch.cat([y, x0], dim=1))
        logit = self.head(y)[..., :h0, :w0]
        if logit.shape[-2:] != (h, w):
            logit = F.interpolate(logit, size=(h, w), mode="bilinear", align_corners=False)
        return logit

    def run(self, x: StackInputs) -> dict:
        """The depth of ``x.image`` (the AIF input; training: the sample's aif.png), else of a classical
        fusion of the stack (:meth:`input_image`); the focus distances are not used (single-image depth).

        Returns {"depth_m": [B,1,H,W] in [near, far], "aif": the input image [B,3,H,W],
        "depth_logit": [B,1,H,W]}."""
        frames = x.frames
        image = x.image if x.image is not None else self.input_image(frames)
        logit = self.depth_logit(image.to(frames.dtype))
        return {"depth_m": depth_from_logit(logit.float(), x.depth_range_m), "aif": image.detach().float(),
                "depth_logit": logit}
