"""What a prediction method returns (:class:`Prediction`) and the options every method reads
(:class:`PredictOptions`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["Prediction", "PredictOptions", "sample_focus_known"]


@dataclass
class Prediction:
    """depth_m: [H,W] (metres, or relative inverse depth if extras["depth_kind"] == "relative_inverse");
    aif: [3,H,W] in [0,1]; extras: JSON-able values for meta.json, plus optionally "rendered"
    ([F,3,H,W] re-rendered stack, used for the reconstruction error instead of render_stack)."""

    depth_m: torch.Tensor
    aif: torch.Tensor
    extras: dict = field(default_factory=dict)

    @property
    def depth_kind(self) -> str:
        return self.extras.get("depth_kind", "metric")


@dataclass
class PredictOptions:
    """Options every predictor reads (unknown ones are ignored by methods that do not use them)."""

    measure: str = "lapm"
    window: int = 9
    interp: str = "parabolic"
    refine: str | None = "guided"
    fusion: str = "pyramid"
    iters_scale: float = 1.0            # optimize: × the default iterations
    threads: int | None = None
    focus_known: bool | None = None     # None: the sample camera's focus_known
    checkpoint: str | None = None       # net
    refine_steps: int = 0               # net: test-time optimisation steps
    tile: int | None = None             # net
    scale: float | None = None          # net
    device: str = "cpu"
    progress: bool = False


def sample_focus_known(sample, opts) -> bool:
    """Whether the stack's focus distances are real: ``opts.focus_known`` when set, else the
    camera's ``focus_known``."""
    known = getattr(opts, "focus_known", None)
    return bool(known) if known is not None else sample.camera.focus_known


def _opt(opts, name, default):
    v = getattr(opts, name, default) if opts is not None else default
    return default if v is None and default is not None else v
