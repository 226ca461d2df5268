"""The fused SSIM loss against kornia's ssim_loss (value and both gradients), and gradcheck."""

import numpy as np
import pytest
import torch

from focalstack.ssim import gaussian_window, ssim_loss, ssim_loss_reference

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_window_is_kornias():
    from kornia.filters import get_gaussian_kernel1d
    for k in (3, 7, 11):
        assert np.allclose(gaussian_window(k), get_gaussian_kernel1d(k, 1.5, dtype=torch.float64)[0].numpy(),
                           atol=1e-15)


@pytest.mark.parametrize("shape,window", [((2, 3, 17, 23), 7), ((3, 1, 12, 30), 11), ((1, 2, 6, 5), 7)])
def test_value_and_gradients_match_kornia(shape, window):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(shape, generator=g, dtype=torch.float64)
    # correlated target: SSIM spans a realistic range, not only ≈ 0
    y0 = (0.7 * x0 + 0.3 * torch.rand(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    out = {}
    for name, fn in (("fused", ssim_loss), ("kornia", ssim_loss_reference)):
        x, y = x0.clone().requires_grad_(True), y0.clone().requires_grad_(True)
        v = fn(x, y, window)
        v.backward()
        out[name] = (float(v.detach()), x.grad, y.grad)
    assert out["fused"][0] == pytest.approx(out["kornia"][0], rel=1e-12, abs=1e-14)
    for i in (1, 2):
        assert torch.allclose(out["fused"][i], out["kornia"][i], rtol=1e-9, atol=1e-13)


def test_float32_matches_kornia_closely():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, 40, 52, generator=g, requires_grad=True)
    y = torch.rand(5, 3, 40, 52, generator=g)
    v = ssim_loss(x, y, 7)
    v.backward()
    x2 = x.detach().clone().requires_grad_(True)
    r = ssim_loss_reference(x2, y, 7)
    r.backward()
    assert float(v) == pytest.approx(float(r), rel=1e-5)
    assert torch.allclose(x.grad, x2.grad, rtol=1e-3, atol=1e-9)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 2, 7, 9, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 2, 7, 9, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: ssim_loss(a, b, 5), (x, y))


def test_identical_images_have_zero_loss_and_gradient():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    v = ssim_loss(x, x.detach(), 7)
    v.backward()
    assert float(v) < 1e-9 and float(x.grad.abs().max()) < 1e-9


def test_falls_back_to_kornia_where_fused_does_not_apply():
    from focalstack.ssim import _fused_ok
    x = torch.rand(1, 3, 16, 16)
    assert _fused_ok(x, x, 7)
    h = x.to(torch.bfloat16)
    assert not _fused_ok(h, h, 7)
    assert float(ssim_loss(h, h * 0.5, 7)) == pytest.approx(float(ssim_loss_reference(h, h * 0.5, 7)))


def test_recomputed_moments_give_the_same_gradient(monkeypatch):
    """Large inputs do not keep the moment maps for the backward: both paths agree exactly."""
    import focalstack.ssim as fs
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(2, 3, 20, 24, generator=g, dtype=torch.float64)
    y0 = torch.rand(2, 3, 20, 24, generator=g, dtype=torch.float64)
    grads = []
    for limit in (fs.KEEP_MOMENTS_MAX_BYTES, 0):
        monkeypatch.setattr(fs, "KEEP_MOMENTS_MAX_BYTES", limit)
        x, y = x0.clone().requires_grad_(True), y0.clone().requires_grad_(True)
        fs.ssim_loss(x, y, 7).backward()
        grads.append((x.grad, y.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
