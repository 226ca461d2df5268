"""Focus measures and AIF fusion."""

import pytest
import torch
import torch.nn.functional as F

from focalstack.classical import FAMILIES, FOCUS_MEASURES, focus_measure, fuse, local_mean, pyramid_fusion, soft_fusion


def _texture(h=48, w=48, seed=0, ch=3):
    g = torch.Generator().manual_seed(seed)
    t = torch.zeros(1, ch, h, w)
    for s in (1, 2, 4):
        n = torch.rand(1, ch, h // s, w // s, generator=g)
        t += F.interpolate(n, size=(h, w), mode="bilinear", align_corners=False) / 3
    return t


def _blur(x, sigma=1.5):
    import kornia
    k = 2 * int(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="replicate")


def test_registry_covers_families():
    assert len(FOCUS_MEASURES) >= 10
    assert {"laplacian", "gradient", "statistics", "transform", "contrast"} <= set(FAMILIES.values())
    for name in ("lapm", "lapv", "lapd", "teng", "tenv", "grae", "glva", "sml", "haar", "dcte", "cont"):
        assert name in FOCUS_MEASURES


@pytest.mark.parametrize("name", sorted(FOCUS_MEASURES))
@pytest.mark.parametrize("aggregate", ["box", "gaussian"])
def test_sharp_beats_blurred(name, aggregate):
    sharp = _texture()
    blurred = _blur(sharp)
    fs = focus_measure(sharp, name, window=7, aggregate=aggregate)
    fb = focus_measure(blurred, name, window=7, aggregate=aggregate)
    assert fs.shape == (1, 1, 48, 48)
    assert torch.isfinite(fs).all() and (fs >= 0).all()
    assert fs.mean() > 1.2 * fb.mean(), (name, float(fs.mean()), float(fb.mean()))
    # and pixelwise in most places
    assert (fs > fb).float().mean() > 0.8


def test_shapes_and_errors():
    x = torch.rand(2, 4, 3, 20, 24)
    assert focus_measure(x, "teng").shape == (2, 4, 1, 20, 24)
    assert focus_measure(torch.rand(5, 1, 20, 24), "glva", window=3).shape == (5, 1, 20, 24)
    with pytest.raises(ValueError, match="unknown focus measure"):
        focus_measure(x, "nope")
    with pytest.raises(ValueError, match="odd"):
        local_mean(torch.rand(1, 1, 8, 8), 4)


def test_local_mean_constant():
    x = torch.full((1, 1, 10, 12), 0.3)
    for agg in ("box", "gaussian"):
        assert torch.allclose(local_mean(x, 5, agg), x, atol=1e-6)


def test_local_mean_box_opencv_path_equals_the_running_sums():
    """A CPU float32 box mean that needs no gradient goes through OpenCV: the same values as the
    differentiable running-sum path, replicated borders included (a window wider than the image too)."""
    from focalstack.classical.focus_measures import _pad, box_mean
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 17, 29, generator=g)
    for k in (3, 7, 15, 41):
        assert torch.allclose(local_mean(x, k), box_mean(_pad(x, k // 2), k), atol=2e-6), k
    xg = x.clone().requires_grad_()
    local_mean(xg, 5, "box").sum().backward()          # a tensor that needs a gradient keeps torch's path
    assert xg.grad is not None and torch.allclose(xg.grad[..., 5:-5, 5:-5], torch.ones(2, 3, 7, 19))


def _two_focus_stack():
    sharp = _texture(48, 64, seed=3)
    blurred = _blur(sharp, 2.0)
    left = torch.zeros(1, 1, 48, 64)
    left[..., :32] = 1
    f0 = sharp * left + blurred * (1 - left)          # left half in focus
    f1 = blurred                                      # nothing in focus
    f2 = sharp * (1 - left) + blurred * left          # right half in focus
    return torch.stack([f0[0], f1[0], f2[0]]), sharp[0]


@pytest.mark.parametrize("method", ["soft", "pyramid"])
def test_fusion_picks_the_sharp_frame(method):
    frames, sharp = _two_focus_stack()
    aif = fuse(frames, method)
    assert aif.shape == sharp.shape
    inner = (slice(None), slice(4, -4), slice(4, -4))
    err = (aif - sharp)[inner].abs().mean()
    best_single = min((f - sharp)[inner].abs().mean() for f in frames)
    assert err < 0.5 * best_single, (float(err), float(best_single))


def test_soft_fusion_temperature_zero_is_argmax_and_batched():
    frames, sharp = _two_focus_stack()
    a = soft_fusion(frames.unsqueeze(0), temperature=0.0)
    assert a.shape == (1, 3, 48, 64)
    b = pyramid_fusion(frames.unsqueeze(0).repeat(2, 1, 1, 1, 1))
    assert b.shape == (2, 3, 48, 64) and b.min() >= 0 and b.max() <= 1
