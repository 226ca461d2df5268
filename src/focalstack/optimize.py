"""Zero-shot per-stack optimisation: inverse depth + AIF fitted so that re-rendering them through
the thin-lens renderer (:func:`focalstack.render.render_stack`) reproduces the observed stack.
No training and no weights: it works on any stack whose camera is known (and, up to an affine
ambiguity in inverse depth, on stacks whose focus distances are unknown).

Known camera (``depth_kind = "metric"``)
    * parameters: per-pixel logits z (inverse depth) and u (AIF). Inverse depth
      ρ = ρ_far + (ρ_near − ρ_far)·sigmoid(z), with [near, far] = camera.effective_depth_range_m(),
      so depth always stays inside the camera's depth range (smooth, no hard clamp);
      AIF = clamp(u, 0, 1).
    * initialisation: depth from focus (:func:`focalstack.classical.depth_from_focus`) and its
      Laplacian-pyramid fused AIF. Two-aperture stacks (every focus equal) have no focus sweep:
      they start from a constant depth of 2 × the focus distance and the sharpest (highest
      f-number) frame. Blur is symmetric in 1/d around the focus plane, so a two-aperture pair
      cannot tell a depth in front of the focus plane from its mirror behind it; starting on the
      far side is a prior (indoor scenes shot focused near), not something the data decides.
    * coarse to fine: candidate ``levels`` 1/4 → 1/2 → 1; a coarse level is used only where
      defocus stays visible there (largest blur σ over the depth range / level ≥ 2 px) and the
      image keeps ≥ 32 px, so small-blur cameras run at full resolution only. Each level
      optimises a residual on area-downsampled frames with the camera resized accordingly; the
      depth residual is upsampled (bilinear) into the full-resolution logits (AIF corrections are
      carried up only with ``transfer_aif``: the full-resolution fused AIF keeps its detail).
    * loss: α·(1 − SSIM)/2 + (1 − α)·L1 over all frames (:func:`focalstack.losses.photometric_loss`,
      the training loss's photometric term, here with a 7-px SSIM window, α = 0.85) +
      λ·edge-aware smoothness |∇n|·exp(−γ|∇I|) of the normalised inverse depth n ∈ [0,1]
      (I = grey AIF, detached). Adam.

Unknown focus distances (``depth_kind = "relative_inverse"``; camera.json has
``"focus_known": false`` = ``FocalStackCamera.focus_known``, written by ``focalstack import``)
    Defocus is ∝ |1/d − 1/d_k| up to a per-camera scale, so the stack is modelled as
    σ_k(x) = a·|ρ(x) − ρ_k| + b with ρ(x) ∈ (0,1) the *relative inverse depth*, ρ_k ∈ (0,1)
    learned per frame, a > 0 (px per unit ρ, at full resolution) and b ≥ 0 (residual blur)
    learned jointly. Any ρ' = s·ρ + t (with a' = a/s, ρ'_k = s·ρ_k + t) renders the same stack:
    the result is defined only up to this affine map (DDFS, Fujimura et al. 2024), and even the
    sign s is fixed only by convention — the initial ρ_k follow the frames' order, frame 0 the
    nearest (focalstack's import order, near → far), so larger ρ = nearer. a is initialised by a
    grid search at the coarsest level.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .losses import photometric_loss
from .optics.camera import FocalStackCamera

__all__ = ["OptimizeConfig", "OptimizeResult", "optimize_stack", "recon_metrics",
           "relative_render"]


@dataclass
class OptimizeConfig:
    """Defaults: small-blur cameras run 40 Adam steps at full resolution only (a 128² 5-frame stack
    took 60–100 s and a 256² one ~150 s on 2 heavily shared CPU cores with the fused CPU renderer;
    scale with :meth:`scaled` for speed)."""

    levels: tuple[int, ...] = (4, 2, 1)       # candidate downsampling factors, coarse → fine
    iters: tuple[int, ...] = (60, 40, 40)     # Adam steps per stage
    min_level_sigma_px: float = 2.0           # a coarse level s is used only if the largest blur σ/s ≥ this
    lr_depth: float = 0.05                    # on the inverse-depth logit
    lr_aif: float = 0.003                     # on the AIF values
    lr_focus: float = 0.02                    # unknown focus: on ρ_k logits and log a, b
    smooth_weight: float = 0.02               # λ, edge-aware smoothness on normalised inverse depth
    edge_gamma: float = 10.0                  # γ in exp(−γ|∇I|)
    alpha: float = 0.85                       # SSIM weight in the reconstruction loss
    ssim_window: int = 7
    max_kernel: int = 31                      # cap on the render window (px, odd) at every level
    transfer_aif: bool = False                # carry coarse-level AIF corrections up (default: depth only)
    two_aperture_init_m: float | None = None  # two-aperture start depth (default 2 × focus: the far side)
    frames_per_step: int = 8                  # stacks with more frames use a random subset per step
    min_level_px: int = 32                    # coarse levels whose short side would be smaller are skipped
    measure: str = "lapm"                     # DFF init
    window: int = 9
    refine: str | None = "guided"
    psf: str = "gaussian"
    threads: int | None = None                # torch.set_num_threads for the run (None: leave)

    def scaled(self, factor: float) -> "OptimizeConfig":
        """The same schedule with ``factor`` × the iterations (at least 1 per stage)."""
        from dataclasses import replace
        return replace(self, iters=tuple(max(1, int(round(i * factor))) for i in self.iters))


@dataclass
class OptimizeResult:
    """depth_m: [H,W] metres (None for relative results); inv_depth: [H,W] 1/m, or relative
    inverse depth in (0,1) (larger = nearer) when depth_kind == "relative_inverse"; aif [3,H,W];
    rendered: [F,3,H,W] re-rendered stack; recon_before/after: full-resolution reconstruction
    errors of the initialisation and of the result; focus_positions: learned ρ_k (relative mode)."""

    depth_m: torch.Tensor | None
    inv_depth: torch.Tensor
    aif: torch.Tensor
    rendered: torch.Tensor
    depth_kind: str
    recon_before: dict
    recon_after: dict
    seconds: float
    history: list = field(default_factory=list)
    focus_positions: list | None = None
    blur_scale_px: float | None = None
    blur_offset_px: float | None = None
    init_depth_m: torch.Tensor | None = None
    init_inv_depth: torch.Tensor | None = None


# ---- losses ----------------------------------------------------------------------------------

@torch.no_grad()
def recon_metrics(pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.85, ssim_window: int = 7) -> dict:
    """Reconstruction error of a re-rendered stack [F,3,H,W]: loss, L1, PSNR (dB), per-frame L1."""
    l1f = (pred - target).abs().mean(dim=(1, 2, 3))
    mse = ((pred - target) ** 2).mean().clamp_min(1e-12)
    return {"loss": float(photometric_loss(pred, target, alpha, ssim_window)), "l1": float(l1f.mean()),
            "psnr_db": float(10 * torch.log10(1.0 / mse)), "l1_per_frame": [float(v) for v in l1f]}


def _smoothness(n: torch.Tensor, image: torch.Tensor, gamma: float) -> torch.Tensor:
    """Edge-aware first-order smoothness of n [1,1,H,W] guided by image [1,3,H,W]."""
    g = image.mean(1, keepdim=True)
    dnx = (n[..., :, 1:] - n[..., :, :-1]).abs()
    dny = (n[..., 1:, :] - n[..., :-1, :]).abs()
    wx = torch.exp(-gamma * (g[..., :, 1:] - g[..., :, :-1]).abs())
    wy = torch.exp(-gamma * (g[..., 1:, :] - g[..., :-1, :]).abs())
    return (dnx * wx).mean() + (dny * wy).mean()


def _logit(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x) - torch.log1p(-x)


def _down(x: torch.Tensor, s: int) -> torch.Tensor:
    if s == 1:
        return x
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(max(1, round(h / s)), max(1, round(w / s))), mode="area")


def _up(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _odd_kernel(sigma_max: float, cap: int) -> int:
    from .render import window_size_px
    return window_size_px(sigma_max, "gaussian", cap)


# ---- renderers --------------------------------------------------------------------------------

def _render_metric(aif, rho, camera: FocalStackCamera, cap: int, psf: str, frames=None):
    from .render import render_stack
    depth = 1.0 / rho
    with torch.no_grad():
        smax = float(camera.sigma_px(depth, frames).max())
    return render_stack(aif, depth, camera, frames=frames, kernel_size=_odd_kernel(smax, cap), psf=psf)[0]


def relative_render(aif: torch.Tensor, rho: torch.Tensor, focus_positions: torch.Tensor, a: torch.Tensor,
                    b: torch.Tensor, cap: int = 31, psf: str = "gaussian", frames=None) -> torch.Tensor:
    """Unknown-focus model: σ_k = a·|ρ − ρ_k| + b (px). aif [1,3,H,W], rho [1,1,H,W] → [F,3,H,W]."""
    from .render import defocus
    if frames is not None:
        focus_positions = focus_positions[list(frames)]
    nf = focus_positions.numel()
    sigma = a * (rho - focus_positions.view(-1, 1, 1, 1)).abs() + b         # [F,1,H,W]
    with torch.no_grad():
        smax = float(sigma.max())
    img = aif.expand(nf, -1, -1, -1).contiguous()
    return defocus(img, sigma.contiguous(), kernel_size=_odd_kernel(smax, cap), psf=psf)


# ---- main entry -------------------------------------------------------------------------------

def _frame_subset(nf: int, k: int, gen: torch.Generator) -> list[int] | None:
    """A sorted random subset of k of nf frames (None: all)."""
    if not k or nf <= k:
        return None
    return sorted(torch.randperm(nf, generator=gen)[:k].tolist())


def _max_blur_px(camera: FocalStackCamera, known_focus: bool, extra) -> float:
    """Largest blur σ (px, full resolution) the model can produce over its depth range."""
    if known_focus:
        near, far = camera.effective_depth_range_m()
        return float(camera.sigma_px(torch.tensor([near, far], dtype=torch.float64).view(1, 1, 1, 2)).max())
    _, log_a, b_raw = extra
    return float((torch.exp(log_a) + F.softplus(b_raw)).detach())


def _is_two_aperture(camera: FocalStackCamera) -> bool:
    """Every frame focused at the same distance: the frames differ in f-number only."""
    return len(set(camera.focus_distances_m)) == 1


def optimize_stack(frames: torch.Tensor, camera: FocalStackCamera, config: OptimizeConfig | None = None,
                   known_focus: bool = True, init=None,
                   progress: Callable[[int, int, float], None] | None = None) -> OptimizeResult:
    """Fit inverse depth + AIF to one focal stack ``frames`` [F,3,H,W] in [0,1].

    ``known_focus=False`` switches to the relative (unknown-focus) model (see module doc).
    ``init``: an optional :class:`focalstack.classical.DFFResult` (computed when None).
    ``progress(step, total, loss)`` is called after every step.
    """
    from .classical import depth_from_focus, fuse

    cfg = config or OptimizeConfig()
    if len(cfg.levels) != len(cfg.iters):
        raise ValueError(f"levels {cfg.levels} and iters {cfg.iters} differ in length")
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"optimize_stack: frames must be [F,3,H,W], got {tuple(frames.shape)}")
    if frames.shape[0] != camera.num_frames:
        raise ValueError(f"optimize_stack: {frames.shape[0]} frames but the camera has {camera.num_frames}")
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _optimize(frames.float().detach(), camera, cfg, known_focus, init, progress,
                         depth_from_focus, fuse)
    finally:
        if cfg.threads:
            torch.set_num_threads(old_threads)


def _optimize(frames, camera, cfg, known_focus, init, progress, depth_from_focus, fuse):
    t0 = time.perf_counter()
    nf, _, h, w = frames.shape
    target = frames.unsqueeze(0)                                         # [1,F,3,H,W]
    two_aperture = _is_two_aperture(camera) and nf > 1

    # ---- initialisation -----------------------------------------------------------------------
    if two_aperture and known_focus:
        near, far = camera.effective_depth_range_m()
        d0 = cfg.two_aperture_init_m or 2.0 * camera.focus_distances_m[0]
        d0 = min(max(d0, near * 1.05), far / 1.05)
        n0 = torch.full((1, 1, h, w), ((1 / d0 - 1 / far) / (1 / near - 1 / far)))
        sharp = max(range(nf), key=lambda i: camera.frame_f_numbers()[i])
        aif0 = frames[sharp:sharp + 1]
    else:
        if init is None:
            init = depth_from_focus(target, camera, measure=cfg.measure, window=cfg.window, refine=cfg.refine)
        aif0 = init.aif.float()
        n0 = None
    if known_focus:
        near, far = camera.effective_depth_range_m()
        rho_near, rho_far = 1.0 / near, 1.0 / far
        if n0 is None:
            n0 = ((init.inv_depth.float() - rho_far) / (rho_near - rho_far)).clamp(0.02, 0.98)
    else:
        rk = torch.tensor([1.0 / d for d in camera.focus_distances_m])
        lo, hi = float(rk.min()), float(rk.max())
        span = max(hi - lo, 1e-12)
        q0 = 0.1 + 0.8 * (rk - lo) / span                                  # frame positions in (0,1)
        if n0 is None:
            n0 = 0.1 + 0.8 * ((init.inv_depth.float() - lo) / span).clamp(0, 1)
    z_full = _logit(n0, 1e-2)
    u_full = aif0.clone()

    def params_to_maps(z, u):
        return torch.sigmoid(z), u.clamp(0, 1)

    if known_focus:
        def render(n, aif, cam_s, s, frames=None):
            return _render_metric(aif, rho_far + (rho_near - rho_far) * n, cam_s, cfg.max_kernel, cfg.psf, frames)
        extra = []
    else:
        q_logit = _logit(q0, 1e-3).clone().requires_grad_(True)
        # grid search of the blur scale a (σ span over the stack, full-resolution px) at the
        # coarsest level that keeps ≥ min_level_px pixels, with b = 0.5 px
        s0 = max([lv for lv in cfg.levels if min(h, w) / lv >= cfg.min_level_px] or [1])
        tgt0 = _down(frames, s0)
        n_c, aif_c = params_to_maps(_down(z_full, s0), _down(u_full, s0))
        sub = _frame_subset(nf, cfg.frames_per_step, torch.Generator().manual_seed(0))
        tgt0 = tgt0 if sub is None else tgt0[sub]
        best = None
        for span in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0):
            a_try = span / 0.8
            with torch.no_grad():
                r = relative_render(aif_c, n_c, q0, torch.tensor(a_try / s0), torch.tensor(0.5 / s0),
                                    cfg.max_kernel, cfg.psf, frames=sub)
                loss = float(photometric_loss(r, tgt0, cfg.alpha, cfg.ssim_window))
            if best is None or loss < best[0]:
                best = (loss, a_try)
        log_a = torch.tensor(math.log(best[1])).requires_grad_(True)
        b_raw = torch.tensor(math.log(math.expm1(0.5))).requires_grad_(True)

        def render(n, aif, cam_s, s, frames=None):
            return relative_render(aif, n, torch.sigmoid(q_logit), torch.exp(log_a) / s,
                                   F.softplus(b_raw) / s, cfg.max_kernel, cfg.psf, frames)
        extra = [q_logit, log_a, b_raw]

    # reconstruction error of the initialisation at full resolution
    with torch.no_grad():
        n_i, aif_i = params_to_maps(z_full, u_full)
        rec0 = render(n_i, aif_i, camera, 1)
        before = recon_metrics(rec0, frames, cfg.alpha, cfg.ssim_window)
    init_n = n_i.clone()

    # ---- coarse to fine -------------------------------------------------------------------------
    history = []
    gen = torch.Generator().manual_seed(1)
    sigma_max = _max_blur_px(camera, known_focus, extra)
    stages = [(s, it) for s, it in zip(cfg.levels, cfg.iters)
              if s == 1 or (min(h, w) / s >= cfg.min_level_px and sigma_max / s >= cfg.min_level_sigma_px)]
    total = sum(it for _, it in stages)
    step = 0
    for s, iters in stages:
        tgt = _down(frames, s)
        cam_s = camera.resized(1.0 / s) if s != 1 else camera
        zb, ub = _down(z_full, s), _down(u_full, s)
        dz = torch.zeros_like(zb, requires_grad=True)
        du = torch.zeros_like(ub, requires_grad=True)
        groups = [{"params": [dz], "lr": cfg.lr_depth}, {"params": [du], "lr": cfg.lr_aif}]
        if extra:
            groups.append({"params": extra, "lr": cfg.lr_focus})
        opt = torch.optim.Adam(groups)
        for _ in range(iters):
            opt.zero_grad(set_to_none=True)
            n, aif = params_to_maps(zb + dz, ub + du)
            sub = _frame_subset(nf, cfg.frames_per_step, gen)
            rec = render(n, aif, cam_s, s, sub)
            loss = photometric_loss(rec, tgt if sub is None else tgt[sub], cfg.alpha, cfg.ssim_window)
            if cfg.smooth_weight > 0:
                loss = loss + cfg.smooth_weight * _smoothness(n, aif.detach(), cfg.edge_gamma)
            loss.backward()
            opt.step()
            step += 1
            history.append((s, float(loss.detach())))
            if progress:
                progress(step, total, history[-1][1])
        with torch.no_grad():
            z_full = z_full + _up(dz.detach(), (h, w))
            if s == 1 or cfg.transfer_aif:
                u_full = u_full + _up(du.detach(), (h, w))

    with torch.no_grad():
        n, aif = params_to_maps(z_full, u_full)
        rec = render(n, aif, camera, 1)
        after = recon_metrics(rec, frames, cfg.alpha, cfg.ssim_window)
    seconds = time.perf_counter() - t0
    if known_focus:
        rho = rho_far + (rho_near - rho_far) * n
        rho_i = rho_far + (rho_near - rho_far) * init_n
        return OptimizeResult(depth_m=(1.0 / rho)[0, 0], inv_depth=rho[0, 0], aif=aif[0], rendered=rec,
                              depth_kind="metric", recon_before=before, recon_after=after, seconds=seconds,
                              history=history, init_depth_m=(1.0 / rho_i)[0, 0], init_inv_depth=rho_i[0, 0])
    qk = torch.sigmoid(q_logit.detach())
    return OptimizeResult(depth_m=None, inv_depth=n[0, 0], aif=aif[0], rendered=rec, depth_kind="relative_inverse",
                          recon_before=before, recon_after=after, seconds=seconds, history=history,
                          focus_positions=[float(v) for v in qk], blur_scale_px=float(torch.exp(log_a.detach())),
                          blur_offset_px=float(F.softplus(b_raw.detach())), init_inv_depth=init_n[0, 0])
