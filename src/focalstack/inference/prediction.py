"""What a prediction method returns (:class:`Prediction`); what it reads is in :mod:`.options`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["Prediction"]


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
