import pytest
import torch
import torch.nn.functional as F

from focalstack.losses import (LossConfig, aif_l1_loss, coarse_aif, compute_losses, depth_l1_loss, log_blur,
                               reconstruction_loss, smoothness_loss, valid_depth_mask)
from focalstack.optics import CameraBatch, get_preset
from focalstack.render import render_stack

K = 9


def _scene(b=2, h=32, w=36, seed=0):
    g = torch.Generator().manual_seed(seed)
    tex = F.interpolate(torch.rand(b, 3, h // 4, w // 4, generator=g), size=(h, w), mode="bilinear")
    aif = (0.5 * tex + 0.5 * torch.rand(b, 3, h, w, generator=g)).clamp(0, 1)
    depth = torch.full((b, 1, h, w), 0.6)
    depth[..., :, w // 2:] = 3.0
    cam = CameraBatch.from_cameras([get_preset("procedural")] * b)
    frames = render_stack(aif, depth, cam, kernel_size=K)
    return aif, depth, frames, cam


def test_reconstruction_zero_for_truth_larger_for_wrong_depth():
    aif, depth, frames, cam = _scene()
    good, rendered = reconstruction_loss(aif, depth, frames, cam, kernel_size=K)
    assert rendered.shape == frames.shape
    assert float(good) < 1e-6
    for wrong in (torch.full_like(depth, 1.2), depth.flip(-1), torch.full_like(depth, 0.6)):
        bad, _ = reconstruction_loss(aif, wrong, frames, cam, kernel_size=K)
        assert float(bad) > 1e-3 + 100 * float(good)


def test_reconstruction_gradient_points_to_the_truth():
    aif, depth, frames, cam = _scene()
    d = torch.full_like(depth, 1.2).requires_grad_()
    loss, _ = reconstruction_loss(aif, d, frames, cam, kernel_size=K)
    loss.backward()
    g = d.grad[..., 4:-4, 4:-4]
    w = depth.shape[-1]
    # left half is at 0.6 m (nearer: gradient descent lowers d ⇒ grad > 0), right half at 3 m
    assert g[..., : w // 2 - 8].mean() > 0 and g[..., w // 2 + 4:].mean() < 0


def test_coarse_aif_picks_the_focused_frame():
    aif, depth, frames, cam = _scene()
    coarse, idx = coarse_aif(frames, depth, cam)
    w = depth.shape[-1]
    assert (idx[..., : w // 2] == 0).all() and (idx[..., w // 2:] == 4).all()  # focus 0.6 m and 3.0 m
    assert torch.equal(coarse[..., : w // 2], frames[:, 0, :, :, : w // 2])
    assert torch.equal(coarse[..., w // 2:], frames[:, 4, :, :, w // 2:])
    assert not coarse.requires_grad
    assert (coarse - aif).abs().mean() < (frames.mean(1) - aif).abs().mean()


def test_blur_measure_and_smoothness():
    aif, depth, frames, cam = _scene()
    assert float(log_blur(aif)) < float(log_blur(frames[:, 2]))  # sharp < blurred
    assert float(smoothness_loss(torch.full_like(depth, 2.0), aif)) == 0.0
    s1, s2 = smoothness_loss(depth, aif), smoothness_loss(depth * 7.0, aif)
    assert float(s1) > 0 and torch.allclose(s1, s2)  # scale-invariant
    flat = torch.full_like(aif, 0.5)
    assert float(smoothness_loss(depth, flat)) > float(smoothness_loss(depth, aif * 0 + (depth > 1).float()))


def test_supervised_terms_are_masked():
    pred = torch.ones(2, 1, 4, 4)
    gt = torch.full((2, 1, 4, 4), 2.0)
    gt[0, 0, 0, 0] = 0.0
    gt[0, 0, 0, 1] = float("nan")
    gt[1] = 100.0
    has = torch.tensor([True, False])
    m = valid_depth_mask(gt, has)
    assert int(m.sum()) == 14
    assert float(depth_l1_loss(pred, gt, m)) == pytest.approx(1.0)
    assert float(aif_l1_loss(torch.zeros(2, 3, 2, 2), torch.stack([torch.ones(3, 2, 2), 9 * torch.ones(3, 2, 2)]),
                             has)) == pytest.approx(1.0)


def test_compute_losses_modes_and_ablation():
    aif, depth, frames, cam = _scene()
    d = depth.clone().requires_grad_()
    out = {"depth_m": d, "aif": aif.clone().requires_grad_()}
    batch = {"frames": frames, "camera": cam, "depth": depth, "has_depth": torch.tensor([True, True]),
             "aif": aif, "has_aif": torch.tensor([True, True])}
    total, terms = compute_losses(out, batch, LossConfig(kernel_size=K))
    assert set(terms) == {"recon", "aif_guide", "aif_sharp", "smooth", "total"}
    total.backward()
    assert d.grad is not None
    _, terms = compute_losses(out, batch, LossConfig(kernel_size=K, smooth=0, aif_sharp=0))
    assert set(terms) == {"recon", "aif_guide", "total"}
    extras = {}
    _, terms = compute_losses(out, batch, LossConfig(supervision="depth", kernel_size=K), extras)
    assert set(terms) == {"depth_l1", "aif_guide", "total"} and float(terms["depth_l1"]) == 0.0
    assert extras["coarse_aif"].shape == aif.shape
    _, terms = compute_losses(out, batch, LossConfig(supervision="aif", kernel_size=K))
    assert set(terms) == {"recon", "smooth", "aif_l1", "total"} and float(terms["recon"]) < 1e-6
    with pytest.raises(ValueError, match="depth"):
        compute_losses(out, {**batch, "has_depth": torch.tensor([False, False])},
                       LossConfig(supervision="depth", kernel_size=K))
    with pytest.raises(ValueError, match="supervision"):
        LossConfig(supervision="gt")


def test_default_photometric_loss_finds_the_true_blur_where_ssim_prefers_less():
    """Why the default SSIM share is 0 (losses.photometric_loss): a noisy frame blurred by σ = 2 px,
    re-rendered from an AIF estimate that carries noise too. L1 alone is minimal at the true blur;
    the core paper's SSIM share (0.85) prefers less blur, the noise energy it keeps matching the frame's."""
    from focalstack.losses import photometric_loss
    from focalstack.render import defocus
    g = torch.Generator().manual_seed(0)
    clean = F.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(96, 96), mode="bilinear", align_corners=False)
    blur = lambda x, s: defocus(x, torch.full((1, 1, 96, 96), s), kernel_size=21)   # noqa: E731
    frame = blur(clean, 2.0) + 0.03 * torch.randn(clean.shape, generator=g)
    aif = clean + 0.03 * torch.randn(clean.shape, generator=g)
    sigmas = [1.0 + 0.1 * i for i in range(21)]

    def best(alpha=None):
        kw = {} if alpha is None else {"alpha": alpha}
        losses = [float(photometric_loss(blur(aif, s), frame, **kw)) for s in sigmas]
        return sigmas[min(range(len(sigmas)), key=losses.__getitem__)]

    assert abs(best() - 2.0) < 0.05
    assert best(0.85) < 1.85


def test_training_renders_each_frame_with_its_own_window_by_default():
    """LossConfig.render_window "per_image" (the default): the re-rendered stack is each frame of
    each stack rendered with the window of its own largest σ, at most the run's kernel_size —
    not the run's window for all (a batch of a phone and a DSLR stack)."""
    from focalstack.optics import FocalStackCamera
    from focalstack.render import defocus, light, window_size_px
    assert LossConfig().render_window == "per_image"
    with pytest.raises(ValueError, match="render_window"):
        LossConfig(render_window="tiles")
    phone = FocalStackCamera.from_dict({"focal_length_m": 0.006, "f_number": 1.8, "pixel_size_m": 3e-5,
                                        "focus_distances_m": [0.4, 1.0], "depth_range_m": [0.3, 5.0]})
    dslr = FocalStackCamera.from_dict({"focal_length_m": 0.035, "f_number": 2.8, "pixel_size_m": 6e-5,
                                       "focus_distances_m": [0.9, 1.2], "depth_range_m": [0.5, 5.0]})
    cam = CameraBatch.from_cameras([phone, dslr])
    g = torch.Generator().manual_seed(0)
    aif = torch.rand(2, 3, 24, 26, generator=g)
    depth = 0.8 + 0.8 * torch.rand(2, 1, 24, 26, generator=g)        # σ ≤ 1 px: windows ≤ 7 px
    frames = torch.rand(2, 2, 3, 24, 26, generator=g)
    per, rendered = reconstruction_loss(aif, depth, frames, cam, kernel_size=21, render_window="per_image")
    _, shared = reconstruction_loss(aif, depth, frames, cam, kernel_size=21)
    sigma = cam.sigma_px(depth).reshape(4, 1, 24, 26)
    ks = [window_size_px(float(s.max()), "gaussian", 21) for s in sigma]
    assert ks[0] < ks[-1] <= 21
    img = aif.unsqueeze(1).expand(2, 2, 3, 24, 26).reshape(4, 3, 24, 26)
    want = light.from_linear(defocus(light.to_linear(img), sigma, kernel_size=ks)).view(2, 2, 3, 24, 26)
    torch.testing.assert_close(rendered, want, rtol=0, atol=1e-6)
    assert (rendered - shared).abs().max() > 1e-5          # the windows really differ
    extras = {}
    _, terms = compute_losses({"depth_m": depth, "aif": aif}, {"frames": frames, "camera": cam},
                              LossConfig(kernel_size=21), extras=extras)
    torch.testing.assert_close(extras["rendered"], want, rtol=0, atol=1e-6)
    torch.testing.assert_close(terms["recon"], per)
