"""AiFDepthNet: a 3D-convolution encoder-decoder over the focal stack producing one attention map,
turned into depth and an all-in-focus (AIF) image by two fixed normalisations
(after Wang et al., ICCV 2021, "Bridging Unsupervised and Supervised Depth from Focus via All-in-Focus
Supervision"; re-implemented from the paper).

* **Network.** The stack is one 3D volume ``[B, C, F, H, W]`` (F = the stack axis). Encoder: ``levels``
  blocks of two ``3×3×3`` convolutions + ReLU with ``width·2^i`` channels, each followed by a max-pool
  over the *spatial* axes only (``1×2×2``), so any stack size F ≥ 1 passes through unchanged; a bottleneck
  block; decoder: spatial ×2 upsampling, ``3×3×3`` conv, concatenation with the encoder skip and a conv
  block, back to full resolution; a final ``3×3×3`` conv to one channel: the intermediate attention
  ``M [B, F, H, W]``. (The paper uses an Inception3D (I3D) backbone; this is a plain 3D U-Net of the same
  shape — same axes, same spatial-only pooling — small enough to train on a CPU.)
* **Depth** (paper eqs. 1–3): ``M_depth = softplus(M) / Σ_F softplus(M)`` and
  ``depth = Σ_F M_depth · P`` with focus positions ``P``. Positions are **inverse depths** (dioptres,
  ``space="inverse"``, default; the paper's DDFF setting interpolates disparities — defocus is linear in
  inverse depth) or metres (``space="metric"``, the paper's DefocusNet setting). Each position is first
  clamped into the depth range, so the output is a convex combination of points of [near, far]: metric,
  smooth in the network output and always inside the range. As in the paper, depth can only lie between
  the nearest and the farthest focus position (clamped to the range).
* **AIF** (paper eqs. 4–6): ``M_AIF = softmax_F(M)`` and ``aif = Σ_F M_AIF · frames``.

The 3D convolutions see the stack *in order*: the frames are sorted by focus distance (near → far)
inside :meth:`AiFDepthNet.forward` and the attention is returned in the input order, so the model
does not depend on the order frames arrive in (the trainer shuffles stacks by default).

Training modes through the shared trainer (``focalstack train --model aifdepthnet``):
``--supervision depth`` (paper's supervised mode: L1 depth; add ``--w-aif-guide 0`` for exactly
the paper's loss), ``--supervision aif`` (paper's AIF supervision: L1 AIF + edge-aware smoothness;
``--w-recon 0`` for exactly the paper's loss — by default the GT AIF is also re-rendered through the
optical model) and ``--supervision self`` (beyond the paper: fully self-supervised through the renderer).

Any H×W: reflect-padded to a multiple of ``2^levels`` and cropped back. Defaults ``width=8, levels=3``:
≈ 0.40 M parameters.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dataclasses import dataclass, field

from .base import FocalStackModel, ModelConfig, StackInputs
from .common import ConvBlock, conv


def _pad_spatial(x: torch.Tensor, m: int) -> torch.Tensor:
    """Pad the last two axes of x [N,C,F,H,W] at the bottom/right to a multiple of m."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return x
    n, c, f = x.shape[:3]
    y = x.reshape(n, c * f, h, w)                          # 2D padding modes handle [N,C,H,W]
    mode = "reflect" if (ph < h and pw < w) else "replicate"
    return F.pad(y, (0, pw, 0, ph), mode=mode).view(n, c, f, h + ph, w + pw)


def sort_by_focus(frames: torch.Tensor, fd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sort each stack by focus distance (near → far). frames [B,F,C,H,W], fd [B,F] →
    (sorted frames, sorted fd, order [B,F] with sorted[:, i] = input[:, order[:, i]])."""
    order = torch.argsort(fd, dim=1)
    idx = order.view(*order.shape, 1, 1, 1).expand(-1, -1, *frames.shape[2:])
    return torch.gather(frames, 1, idx), torch.gather(fd, 1, order), order


def softplus_normalise(m: torch.Tensor, dim: int = 1, eps: float = 1e-6) -> torch.Tensor:
    """Paper eq. 2: softplus(m) / Σ softplus(m) along ``dim`` (a flatter distribution than softmax)."""
    s = F.softplus(m)
    return s / (s.sum(dim=dim, keepdim=True) + eps)


SPACES = ("inverse", "metric")


@dataclass(frozen=True)
class AiFDepthNetConfig(ModelConfig):
    """AiFDepthNet's options.

    width: channels of the first level; level i has width·2^i.
    levels: encoder/decoder levels (spatial pooling steps); inputs are padded to a multiple of 2^levels.
    space: "inverse" (focus positions in dioptres, default) or "metric" (metres) for the depth sum.
    """

    width: int = field(default=8, metadata={"help": "channels of the first level (level i: width·2^i)"})
    levels: int = field(default=3, metadata={"help": "encoder/decoder levels"})
    space: str = field(default="inverse", metadata={"choices": SPACES, "help": "space of the depth sum"})

    def __post_init__(self):
        super().__post_init__()   # space
        if self.width < 1 or self.levels < 1:
            raise ValueError(f"AiFDepthNet: width and levels must be ≥ 1, got {self.width}, {self.levels}")


class AiFDepthNet(FocalStackModel):
    """Depth + AIF from a focal stack of any size through one attention map (see module doc);
    options: :class:`AiFDepthNetConfig`. Reads only the focus distances of the camera."""

    Config = AiFDepthNetConfig

    def __init__(self, config: AiFDepthNetConfig | None = None, **options):
        super().__init__(config, **options)
        width, levels = self.config.width, self.config.levels
        self.width, self.levels, self.space = width, levels, self.config.space
        ch = [width * 2 ** i for i in range(levels)]
        self.enc = nn.ModuleList()
        cin = 3
        for c in ch:
            self.enc.append(ConvBlock(cin, c, dims=3))
            cin = c
        self.bottleneck = ConvBlock(cin, 2 * cin, dims=3)
        cin = 2 * cin
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for c in reversed(ch):
            self.up.append(nn.Sequential(conv(cin, c, dims=3), nn.ReLU(inplace=True)))
            self.dec.append(ConvBlock(2 * c, c, dims=3))
            cin = c
        self.head = nn.Conv3d(width, 1, 3, padding=1)
        nn.init.normal_(self.head.weight, std=1e-3)         # near-uniform attention at initialisation
        nn.init.zeros_(self.head.bias)

    def attention(self, frames: torch.Tensor) -> torch.Tensor:
        """Intermediate attention M [B,F,H,W] of an *ordered* stack frames [B,F,3,H,W] in [0,1]."""
        b, f, _, h, w = frames.shape
        x = (frames * 2.0 - 1.0).transpose(1, 2)            # [B,3,F,H,W]
        x = _pad_spatial(x, 2 ** self.levels)
        skips = []
        for block in self.enc:
            x = block(x)
            skips.append(x)
            x = F.max_pool3d(x, kernel_size=(1, 2, 2))      # pool space only: any F survives
        y = self.bottleneck(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            y = F.interpolate(y, size=skip.shape[-3:], mode="nearest")
            y = dec(torch.cat([up(y), skip], dim=1))
        return self.head(y)[:, 0, :, :h, :w]               # [B,F,H,W]

    def run(self, x: StackInputs) -> dict:
        """→ {"depth_m": [B,1,H,W] in [near, far], "aif": [B,3,H,W] in [0,1],
        "attention": [B,F,1,H,W] (raw M, input frame order)}."""
        frames, fd, rng = x.frames, x.focus_distances_m, x.depth_range_m
        b, f = frames.shape[:2]
        xs, fds, order = sort_by_focus(frames, fd)
        m = self.attention(xs).float()                      # [B,F,H,W], sorted order
        near, far = rng[:, 0:1], rng[:, 1:2]
        if self.space == "inverse":                         # positions clamped into the range ⇒ depth inside it
            pos = torch.minimum(torch.maximum(1.0 / fds, 1.0 / far), 1.0 / near)
        else:
            pos = torch.minimum(torch.maximum(fds, near), far)
        w_depth = softplus_normalise(m, dim=1)
        val = (w_depth * pos.view(b, f, 1, 1)).sum(dim=1, keepdim=True)
        # the weights sum to 1 − O(eps): re-clamp so rounding can never leave the range
        if self.space == "inverse":
            depth = 1.0 / val.clamp(min=(1.0 / far).view(b, 1, 1, 1), max=(1.0 / near).view(b, 1, 1, 1))
        else:
            depth = val.clamp(min=near.view(b, 1, 1, 1), max=far.view(b, 1, 1, 1))
        w_aif = torch.softmax(m, dim=1)
        aif = (w_aif.unsqueeze(2) * xs.float()).sum(dim=1).clamp(0, 1)
        inv = torch.argsort(order, dim=1)                   # back to the input frame order
        att = torch.gather(m, 1, inv.view(b, f, 1, 1).expand_as(m)).unsqueeze(2)
        return {"depth_m": depth, "aif": aif, "attention": att}
