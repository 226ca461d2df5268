"""Training losses for depth + all-in-focus (AIF) prediction from focal stacks.

Units and shapes: images are [B,3,H,W] (stacks [B,F,3,H,W]) with values in [0, 1]; depths are
[B,1,H,W] in metres; every loss returns a scalar tensor (mean over its pixels).

Fully self-supervised terms (Si et al. 2023; facts about the authors' code in
``dered-authors-code-notes.md`` §4, re-implemented here):

* :func:`reconstruction_loss` — every input frame is re-rendered from the predicted AIF and depth
  through the thin-lens camera and the differentiable renderer, compared with
  ``α·(1−SSIM)/2 + (1−α)·L1`` (11×11 Gaussian SSIM window). The authors use α = 0.85; focalstack's
  default is α = 0, L1 alone (:func:`photometric_loss` says why).
* :func:`coarse_aif` / :func:`aif_guidance_loss` — per pixel, the input frame whose predicted CoC is
  smallest (the frame focused closest to the predicted depth) is gathered into a *coarse AIF*,
  detached, and the predicted AIF is pulled towards it with the same photometric loss.
* :func:`sharpness_loss` — the authors' LoG-energy blur measure ``−log(mean((LoG∗gray)²) + ε)``
  on the predicted AIF (lower = sharper). The authors also applied it to the coarse AIF (their λ6);
  that term has **no gradient** (argmin + gather on data tensors), so it only shifted their logged /
  validation loss; it is not a term here.
* :func:`smoothness_loss` — edge-aware smoothness of the inverse depth divided by its per-image
  mean (scale-invariant, so its weight does not depend on the scene's depth units), weighted by
  ``exp(−β·|∇AIF|)`` (β inside the exponent, the usual Monodepth form; the authors multiplied by β
  instead) with the AIF detached (otherwise the net can lower this term by adding edges to the AIF),
  and forward differences without padding (the authors' zero padding adds the raw border values).

* :func:`teacher_loss` — distillation from the zero-shot optimiser's pseudo-labels (no ground
  truth; ``train --teacher optimize``), weighted per pixel by their trust, in log depth.

* :func:`render_sharpness_loss` — Gur & Wolf's sharpness term (their eq. 12), ``‖S(J̄) − S(J)‖₁``
  between the re-rendered and the input frames, ``S = −ΔI − C(I) − V(I)``
  (:func:`focus_sharpness_map`); weight ``render_sharp`` (0 by default; the ``gurwolf`` model's
  defaults set 0.1).

Supervised comparison modes: :func:`depth_l1_loss` (masked by valid depth) and, in the
AiFDepthNet "AIF supervision" style, :func:`aif_l1_loss` + :func:`smoothness_loss`.

:class:`LossConfig` holds the weights (weight 0 ⇒ the term is skipped, i.e. an ablation);
:func:`compute_losses` assembles them for one batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import kornia

from .optics.camera import CameraBatch
from .render import render_stack
from .render.psf import PSFS
from .ssim import ssim_loss
from .l1 import mean_abs_error

__all__ = ["LossConfig", "compute_losses", "photometric_loss", "reconstruction_loss", "coarse_aif",
           "aif_guidance_loss", "log_blur", "sharpness_loss", "smoothness_loss", "edge_aware_smoothness",
           "depth_l1_loss", "aif_l1_loss", "teacher_loss", "valid_depth_mask", "focus_sharpness_map", "render_sharpness_loss",
           "SUPERVISION_MODES", "PHOTOMETRIC_ALPHA"]

SUPERVISION_MODES = ("self", "depth", "aif")
# The SSIM share of the one photometric loss (training, the optimiser's fast schedule, --refine):
# 0 = L1 alone (photometric_loss says why)
PHOTOMETRIC_ALPHA = 0.0


@dataclass
class LossConfig:
    """Loss weights and options. Weight 0 skips a term.

    Defaults follow the authors' λ ratios, normalised so the reconstruction weight is 1 (their
    README command: recon 1e3, AIF guidance 1e2 → 0.1; smoothness 1e1 → 0.01, see below; AIF blur
    1…10 × their factor 0.25 → 1e-3 here, at the low end because it rewards any high frequency,
    noise included). Our smoothness acts on mean-normalised inverse depth (values ~1) rather than
    metres, which gives ~3× larger values than the authors' metric term on indoor scenes, so 0.01 is
    kept as is.

    supervision: "self" (fully self-supervised: recon + aif_guide + aif_sharp + smooth),
        "depth" (depth L1 on valid pixels + aif_guide so the AIF head still learns),
        "aif" (GT AIF known: AIF L1 + reconstruction rendered from the GT AIF + smoothness).
    """

    # metadata "flag": the field's `focalstack train` option (focalstack.cli.options)
    supervision: str = "self"
    # SSIM share α of the photometric loss. Default 0 (L1 alone), not the core paper's 0.85: on noisy,
    # weakly textured stacks SSIM's contrast term rewards a re-rendering that keeps as much noise energy
    # as the frames, i.e. less blur, which pulls depth towards the focus planes (photometric_loss)
    alpha: float = field(default=PHOTOMETRIC_ALPHA, metadata={
        "flag": "--ssim-alpha", "help": "SSIM share α of the photometric loss α·(1−SSIM)/2 + (1−α)·L1 "
                                        "(default 0 = L1; the core paper used 0.85)"})
    ssim_window: int = 11
    recon: float = field(default=1.0, metadata={"flag": "--w-recon"})
    aif_guide: float = field(default=0.1, metadata={"flag": "--w-aif-guide"})
    aif_sharp: float = field(default=1e-3, metadata={"flag": "--w-aif-sharp"})
    smooth: float = field(default=0.01, metadata={"flag": "--w-smooth"})
    # authors' README value (they used it as a multiplier)
    smooth_beta: float = field(default=2.5, metadata={"flag": "--smooth-beta"})
    depth_l1: float = field(default=1.0, metadata={"flag": "--w-depth"})
    aif_l1: float = field(default=1.0, metadata={"flag": "--w-aif"})
    # Gur & Wolf sharpness of the re-rendered frames (self / aif modes)
    render_sharp: float = field(default=0.0, metadata={
        "flag": "--w-render-sharp", "help": "Gur & Wolf sharpness of the re-rendered frames"})
    # optimiser pseudo-labels (train --teacher optimize; used only when present)
    teacher: float = field(default=0.1, metadata={
        "flag": "--w-teacher", "help": "optimiser pseudo-labels (with --teacher optimize; default 0.1)"})
    kernel_size: int | None = None  # renderer window; None = from the largest σ (set by the trainer)
    # "per_image": every re-rendered frame with the window of its own largest σ, at most kernel_size
    # (the run's window fits the strongest blur of any training camera; a batch mixes phones and DSLRs)
    render_window: str = field(default="per_image", metadata={
        "flag": "--render-window", "choices": ("per_image", "shared"),
        "help": "renderer window per frame from its own largest blur (per_image, default) or one for all"})
    psf: str = field(default="gaussian", metadata={"flag": "--psf", "choices": PSFS})
    render_backend: str = field(default="auto", metadata={"flag": "--render-backend"})

    def __post_init__(self):
        if self.supervision not in SUPERVISION_MODES:
            raise ValueError(f"supervision must be one of {SUPERVISION_MODES}, got {self.supervision!r}")
        if self.render_window not in ("per_image", "shared"):
            raise ValueError(f"render_window must be 'per_image' or 'shared', got {self.render_window!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LossConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ---- building blocks ----------------------------------------------------------------------
def photometric_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = PHOTOMETRIC_ALPHA,
                     window: int = 11) -> torch.Tensor:
    """α·(1−SSIM)/2 + (1−α)·L1, images [N,C,H,W] in [0,1] (Gaussian window, σ 1.5, same padding).
    The one photometric loss of training, the optimiser and ``--refine``. Images smaller than the
    window use the largest odd window that fits (L1 alone below 3 px).

    Why α = 0 (:data:`PHOTOMETRIC_ALPHA`) by default, against the core paper's 0.85: SSIM compares
    local variances, and a target frame's variance includes its noise. An estimated AIF carries the
    frames' noise too, so a re-rendering with *less* blur keeps more of it and matches the frame's
    variance better — SSIM then prefers depths near the focus planes. Measured (issue 12/15 notes):
    the optimiser on noisy DSLR-synth stacks, SSIM share 0.85 → 0: δ1 0.70 → 0.78 (50 mm),
    0.81 → 0.89 (85 mm), the same on procedural stacks; 12 minutes of fine-tuning the general
    DAIF-Net with SSIM lowered its δ1, with L1 alone it raised it (0.914 → 0.951, 50 mm). With the
    ground-truth AIF held fixed, neither loss has that bias."""
    l1 = mean_abs_error(pred, target)     # fused on CPU (focalstack.l1)
    if alpha <= 0:
        return l1
    window = min(window, 2 * (min(pred.shape[-2:]) // 2) - 1)
    if window < 3:
        return l1
    ssim = ssim_loss(pred, target, window, max_val=1.0)   # kornia's ssim_loss, fused on CPU
    return alpha * ssim + (1.0 - alpha) * l1


def reconstruction_loss(aif: torch.Tensor, depth_m: torch.Tensor, frames: torch.Tensor,
                        camera: CameraBatch, kernel_size: int | None = None, alpha: float = PHOTOMETRIC_ALPHA,
                        window: int = 11, psf: str = "gaussian", backend: str = "auto",
                        render_window: str = "shared"):
    """Re-render every frame: ``render_stack(aif [B,3,H,W], depth_m [B,1,H,W], camera)`` → [B,F,3,H,W],
    compared with ``frames`` [B,F,3,H,W]. Rendering runs in float32 (autocast off). ``window``: the
    SSIM window; ``render_window``: the renderer's (:func:`focalstack.render.defocus`).

    Returns (loss, rendered stack)."""
    with torch.autocast(device_type=aif.device.type, enabled=False):
        rendered = render_stack(aif.float(), depth_m.float(), camera, kernel_size=kernel_size, psf=psf,
                                backend=backend, window=render_window)
        b, f = frames.shape[:2]
        loss = photometric_loss(rendered.reshape(b * f, *rendered.shape[2:]),
                                frames.float().reshape(b * f, *frames.shape[2:]), alpha, window)
    return loss, rendered


def coarse_aif(frames: torch.Tensor, depth_m: torch.Tensor, camera: CameraBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel the input frame with the smallest CoC at the (detached) predicted depth.

    frames [B,F,3,H,W], depth_m [B,1,H,W] metres → (coarse AIF [B,3,H,W] detached, index [B,1,H,W])."""
    with torch.no_grad():
        coc = camera.to(frames.device, torch.float32).coc_px(depth_m.detach().float())  # [B,F,1,H,W]
        idx = coc.argmin(dim=1)                                                         # [B,1,H,W]
        g = idx.unsqueeze(1).expand(-1, 1, frames.shape[2], -1, -1)                     # [B,1,3,H,W]
        out = torch.gather(frames, 1, g).squeeze(1)
    return out.detach(), idx


def aif_guidance_loss(aif: torch.Tensor, target: torch.Tensor, alpha: float = PHOTOMETRIC_ALPHA, window: int = 11) -> torch.Tensor:
    """Photometric loss between the predicted AIF and the detached coarse AIF ([B,3,H,W])."""
    return photometric_loss(aif, target.detach(), alpha, window)


_LOG_CACHE: dict = {}


def _log_kernel(size: int = 7, sigma: float = 1.0, device=None, dtype=torch.float32) -> torch.Tensor:
    key = (size, sigma, device, dtype)
    if key not in _LOG_CACHE:
        r = torch.arange(size, dtype=torch.float64) - size // 2
        r2 = r.view(-1, 1) ** 2 + r.view(1, -1) ** 2
        t = r2 / (2 * sigma ** 2)
        k = (1.0 / (math.pi * sigma ** 4)) * (1 - t) * torch.exp(-t)
        _LOG_CACHE[key] = k.to(device=device, dtype=dtype).unsqueeze(0)
    return _LOG_CACHE[key]


def log_blur(img: torch.Tensor, size: int = 7, sigma: float = 1.0, eps: float = 1e-8) -> torch.Tensor:
    """Blur measure of images [B,C,H,W]: mean over B of ``−log(mean_HW((LoG∗gray)²) + eps)``
    (gray = channel mean; LoG 7×7, σ = 1, reflect borders). Lower = sharper. The authors' measure is
    ``0.25·`` this with a slightly different normaliser (H·W − mean²)."""
    gray = img.float().mean(dim=1, keepdim=True)
    resp = kornia.filters.filter2d(gray, _log_kernel(size, sigma, img.device), border_type="reflect")
    energy = resp.pow(2).mean(dim=(1, 2, 3))
    return (-torch.log(energy + eps)).mean()


def sharpness_loss(aif: torch.Tensor) -> torch.Tensor:
    """AIF sharpness prior: :func:`log_blur` of the predicted AIF [B,3,H,W]."""
    return log_blur(aif)



def edge_aware_smoothness(n: torch.Tensor, image: torch.Tensor, gamma: float, guide: str = "channels") -> torch.Tensor:
    """The one edge-aware smoothness: mean(|∂x n|·e^{−γ|∂x I|}) + mean(|∂y n|·e^{−γ|∂y I|}) of a map
    n [B,1,H,W] guided by image [B,C,H,W] (detached), forward differences inside the image only.
    ``guide``: "channels" = |∂I| averaged over channels (training), "grey" = |∂ of the channel mean|
    (the optimiser's, which keeps edges between colours of equal brightness smooth)."""
    img = image.detach().float()
    if guide == "grey":
        img = img.mean(1, keepdim=True)
    elif guide != "channels":
        raise ValueError(f"edge_aware_smoothness: guide must be 'channels' or 'grey', got {guide!r}")
    dnx = (n[..., :, 1:] - n[..., :, :-1]).abs()
    dny = (n[..., 1:, :] - n[..., :-1, :]).abs()
    dix = (img[..., :, 1:] - img[..., :, :-1]).abs().mean(dim=1, keepdim=True)
    diy = (img[..., 1:, :] - img[..., :-1, :]).abs().mean(dim=1, keepdim=True)
    loss = 0.0
    if dnx.numel():
        loss = loss + (dnx * torch.exp(-gamma * dix)).mean()
    if dny.numel():
        loss = loss + (dny * torch.exp(-gamma * diy)).mean()
    return torch.as_tensor(loss, device=n.device, dtype=torch.float32)


def smoothness_loss(depth_m: torch.Tensor, image: torch.Tensor, beta: float = 2.5) -> torch.Tensor:
    """Edge-aware smoothness (:func:`edge_aware_smoothness`, channel guide) of n = (1/d)/mean(1/d)
    (per image, scale-invariant), depth [B,1,H,W] m, image [B,3,H,W]."""
    inv = 1.0 / depth_m.float()
    n = inv / inv.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    return edge_aware_smoothness(n, image, beta, "channels")


def focus_sharpness_map(img: torch.Tensor, window: int = 7, eps: float = 1e-2) -> torch.Tensor:
    """Gur & Wolf's per-pixel sharpness ``S(I) = −ΔI − C(I) − V(I)`` of images [N,C,H,W] (per channel):
    Laplacian ΔI (3×3), contrast visibility C = |I − μ|/(μ + eps) and variance V = (I − μ)², μ the
    mean over a ``window``×``window`` neighbourhood (replicated borders; eps keeps C finite on black)."""
    x = img.float()
    lap = kornia.filters.laplacian(x, 3, border_type="reflect", normalized=False)
    mu = kornia.filters.box_blur(x, (window, window), border_type="replicate")
    return -lap - (x - mu).abs() / (mu + eps) - (x - mu) ** 2


def render_sharpness_loss(rendered: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Gur & Wolf eq. 12: mean |S(J̄) − S(J)| over re-rendered vs input stacks [B,F,3,H,W]."""
    b, f = frames.shape[:2]
    r = rendered.float().reshape(b * f, *rendered.shape[2:])
    t = frames.float().reshape(b * f, *frames.shape[2:])
    return (focus_sharpness_map(r) - focus_sharpness_map(t)).abs().mean()


def valid_depth_mask(gt: torch.Tensor, has_depth: torch.Tensor | None = None) -> torch.Tensor:
    """gt [B,1,H,W] → bool mask: finite, > 0, and the sample has depth (has_depth [B] bool)."""
    m = torch.isfinite(gt) & (gt > 0)
    if has_depth is not None:
        m = m & has_depth.view(-1, 1, 1, 1).to(torch.bool)
    return m


def teacher_loss(depth_m: torch.Tensor, teacher_inv_depth: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Distillation from pseudo-labels (:mod:`focalstack.train.teacher`): the weighted mean of
    |log d − log d_t| (unit-free, so one weight serves every depth range), depth [B,1,H,W] metres,
    teacher_inv_depth [B,1,H,W] 1/m (≤ 0 = no label), weight [B,1,H,W] in [0,1]."""
    w = weight.float() * (teacher_inv_depth > 0)
    if not bool((w > 0).any()):
        return depth_m.sum() * 0.0
    err = (torch.log(depth_m.float()) + torch.log(teacher_inv_depth.float().clamp_min(1e-6))).abs()
    return (w * err).sum() / w.sum().clamp_min(1e-6)


def depth_l1_loss(pred_m: torch.Tensor, gt_m: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |pred − gt| in metres over valid pixels ([B,1,H,W]); 0 (with gradient path) if none."""
    if mask is None:
        mask = valid_depth_mask(gt_m)
    if not bool(mask.any()):
        return pred_m.sum() * 0.0
    return (pred_m.float() - gt_m.float()).abs()[mask].mean()


def aif_l1_loss(pred: torch.Tensor, gt: torch.Tensor, has_aif: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |pred − gt| over samples with a GT AIF ([B,3,H,W]; has_aif [B] bool)."""
    if has_aif is not None:
        keep = has_aif.to(torch.bool)
        if not bool(keep.any()):
            return pred.sum() * 0.0
        pred, gt = pred[keep], gt[keep]
    return (pred.float() - gt.float()).abs().mean()


# ---- assembly ------------------------------------------------------------------------------
def compute_losses(out: dict, batch: dict, cfg: LossConfig, extras: dict | None = None):
    """Total loss and its terms for one batch.

    Args:
        out: model output {"depth_m": [B,1,H,W], "aif": [B,3,H,W]}.
        batch: {"frames": [B,F,3,H,W], "camera": CameraBatch or its dict, and for the supervised
            modes "depth" [B,1,H,W] + "has_depth" [B] / "aif" [B,3,H,W] + "has_aif" [B]}.
        cfg: weights and mode.
        extras: if a dict, receives "rendered" [B,F,3,H,W] and "coarse_aif" [B,3,H,W] when computed.

    Returns: (total scalar tensor, {term name: detached scalar tensor, unweighted}).
    """
    frames = batch["frames"]
    cam = batch["camera"]
    if not isinstance(cam, CameraBatch):
        cam = CameraBatch.from_dict(cam, device=frames.device)
    depth, aif = out["depth_m"], out["aif"]
    mode = cfg.supervision
    terms: dict[str, torch.Tensor] = {}
    total = depth.new_zeros(())
    kw = dict(alpha=cfg.alpha, window=cfg.ssim_window)

    def add(name, weight, value):
        nonlocal total
        terms[name] = value.detach()
        total = total + weight * value

    if mode in ("self", "aif") and (cfg.recon > 0 or cfg.render_sharp > 0):
        src = aif
        if mode == "aif":
            if not bool(batch["has_aif"].all()):
                raise ValueError("AIF supervision needs aif.png in every training sample")
            src = batch["aif"].to(frames.device)
        loss, rendered = reconstruction_loss(src, depth, frames, cam, cfg.kernel_size, psf=cfg.psf,
                                             backend=cfg.render_backend, render_window=cfg.render_window, **kw)
        if cfg.recon > 0:
            add("recon", cfg.recon, loss)
        if cfg.render_sharp > 0:
            add("render_sharp", cfg.render_sharp, render_sharpness_loss(rendered, frames))
        if extras is not None:
            extras["rendered"] = rendered.detach()
    if mode in ("self", "depth") and cfg.aif_guide > 0:
        guide_depth = depth
        target, _ = coarse_aif(frames, guide_depth, cam)
        add("aif_guide", cfg.aif_guide, aif_guidance_loss(aif, target, **kw))
        if extras is not None:
            extras["coarse_aif"] = target
    if mode == "self" and cfg.teacher > 0 and "teacher_inv_depth" in batch:
        add("teacher", cfg.teacher, teacher_loss(depth, batch["teacher_inv_depth"].to(depth.device),
                                                 batch["teacher_weight"].to(depth.device)))
    if mode == "self" and cfg.aif_sharp > 0:
        add("aif_sharp", cfg.aif_sharp, sharpness_loss(aif))
    if mode in ("self", "aif") and cfg.smooth > 0:
        add("smooth", cfg.smooth, smoothness_loss(depth, aif if mode == "self" else batch["aif"], cfg.smooth_beta))
    if mode == "depth" and cfg.depth_l1 > 0:
        if "depth" not in batch or not bool(batch["has_depth"].any()):
            raise ValueError("depth supervision needs depth.npy in the training samples")
        gt = batch["depth"].to(depth.device)
        add("depth_l1", cfg.depth_l1, depth_l1_loss(depth, gt, valid_depth_mask(gt, batch["has_depth"].to(depth.device))))
    if mode == "aif" and cfg.aif_l1 > 0:
        add("aif_l1", cfg.aif_l1, aif_l1_loss(aif, batch["aif"].to(aif.device), batch["has_aif"].to(aif.device)))
    terms["total"] = total.detach()
    return total, terms
