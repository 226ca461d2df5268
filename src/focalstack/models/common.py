"""Building blocks and input conventions shared by several models (no model imports another
model's names): depth ranges, focus positions in inverse depth, the depth-from-logit map, padding
to the encoder's multiple, the conv blocks (plain and conv-BatchNorm-ReLU), parameter count. The
input check every model shares is the contract's (:mod:`focalstack.models.base`)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["depth_range_tensor", "normalised_focus", "depth_from_logit", "pad_to_multiple",
           "conv", "ConvBlock", "conv_bn_relu", "count_parameters"]


def conv(cin: int, cout: int, k: int = 3, dims: int = 2) -> nn.Module:
    """A k×k (×k for ``dims`` = 3) 'same' convolution, Kaiming-initialised for ReLU, zero bias."""
    layer = (nn.Conv2d if dims == 2 else nn.Conv3d)(cin, cout, k, padding=k // 2)
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)
    return layer


class ConvBlock(nn.Sequential):
    """conv3×3 → ReLU → conv3×3 → ReLU (3×3×3 with ``dims`` = 3)."""

    def __init__(self, cin: int, cout: int, dims: int = 2):
        super().__init__(conv(cin, cout, dims=dims), nn.ReLU(inplace=True), conv(cout, cout, dims=dims),
                         nn.ReLU(inplace=True))


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """k×k convolution (no bias, Kaiming-initialised for ReLU, 'same' padding for stride 1) →
    BatchNorm → ReLU (DDFS's and Gur & Wolf's layer)."""
    layer = nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k // 2), dilation=dilation, bias=False)
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    return nn.Sequential(layer, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def depth_range_tensor(depth_range_m, batch: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(near, far) as floats, a [2] tensor or a per-sample [B,2] tensor → [B,2] tensor (metres)."""
    r = torch.as_tensor(depth_range_m, dtype=dtype, device=device)
    if r.dim() == 1:
        r = r.view(1, 2).expand(batch, 2)
    if r.shape != (batch, 2):
        raise ValueError(f"depth_range_m must be (near, far) or [B,2] = [{batch},2], got {tuple(r.shape)}")
    if r.device.type == "cpu" and not bool(((r[:, 0] > 0) & (r[:, 1] > r[:, 0])).all()):  # no GPU sync
        raise ValueError(f"depth_range_m must satisfy 0 < near < far, got {r.tolist()}")
    return r


def normalised_focus(focus_distances_m: torch.Tensor, depth_range_m: torch.Tensor) -> torch.Tensor:
    """Focus distances [B,F] (metres) → position in inverse depth inside [near, far], mapped to [−1, 1]
    (+1 = near, −1 = far; values outside when the focus lies outside the range)."""
    inv_near = 1.0 / depth_range_m[:, 0:1]
    inv_far = 1.0 / depth_range_m[:, 1:2]
    u = (1.0 / focus_distances_m - inv_far) / (inv_near - inv_far)
    return 2.0 * u - 1.0


def depth_from_logit(logit: torch.Tensor, depth_range_m: torch.Tensor) -> torch.Tensor:
    """Logit [B,1,H,W] → metric depth in [near, far]: 1/d = 1/far + sigmoid(logit)·(1/near − 1/far)."""
    inv_near = (1.0 / depth_range_m[:, 0]).view(-1, 1, 1, 1)
    inv_far = (1.0 / depth_range_m[:, 1]).view(-1, 1, 1, 1)
    return 1.0 / (inv_far + torch.sigmoid(logit) * (inv_near - inv_far))


def pad_to_multiple(x: torch.Tensor, m: int) -> tuple[torch.Tensor, int, int]:
    """Pad [..., H, W] at the bottom/right to multiples of ``m`` (reflect, else replicate);
    returns (padded, H, W) so the caller can crop back."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return x, h, w
    mode = "reflect" if (ph < h and pw < w) else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), h, w


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
