"""All-in-focus (AIF) fusion of a focal stack.

* :func:`soft_fusion`: per-pixel soft selection, weights = softmax over frames of the focus
  measure normalised by its per-pixel maximum, divided by a temperature (→ 0: hard argmax).
* :func:`pyramid_fusion`: Laplacian-pyramid blend; every detail level takes, per pixel, the
  coefficient of the frame with the largest (locally averaged) absolute detail energy; the
  coarsest (Gaussian) level is the soft-fusion average, its weights area-averaged to that level
  *before* they are normalised over the frames (area(w_k) / Σ_j area(w_j), w_k the softmax
  numerators): so the streaming path (:mod:`focalstack.classical.streaming`), which sees one frame
  at a time, computes exactly the same fusion. Pyramids via ``kornia.geometry.pyrdown``
  and bilinear up-sampling (exact reconstruction for any size).

Frames: ``[B,F,C,H,W]`` or ``[F,C,H,W]`` in [0,1]; output ``[B,C,H,W]`` / ``[C,H,W]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .focus_measures import DEFAULT_MEASURE, DEFAULT_WINDOW, focus_measure, local_mean

__all__ = ["soft_fusion", "pyramid_fusion", "fuse", "FUSIONS"]


def _batched(frames: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if frames.dim() == 4:
        return frames.unsqueeze(0), True
    if frames.dim() != 5:
        raise ValueError(f"fusion: frames must be [B,F,C,H,W] or [F,C,H,W], got {tuple(frames.shape)}")
    return frames, False


def soft_weights(focus: torch.Tensor, temperature: float = 0.05, normalise: bool = True) -> torch.Tensor:
    """[B,F,1,H,W] focus → softmax weights over F of focus / (max_F focus · temperature);
    ``normalise=False``: the softmax numerators exp((focus / max_F focus − 1) / temperature) ∈ (0, 1]."""
    if temperature <= 0:
        idx = focus.argmax(1, keepdim=True)
        return torch.zeros_like(focus).scatter_(1, idx, 1.0)
    norm = focus / (focus.amax(1, keepdim=True) + 1e-12)
    if not normalise:
        return torch.exp((norm - 1.0) / temperature)
    return torch.softmax(norm / temperature, dim=1)


def _focus_of(x: torch.Tensor, focus: torch.Tensor | None, measure: str, window: int) -> torch.Tensor:
    """[B,F,1,H,W] focus of the batched frames ``x``: the given one ([F,1,H,W] gets its batch axis) or
    ``measure`` / ``window`` computed."""
    if focus is None:
        return focus_measure(x, measure, window)
    return focus.unsqueeze(0) if focus.dim() == 4 else focus


def soft_fusion(frames: torch.Tensor, focus: torch.Tensor | None = None, temperature: float = 0.05,
                measure: str = DEFAULT_MEASURE, window: int = DEFAULT_WINDOW) -> torch.Tensor:
    """Soft per-pixel selection of the sharpest frame. ``focus`` [B,F,1,H,W] (computed if None)."""
    x, squeeze = _batched(frames)
    focus = _focus_of(x, focus, measure, window)
    out = (soft_weights(focus, temperature) * x).sum(1)
    return out[0] if squeeze else out


def _pyr_down(x: torch.Tensor) -> torch.Tensor:
    import kornia
    return kornia.geometry.transform.pyrdown(x, border_type="replicate")


def _up(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def pyramid_fusion(frames: torch.Tensor, levels: int | None = None, energy_window: int = 5,
                   temperature: float = 0.05, measure: str = DEFAULT_MEASURE,
                   window: int = DEFAULT_WINDOW, focus: torch.Tensor | None = None) -> torch.Tensor:
    """Laplacian-pyramid fusion with max-abs detail selection (consistent across channels).
    ``focus`` [B,F,1,H,W]: the focus measure of the base level's soft weights (computed with
    ``measure`` / ``window`` if None; DFF passes its own focus volume)."""
    x, squeeze = _batched(frames)
    b, f, c, h, w = x.shape
    if levels is None:
        levels = max(1, min(5, int(torch.log2(torch.tensor(min(h, w) / 8.0)).floor().item()) + 1))
    g = x.reshape(b * f, c, h, w)
    gauss = [g]
    for _ in range(levels):
        if min(gauss[-1].shape[-2:]) < 4:
            break
        gauss.append(_pyr_down(gauss[-1]))
    focus = _focus_of(x, focus, measure, window)
    base_w = soft_weights(focus, temperature, normalise=False)                            # [B,F,1,H,W]
    top = gauss[-1].view(b, f, c, *gauss[-1].shape[-2:])
    bw = F.interpolate(base_w.reshape(b * f, 1, h, w), size=top.shape[-2:], mode="area").view(b, f, 1, *top.shape[-2:])
    out = (bw / bw.sum(1, keepdim=True) * top).sum(1)                                        # [B,C,h',w']
    for lvl in range(len(gauss) - 2, -1, -1):
        gi = gauss[lvl]
        lap = (gi - _up(gauss[lvl + 1], gi.shape[-2:])).view(b, f, c, *gi.shape[-2:])
        energy = local_mean(lap.abs().sum(2).reshape(b * f, 1, *gi.shape[-2:]), energy_window, "box")
        idx = energy.view(b, f, 1, *gi.shape[-2:]).argmax(1, keepdim=True)                 # [B,1,1,h,w]
        detail = torch.gather(lap, 1, idx.expand(b, 1, c, *gi.shape[-2:]))[:, 0]
        out = _up(out, gi.shape[-2:]) + detail
    out = out.clamp(0, 1)
    return out[0] if squeeze else out


FUSIONS = {"soft": soft_fusion, "pyramid": pyramid_fusion}


def fuse(frames: torch.Tensor, method: str = "pyramid", **kw) -> torch.Tensor:
    if method not in FUSIONS:
        raise ValueError(f"unknown fusion {method!r}; known: {', '.join(FUSIONS)}")
    return FUSIONS[method](frames, **kw)
