"""DAIF-Net: a focal stack of any size → metric depth + all-in-focus (AIF) image.

Architecture (after Si et al. 2023, "Fully Self-Supervised Depth Estimation from Defocus Clue";
facts from the paper and the authors' released model, re-implemented here):

* **Shared encoder.** Every frame goes through the same U-Net encoder of ``levels`` levels; level
  ``i`` is a conv3×3-ReLU-conv3×3-ReLU block with ``width·2^i`` channels.
* **Layer-wise global max pooling.** After each level (2×2 max-pool), every frame's features are
  concatenated with the element-wise maximum over the stack, broadcast back to every frame, so the
  next level sees ``2·width·2^i`` channels. This is what lets the net compare sharpness across the
  stack while staying independent of the stack size and order.
* **Bottleneck** conv3×3-ReLU, then the maximum over the stack: one tensor per sample.
* **Decoder** (run once per sample): bilinear ×2 upsampling, conv3×3-ReLU halving the channels,
  concatenation with the skip (the stack maximum of that level's pre-pool features), conv block.
* **Heads.** A shared conv3×3-ReLU trunk feeds
  - the depth head: one logit ``z`` per pixel, mapped to metric depth by a sigmoid in inverse depth,
    ``1/d = 1/far + sigmoid(z)·(1/near − 1/far)`` — smooth, bounded to [near, far] and
    *metric*: no per-image max normalisation (the authors' code divides by the per-image maximum, so
    its farthest pixel is always exactly ``far``);
  - the AIF head (``aif_mode="select"``, default): a per-frame logit computed from that frame's
    full-resolution encoder features and the decoder output, a softmax over the stack, the weighted
    sum of the input frames ``S = Σ_k w_k·I_k`` and a zero-initialised residual ``r``:
    ``aif = sigmoid(logit(S) + r)``. At initialisation the AIF is a (near-uniform) blend of the inputs,
    and the net only has to learn *where* each frame is sharp — much faster to train than
    synthesising RGB from scratch, and it cannot drift in colour. ``aif_mode="direct"`` is the
    authors' variant (three channels from the decoder, here squashed by a sigmoid instead of a
    ReLU + clip, which has no gradient outside [0, 1]).

Input per frame: RGB mapped to [−1, 1] plus one constant plane holding the frame's *normalised*
focus distance ``2·u − 1`` with ``u = (1/fd − 1/far)/(1/near − 1/far)``, i.e. the position of the
focus plane in inverse depth inside the depth range (−1 = far end, +1 = near end). Unlike the
authors' raw metres, this is camera-independent: the same net serves any depth range.

Normalisation layers: none (like the authors). BatchNorm would couple the frames of a stack and the
samples of a batch; GroupNorm costs ~30 % more time per step on CPU and was not needed for stable
training with AdamW at lr 5e-4 (Kaiming initialisation keeps activations in range).

Any stack size ≥ 1 and any H×W: inputs are reflect-padded to a multiple of ``2^levels`` and the
outputs cropped back. Defaults ``width=16, levels=4`` give ≈ 2.0 M parameters (the authors' W=16,
D=4 net has ≈ 1.96 M).
"""

from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import ConvBlock, conv, depth_from_logit, depth_range_tensor, normalised_focus, pad_to_multiple, stack_inputs

class DAIFNet(nn.Module):
    """Depth + AIF from a focal stack.

    Args:
        width: channels of the first level (W); level i has W·2^i.
        levels: encoder/decoder levels (D); inputs are padded to a multiple of 2^levels.
        aif_mode: "select" (softmax over the input frames + residual, default) or "direct".
    """

    def __init__(self, width: int = 16, levels: int = 4, aif_mode: str = "select"):
        super().__init__()
        if width < 1 or levels < 1:
            raise ValueError(f"DAIFNet: width and levels must be ≥ 1, got {width}, {levels}")
        if aif_mode not in ("select", "direct"):
            raise ValueError(f"DAIFNet: aif_mode must be 'select' or 'direct', got {aif_mode!r}")
        self.width, self.levels, self.aif_mode = width, levels, aif_mode
        ch = [width * 2 ** i for i in range(levels)]
        self.enc = nn.ModuleList()
        cin = 4
        for c in ch:
            self.enc.append(ConvBlock(cin, c))
            cin = 2 * c                                   # features ⊕ stack maximum
        self.bottleneck = nn.Sequential(conv(cin, cin), nn.ReLU(inplace=True))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        c_in = cin
        for c in reversed(ch):
            self.up.append(nn.Sequential(conv(c_in, c), nn.ReLU(inplace=True)))
            self.dec.append(ConvBlock(2 * c, c))
            c_in = c
        self.trunk = nn.Sequential(conv(width, width), nn.ReLU(inplace=True))
        self.depth_head = conv(width, 1)
        nn.init.normal_(self.depth_head.weight, std=1e-3)   # start near the middle of the inverse-depth range
        self.aif_head = conv(width, 3)
        if aif_mode == "select":
            nn.init.zeros_(self.aif_head.weight)            # residual starts at 0: aif = soft selection
            self.select = nn.Sequential(conv(2 * width, width), nn.ReLU(inplace=True), conv(width, 1, 1))
            nn.init.normal_(self.select[2].weight, std=1e-3)

    @staticmethod
    def _stack_max(h: torch.Tensor, b: int, f: int) -> torch.Tensor:
        return h.view(b, f, *h.shape[1:]).amax(dim=1)

    def forward(self, frames: torch.Tensor, focus_distances_m: torch.Tensor, depth_range_m) -> dict:
        """frames [B,F,3,H,W] in [0,1]; focus_distances_m [B,F] metres; depth_range_m (near, far) or
        [B,2] metres → {"depth_m": [B,1,H,W] in [near, far], "aif": [B,3,H,W] in (0,1),
        "depth_logit": [B,1,H,W], "weights": [B,F,1,H,W] (select mode)}."""
        fd = stack_inputs("DAIFNet", frames, focus_distances_m, frames.dtype)
        b, f, _, h, w = frames.shape
        rng = depth_range_tensor(depth_range_m, b, frames.device, torch.float32)
        plane = normalised_focus(fd.float(), rng).to(frames.dtype).view(b, f, 1, 1, 1).expand(b, f, 1, h, w)
        x = torch.cat([frames * 2.0 - 1.0, plane], dim=2).reshape(b * f, 4, h, w)
        x = x.contiguous(memory_format=torch.channels_last)  # ~2x faster mkldnn convs on CPU
        x, h0, w0 = pad_to_multiple(x, 2 ** self.levels)

        skips = []
        feat0 = None
        for i, block in enumerate(self.enc):
            x = block(x)
            if i == 0:
                feat0 = x
            skips.append(self._stack_max(x, b, f))
            x = F.max_pool2d(x, 2)
            m = self._stack_max(x, b, f)
            x = torch.cat([x, m.unsqueeze(1).expand(b, f, *m.shape[1:]).reshape_as(x)], dim=1)
        y = self._stack_max(self.bottleneck(x), b, f)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = dec(torch.cat([up(y), skip], dim=1))
        t = self.trunk(y)
        logit = self.depth_head(t)[..., :h0, :w0]
        out = {"depth_logit": logit, "depth_m": depth_from_logit(logit.float(), rng)}
        res = self.aif_head(t)[..., :h0, :w0].float()
        if self.aif_mode == "select":
            yy = y.unsqueeze(1).expand(b, f, *y.shape[1:]).reshape(b * f, *y.shape[1:])
            s = self.select(torch.cat([feat0, yy], dim=1))[..., :h0, :w0].float().view(b, f, 1, h0, w0)
            wts = torch.softmax(s, dim=1)
            sel = (wts * frames.float()).sum(dim=1).clamp(1e-3, 1 - 1e-3)
            out["aif"] = torch.sigmoid(torch.logit(sel) + res)
            out["weights"] = wts
        else:
            out["aif"] = torch.sigmoid(res)
        return out
