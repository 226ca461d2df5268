"""focalstack.srgb: the fused sRGB transfer function equals the exact IEC 61966-2-1 formula to 4e-6,
its gradient is the derivative of what it computes (and within 1 % of the exact derivative), it
clamps like the formula, and the encoding module and the optics route float32 CPU tensors to it."""

import numpy as np
import pytest
import torch

from focalstack import srgb
from focalstack.data import encoding

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _exact(which: str, x: torch.Tensor) -> torch.Tensor:
    f = encoding.linear_to_srgb if which == "encode" else encoding.srgb_to_linear
    return f(x.double().clamp(0, 1))                     # float64: the exact formula


def _exact_slope(which: str, x: torch.Tensor) -> torch.Tensor:
    x = x.double().clamp(1e-9, 1)
    if which == "encode":
        return torch.where(x <= 0.0031308, torch.full_like(x, 12.92), 1.055 / 2.4 * x ** (1 / 2.4 - 1))
    return torch.where(x <= 0.04045, torch.full_like(x, 1 / 12.92), 2.4 / 1.055 * ((x + 0.055) / 1.055) ** 1.4)


@pytest.mark.parametrize("which", ["encode", "decode"])
def test_fused_transfer_equals_the_exact_formula(which):
    fn = getattr(srgb, which)
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(300_000, generator=g),                       # two tasks' worth and more
                   torch.linspace(0, 0.06, 200_001),                        # both knees, densely
                   torch.tensor([0.0, 1.0, 0.0031308, 0.04045, -0.3, 1.7])])
    y = fn(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert float((y.double() - _exact(which, x)).abs().max()) < 4e-6
    assert y[-2] == fn(torch.zeros(1))[0] and y[-1] == fn(torch.ones(1))[0]           # clamped
    assert torch.isnan(fn(torch.tensor([float("nan"), 0.5])))[0]                      # NaN stays NaN
    # any shape, non-contiguous input
    z = torch.rand(3, 5, 7, generator=g).transpose(0, 2)
    torch.testing.assert_close(fn(z), fn(z.contiguous()), rtol=0, atol=0)


@pytest.mark.parametrize("which", ["encode", "decode"])
def test_fused_transfer_gradient(which):
    fn = getattr(srgb, which)
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.rand(5000, generator=g), torch.tensor([-0.2, 1.3])]).requires_grad_()
    w = torch.rand(x.shape, generator=g)
    (fn(x) * w).sum().backward()
    n = srgb.TABLE_SIZE
    # the derivative of the interpolant: the slope of each point's segment between float32 table values
    xd = x.detach().double()
    k = (xd.clamp(0, 1) * n).floor().clamp(max=n - 1)
    secant = (_exact(which, (k + 1) / n).float().double() - _exact(which, k / n).float().double()) * n
    inside = (xd >= 0) & (xd <= 1)
    want = torch.where(inside, secant, torch.zeros_like(secant)) * w.double()
    torch.testing.assert_close(x.grad.double(), want, rtol=1e-5, atol=1e-6)
    assert x.grad[-2] == 0 and x.grad[-1] == 0                      # clamped: no gradient outside [0,1]
    # and within 1 % of the exact curve's derivative (away from the encode's kink, where no
    # derivative exists)
    away = inside & ((xd - 0.0031308).abs() > 2 / n)
    rel = (x.grad.double() / w.double() - _exact_slope(which, xd)).abs() / _exact_slope(which, xd)
    assert float(rel[away].max()) < 0.01


def test_encoding_and_the_optics_use_the_fused_op_for_float32_cpu_tensors(monkeypatch):
    calls = []
    real = srgb._transfer
    monkeypatch.setattr(srgb, "_transfer", lambda x, which: calls.append(which) or real(x, which))
    x = torch.rand(2, 3, 8, 8)
    encoding.linear_to_srgb(x)
    encoding.srgb_to_linear(x)
    assert calls == ["encode", "decode"]
    encoding.linear_to_srgb(x.double())                             # float64: the exact formula
    encoding.srgb_to_linear(x.numpy())                              # numpy: the exact formula
    assert calls == ["encode", "decode"]
    from focalstack.optics import get_preset
    from focalstack.render import light, render_stack
    monkeypatch.setattr(light, "PHYSICS_LIGHT", "linear")
    render_stack(x[:1], torch.full((1, 1, 8, 8), 1.0), get_preset("procedural"), kernel_size=5)
    assert calls[2:] == ["decode", "encode"]
    # values as through the exact formula
    y = encoding.linear_to_srgb(x)
    np.testing.assert_allclose(y.numpy(), encoding.linear_to_srgb(x.numpy().astype(np.float64)), atol=4e-6)
