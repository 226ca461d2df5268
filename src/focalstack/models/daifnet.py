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

Two variants (``variant=``):

* ``"paper"`` — the description above: each frame's only camera input is its normalised focus
  position. The weights are tied to the blur the training camera makes: a focal length, f-number
  or pixel pitch other than the training one produces other blur at the same normalised position,
  and the net misreads it (benchmarks/models.py: camera A → B, δ1 0.81 → 0.65).
* ``"camera"`` (default) — **camera-aware**: the net receives what the optics imply, so one set of
  weights serves any camera (any focal length, f-number(s), pixel pitch, focus distances, 2–10
  frames, depth range). Why this mechanism: what varies between cameras is the map from depth to
  blur, σ_k(d) = psf_scale·CoC_k(d)/pixel, and that map is known exactly from camera.json. So
  instead of asking the net to learn it (it cannot, from a few numbers), the net is handed the
  *evidence* for every depth hypothesis, computed through that map: the relative-blur cost volume
  of :mod:`focalstack.classical.dfd` over J hypotheses uniform in inverse depth (for each
  hypothesis the sharpest frame, re-blurred by √(σ_k² − σ_ref²), must reproduce every other
  frame). The cost volume is camera-normalised — a fit at hypothesis j means the same thing for a
  phone and a DSLR — and the net's job becomes camera-independent: read the evidence, trust it
  where there is texture, propagate depth into flat regions and along edges. Concretely:

  - every frame also gets two planes, log(1 + σ) of that frame at the near and at the far end of
    the range (how much blur to expect), beside its normalised focus position;
  - the cost volume enters as five normalised versions — raw, and aggregated by image-guided,
    confidence-weighted cost-volume filtering at radii r, 3r, 6r and 12r (r = min(H,W)/32;
    :func:`focalstack.classical.dfd.aggregated_costs`: flat regions borrow the evidence of the
    textured pixels of their surface, up to most of a wall away) — plus the confidence, log
    texture and log mean cost; a 1×1 projection to W channels is concatenated to the decoder's
    input at every level (average-pooled) and to the head's trunk;
  - the depth head outputs J residual logits and 5 mixing logits; the logits are
    ``residual − gain·Σ_m softmax(mix_m + log g_m)·ĉ_m`` (``gain`` learnable, initialised at 50;
    ``g`` the confidence gate of :func:`focalstack.classical.dfd.gated_weights`: where the pixel's
    own evidence is confident the local versions, where it is not the wide ones), so the
    untrained net is already the soft-argmin of the gated aggregated cost — a classical depth from
    defocus (``predict --method dfd`` is its argmin) that needs no training for a new camera — and
    training learns where to depart from it. Why gated: on unseen indoor scenes most pixels are
    walls, floors and furniture without texture; the small radii leave them to noise, a plain mean
    with the wide radii smears depth edges of textured scenes (README, "Any camera"). Depth is the
    soft-argmin in inverse depth, 1/d = Σ_j softmax_j · (1/d_j): metric by construction, inside
    the camera's range. (``cost_aggregation="mean"``: raw, r and 3r with uniform mixing, the prior
    of checkpoints made before the gate.)
  - the AIF selection logits get ``−gain_aif·σ_k(d̂)`` (σ of frame k at the predicted depth,
    detached): the untrained AIF already picks, per pixel, the frame in focus at the predicted depth.

  With one frame there is no defocus evidence: the cost planes are zero and the net falls back on
  its image prior (shapes work for 1–10 frames; training self-supervised needs ≥ 2).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from dataclasses import dataclass, field
from typing import ClassVar

from ..classical.dfd import (AGGREGATION_SCALES, DEFAULT_HYPOTHESES, aggregated_costs, gated_weights,
                             inverse_depth_hypotheses, relative_blur_cost)
from ..optics.camera import CameraBatch
from .base import CropView, FocalStackModel, ModelConfig, StackInputs
from .common import ConvBlock, conv, depth_from_logit, normalised_focus, pad_to_multiple

VARIANTS = ("camera", "paper")
AIF_MODES = ("select", "direct")
# the cost versions each aggregation reads (radii in units of min(H,W)/32, classical.dfd.aggregation_radii)
COST_AGGREGATIONS = {"gated": AGGREGATION_SCALES, "mean": (1, 3)}
AIF_PRIOR_GAIN = 1.5
"""Initial gain of the AIF selection prior, per px of σ: frame k's logit −gain·σ_k(d̂). A sharper
selection (gain 5: a frame 1 px of σ blurrier keeps < 1 % of the weight instead of 18 %) gives the
untrained net a 1.7–4.4 dB better AIF on validation scenes, but a worse start for training and refinement: a 12-minute
fine-tune on the 35 mm validation camera reached δ1 0.890 instead of 0.919, and ``--refine 100``
0.002–0.006 δ1 less (``benchmarks/aif_prior.py``, README "Any camera"). So the prior stays soft
and the AIF sharpens by training. For *pretraining* across cameras the soft prior is the wrong
start: on a phone, whose frames differ by a fraction of a pixel of σ, the blend carries their blur
and the re-rendering loss then prefers depths too near the focus planes (``benchmarks/aif_bias.py``);
55 minutes from gain 5 and 40 from gain 20 kept the phone at δ1 0.594 and 0.658 against 0.502 from
1.5 (README "Any camera"). The shipped general model was pretrained from gain 20 (``aif_prior_gain``),
with an anchor to its initialisation's depth (:mod:`focalstack.train.teacher`); its learned gain is
12.0. This default stays 1.5 for networks started from scratch for one camera."""


@dataclass(frozen=True)
class DAIFNetConfig(ModelConfig):
    """DAIF-Net's options.

    width: channels of the first level (W); level i has W·2^i.
    levels: encoder/decoder levels (D); inputs are padded to a multiple of 2^levels.
    aif_mode: "select" (softmax over the input frames + residual, default) or "direct".
    variant: "camera" (camera-aware, default) or "paper" (module docstring).
    hypotheses: depth hypotheses J of the camera variant's cost volume (uniform in 1/d).
    cost_window: window (px) that aggregates the cost volume's per-pixel mismatch.
    cost_aggregation: the camera variant's cost prior: "gated" (raw + four radii, weighted by the local
        confidence, default) or "mean" (raw + two radii, equal weights: checkpoints made before the
        gated prior, which record no cost_aggregation).
    aif_prior_gain: the initial value of the learned AIF selection prior's gain (:data:`AIF_PRIOR_GAIN`);
        a trained checkpoint carries its learned value in its weights.
    """

    # metadata "flag": an option of `focalstack train` of its own (every option is also --model-opt KEY=VALUE)
    width: int = field(default=16, metadata={"flag": "--width", "help": "model width W (default 16)"})
    levels: int = field(default=4, metadata={"flag": "--levels", "help": "model levels D (default 4)"})
    aif_mode: str = field(default="select", metadata={"flag": "--aif-mode", "choices": AIF_MODES,
                                                       "help": "AIF head (default select)"})
    variant: str = field(default="camera", metadata={
        "flag": "--variant", "choices": VARIANTS,
        "help": "DAIF-Net variant: camera (camera-aware, one set of weights for any camera; default) or paper "
                "(the core paper's focus-position input, tied to the training camera)"})
    hypotheses: int = field(default=DEFAULT_HYPOTHESES, metadata={"help": "cost-volume depth hypotheses (camera)"})
    cost_window: int = field(default=7, metadata={"help": "cost aggregation window, px (camera)"})
    cost_aggregation: str = field(default="gated", metadata={"choices": tuple(COST_AGGREGATIONS),
                                                             "help": "cost prior: gated (default) or mean (camera)"})
    aif_prior_gain: float = field(default=AIF_PRIOR_GAIN, metadata={
        "help": "initial gain of the AIF selection prior, per px of σ (camera; default 1.5; learned after)"})

    # checkpoints whose sidecar lacks a field were made before it existed: this value rebuilds them
    ABSENT_IN_OLD_CHECKPOINTS: ClassVar[dict] = {"cost_aggregation": "mean"}

    def __post_init__(self):
        super().__post_init__()   # aif_mode, variant
        if self.width < 1 or self.levels < 1:
            raise ValueError(f"DAIFNet: width and levels must be ≥ 1, got {self.width}, {self.levels}")
        if self.variant == "camera" and self.hypotheses < 2:
            raise ValueError(f"DAIFNet: hypotheses must be ≥ 2, got {self.hypotheses}")
        if not self.aif_prior_gain > 0:
            raise ValueError(f"DAIFNet: aif_prior_gain must be > 0, got {self.aif_prior_gain}")


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


class DAIFNet(FocalStackModel):
    """Depth + AIF from a focal stack; options: :class:`DAIFNetConfig` (``DAIFNet(width=8, ...)`` or
    ``DAIFNet(DAIFNetConfig(...))``). The camera variant reads the lens from the CameraBatch."""

    Config = DAIFNetConfig

    def __init__(self, config: DAIFNetConfig | None = None, **options):
        super().__init__(config, **options)
        o = self.config
        width, levels = o.width, o.levels
        self.width, self.levels, self.aif_mode, self.variant = width, levels, o.aif_mode, o.variant
        self.hypotheses, self.cost_window = int(o.hypotheses), int(o.cost_window)
        self.cost_scales = COST_AGGREGATIONS[o.cost_aggregation]
        nv = 1 + len(self.cost_scales)                  # cost versions: raw + one per aggregation radius
        self.gated = o.cost_aggregation == "gated"
        cv = width if self.needs_camera else 0          # projected cost-volume features
        ch = [width * 2 ** i for i in range(levels)]
        self.enc = nn.ModuleList()
        cin = 6 if self.needs_camera else 4
        for c in ch:
            self.enc.append(ConvBlock(cin, c))
            cin = 2 * c                                   # features ⊕ stack maximum
        self.bottleneck = nn.Sequential(conv(cin, cin), nn.ReLU(inplace=True))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        c_in = cin
        for c in reversed(ch):
            self.up.append(nn.Sequential(conv(c_in, c), nn.ReLU(inplace=True)))
            self.dec.append(ConvBlock(2 * c + cv, c))
            c_in = c
        self.trunk = nn.Sequential(conv(width + cv, width), nn.ReLU(inplace=True))
        self.depth_head = conv(width, self.hypotheses + nv if self.needs_camera else 1)
        nn.init.normal_(self.depth_head.weight, std=1e-3)   # start near the middle of the range / at the cost prior
        if self.needs_camera:
            # nv normalised costs (J each) + confidence + log texture + log mean cost → W channels
            self.cost_proj = nn.Sequential(nn.Conv2d(nv * self.hypotheses + 3, width, 1), nn.ReLU(inplace=True))
            # log-gains: the untrained net is the soft-argmin of the aggregated cost (a classical DFD) and its
            # AIF the frame in focus at that depth; training moves away from both where the data says so
            self.log_cost_gain = nn.Parameter(torch.tensor(math.log(50.0)))
            self.log_aif_gain = nn.Parameter(torch.tensor(math.log(o.aif_prior_gain)))
        self.aif_head = conv(width, 3)
        if self.aif_mode == "select":
            nn.init.zeros_(self.aif_head.weight)            # residual starts at 0: aif = soft selection
            self.select = nn.Sequential(conv(2 * width, width), nn.ReLU(inplace=True), conv(width, 1, 1))
            nn.init.normal_(self.select[2].weight, std=1e-3)

    @property
    def needs_camera(self) -> bool:
        """The camera variant reads the lens (focal length, f-numbers, pixel size), not only focus distances."""
        return self.variant == "camera"

    @property
    def reads_crop_view(self) -> bool:
        """The camera variant's cost prior is aggregated over the whole image (:meth:`_camera_inputs`)."""
        return self.needs_camera

    @staticmethod
    def _stack_max(h: torch.Tensor, b: int, f: int) -> torch.Tensor:
        return h.view(b, f, *h.shape[1:]).amax(dim=1)

    def _camera_inputs(self, frames: torch.Tensor, camera: CameraBatch, rng: torch.Tensor,
                       view: CropView | None = None):
        """Per-frame blur planes [B,F,2] (log(1+σ) at near and far), the normalised costs [B,V,J,H,W]
        (raw, then aggregated at each radius), their prior log-weights [B,V,H,W] (the confidence
        gate; uniform for "mean"), the per-pixel cost statistics [B,3,H,W] (confidence, log
        texture, log mean cost) and the hypotheses' inverse depths [B,J] (1/m).

        With a ``view`` (training crops) the cost maps are computed on each crop's whole stack, one
        stack at a time as ``predict`` runs it, and cut: the aggregation radii and the surfaces a flat
        pixel borrows evidence from are those of the whole image. Computed on a 128-px crop of a
        322×216 stack instead, the shipped network's depth over those pixels differs from its
        whole-image depth by a mean |Δ log d| of 0.045 (20 training stacks of the 35 mm validation
        camera, ``benchmarks/crop_context.py``); cut from the whole stack's maps, by 0.001. The maps
        depend on no weight: the view's cache keeps them."""
        b, f, _, h, w = frames.shape
        ends = camera.sigma_px(rng.view(b, 1, 1, 2)).view(b, f, 2)                 # σ at near, far
        planes = torch.log1p(ends)
        if view is None:
            return (planes, *self._cost_maps(frames, camera, rng))
        cut = []
        for i in range(b):
            key = view.keys[i] if view.keys is not None else None
            hit = view.cache.get(key) if view.cache is not None and key is not None else None
            if hit is None or not torch.equal(hit[-1], rng[i]):   # a stack is read over one range in a run
                whole = view.frames[i][None].to(frames.dtype)
                hit = (*self._cost_maps(whole, view.cameras[i].to(frames.device, torch.float32), rng[i:i + 1]),
                       rng[i].clone())
                if view.cache is not None and key is not None:
                    view.cache.put(key, hit)
            cut.append([view.cut(i, m, h, w) for m in hit[:3]] + [hit[3]])
        costs, log_w, stats, inv = (torch.cat([c[k] for c in cut]) for k in range(4))
        return planes, costs, log_w, stats, inv

    def _cost_maps(self, frames: torch.Tensor, camera: CameraBatch, rng: torch.Tensor):
        """(costs [B,V,J,H,W], log-weights [B,V,H,W], stats [B,3,H,W], inverse depths [B,J]) of
        :meth:`_camera_inputs` for the whole frames [B,F,3,H,W]."""
        b, f, _, h, w = frames.shape
        j, nv = self.hypotheses, 1 + len(self.cost_scales)
        log_w = frames.new_zeros(b, nv, h, w, dtype=torch.float32)
        if f >= 2:
            vol = relative_blur_cost(frames, camera, rng, j, self.cost_window)
            costs, conf = aggregated_costs(vol, frames, self.cost_scales)
            if self.gated:
                log_w = gated_weights(conf, self.cost_window)[:, :, 0].clamp_min(1e-4).log()
            mean = vol.cost.mean(dim=1, keepdim=True)
            stats = torch.cat([conf, torch.log(vol.texture + 1e-3), torch.log(mean + 1e-3)], 1)
            inv = vol.inv_depth
        else:   # one frame: no defocus evidence, only the image prior
            costs = frames.new_zeros(b, nv, j, h, w, dtype=torch.float32)
            stats = frames.new_zeros(b, 3, h, w, dtype=torch.float32)
            inv = inverse_depth_hypotheses(rng, j)
        return costs, log_w, stats, inv

    def _project_costs(self, costs: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """``cost_proj`` — a 1×1 convolution + ReLU over the V·J cost planes ⊕ the 3 statistics — as two
        matrix products on the volume where it lies: the same numbers without concatenating a
        [B,VJ+3,H,W] copy (a 1×1 convolution over a channels-first volume is also ~3× slower on CPU).
        costs [B,V,J,H,W], stats [B,3,H,W] → [B,W,H,W]."""
        layer = self.cost_proj[0]
        wgt = layer.weight.flatten(1)                                               # [W, VJ+3]
        b, v, j, h, w = costs.shape
        y = torch.matmul(wgt[:, : v * j], costs.reshape(b, v * j, h * w).to(wgt.dtype))
        y = y + torch.matmul(wgt[:, v * j:], stats.reshape(b, 3, h * w).to(wgt.dtype)) + layer.bias.view(1, -1, 1)
        return torch.relu(y).view(b, -1, h, w)

    def _select_logits(self, feat0: torch.Tensor, y: torch.Tensor, b: int, f: int) -> torch.Tensor:
        """The AIF selection head on [frame features ⊕ decoder output] per frame → [B·F,1,H,W]. Its first
        convolution is linear, so the decoder's half (the same for every frame) is convolved once per
        sample and broadcast instead of once per frame: the same numbers, F× less of that work."""
        first = self.select[0]
        wf, wy = first.weight[:, : self.width], first.weight[:, self.width:]
        hf = first._conv_forward(feat0, wf, first.bias)                             # [B·F,W,H,W]
        hy = first._conv_forward(y, wy, None)                                      # [B,W,H,W]
        hid = torch.relu(hf.view(b, f, *hf.shape[1:]) + hy.unsqueeze(1)).flatten(0, 1)
        return self.select[2](_channels_last(hid))

    def run(self, x_in: StackInputs) -> dict:
        """→ {"depth_m": [B,1,H,W] in [near, far], "aif": [B,3,H,W] in (0,1), "weights": [B,F,1,H,W]
        (select mode), and "depth_logit" [B,1,H,W] (paper) or "hypothesis_logits" [B,J,H,W] (camera)}."""
        frames, rng = x_in.frames, x_in.depth_range_m
        fd = x_in.focus_distances_m.to(frames.dtype)
        b, f, _, h, w = frames.shape
        plane = normalised_focus(fd.float(), rng).to(frames.dtype).view(b, f, 1, 1, 1).expand(b, f, 1, h, w)
        parts = [frames * 2.0 - 1.0, plane]
        cv = camera = None
        if self.needs_camera:
            camera = x_in.lens("DAIFNet(variant='camera')")
            blur, costs, log_w, stats, inv = self._camera_inputs(frames, camera, rng, x_in.view)
            cv = self._project_costs(costs, stats).to(frames.dtype)
            parts.append(blur.to(frames.dtype).view(b, f, 2, 1, 1).expand(b, f, 2, h, w))
        # channels-last throughout: mkldnn's convolutions are 2-4× faster on CPU in that layout
        x = _channels_last(torch.cat(parts, dim=2).reshape(b * f, -1, h, w))
        x, h0, w0 = pad_to_multiple(x, 2 ** self.levels)
        if cv is not None:
            cvp, _, _ = pad_to_multiple(cv, 2 ** self.levels)

        skips = []
        feat0 = None
        for i, block in enumerate(self.enc):
            x = block(x)
            if i == 0:
                feat0 = x
            skips.append(self._stack_max(x, b, f))
            x = F.max_pool2d(x, 2)
            m = self._stack_max(x, b, f)
            x = _channels_last(torch.cat([x, m.unsqueeze(1).expand(b, f, *m.shape[1:]).reshape_as(x)], dim=1))
        y = self._stack_max(self.bottleneck(x), b, f)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            z = [up(_channels_last(y)), skip]
            if cv is not None:
                z.append(F.adaptive_avg_pool2d(cvp, skip.shape[-2:]) if skip.shape[-2:] != cvp.shape[-2:] else cvp)
            y = dec(_channels_last(torch.cat(z, dim=1)))
        t = self.trunk(_channels_last(torch.cat([y, cvp], dim=1) if cv is not None else y))
        out: dict = {}
        if self.needs_camera:
            head = self.depth_head(t)[..., :h0, :w0].float()
            mix = torch.softmax(head[:, self.hypotheses:] + log_w, dim=1)             # [B,V,H,W]
            prior = costs[:, 0] * mix[:, 0:1]                                          # [B,J,H,W]: Σ_v mix_v·ĉ_v
            for v in range(1, costs.shape[1]):
                prior = prior.addcmul(costs[:, v], mix[:, v:v + 1])
            logits = head[:, : self.hypotheses] - self.log_cost_gain.exp() * prior
            prob = torch.softmax(logits, dim=1)
            inv_d = (prob * inv.view(b, -1, 1, 1)).sum(dim=1, keepdim=True)
            out["hypothesis_logits"] = logits
            out["depth_m"] = 1.0 / inv_d
        else:
            logit = self.depth_head(t)[..., :h0, :w0]
            out["depth_logit"] = logit
            out["depth_m"] = depth_from_logit(logit.float(), rng)
        res = self.aif_head(t)[..., :h0, :w0].float()
        if self.aif_mode == "select":
            s = self._select_logits(feat0, y, b, f)[..., :h0, :w0].float().view(b, f, 1, h0, w0)
            if self.needs_camera:   # prior: the frame in focus at the predicted depth
                sig = camera.sigma_px(out["depth_m"].detach())                              # [B,F,1,H,W]
                s = s - self.log_aif_gain.exp() * sig
            wts = torch.softmax(s, dim=1)
            sel = (wts * frames.float()).sum(dim=1).clamp(1e-3, 1 - 1e-3)
            out["aif"] = torch.sigmoid(torch.logit(sel) + res)
            out["weights"] = wts
        else:
            out["aif"] = torch.sigmoid(res)
        return out
