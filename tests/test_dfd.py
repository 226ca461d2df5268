import math

import pytest
import torch

from focalstack.classical.dfd import (depth_from_defocus, gaussian_blur_per_plane, hypothesis_sigmas,
                                      inverse_depth_hypotheses, relative_blur_cost)
from focalstack.optics import CameraBatch, FocalStackCamera, ThinLens
from focalstack.render import render_stack


def _cam(fd=(1.0, 1.4, 2.0, 3.0, 4.5), f=0.035, n=2.8, px=7.2e-5, rng=(0.5, 10.0), f_numbers=None):
    return FocalStackCamera(ThinLens(f, n, px), tuple(fd), f_numbers=f_numbers, depth_range_m=rng)


def _plane(depth_m, cam, hw=72, seed=0):
    g = torch.Generator().manual_seed(seed)
    aif = torch.nn.functional.avg_pool2d(torch.rand(1, 3, hw, hw, generator=g), 3, 1, 1)
    return render_stack(aif, torch.full((1, 1, hw, hw), float(depth_m)), cam)


def test_hypotheses_uniform_in_inverse_depth():
    inv = inverse_depth_hypotheses(torch.tensor([[0.5, 10.0], [1.0, 2.0]]), 5)
    assert inv.shape == (2, 5)
    assert torch.allclose(inv[:, 0], torch.tensor([0.1, 0.5])) and torch.allclose(inv[:, -1], torch.tensor([2.0, 1.0]))
    d = inv.diff(dim=1)
    assert torch.allclose(d, d[:, :1].expand_as(d))
    with pytest.raises(ValueError):
        inverse_depth_hypotheses(torch.tensor([[0.5, 10.0]]), 1)


def test_hypothesis_sigmas_match_the_camera():
    cam = _cam()
    inv = inverse_depth_hypotheses(torch.tensor([[0.5, 10.0]]), 7)
    s = hypothesis_sigmas(CameraBatch.from_cameras([cam], dtype=torch.float64), inv.double())
    ref = cam.sigma_px((1.0 / inv.double()).view(7, 1, 1, 1))[:, :, 0, 0, 0].T      # [F,J]
    assert s.shape == (1, 5, 7) and torch.allclose(s[0], ref)


def test_gaussian_blur_per_plane_is_a_normalised_gaussian():
    x = torch.zeros(1, 3, 41, 41)
    x[..., 20, 20] = 1.0
    sig = torch.tensor([[0.0, 1.0, 2.5]])
    y = gaussian_blur_per_plane(x, sig)
    assert torch.allclose(y[0, 0], x[0, 0])                              # σ = 0: identity
    for p, s in ((1, 1.0), (2, 2.5)):
        assert abs(float(y[0, p].sum()) - 1.0) < 1e-5
        r = torch.arange(41.0) - 20
        g = torch.exp(-0.5 * (r / s) ** 2) * (r.abs() <= 8)          # window ±⌈3·max σ⌉ = ±8 px
        g = g / g.sum()
        assert torch.allclose(y[0, p], torch.outer(g, g), atol=1e-6)


def test_gaussian_blur_per_plane_opencv_path_equals_the_convolution():
    """Without gradients (the cost volume) the planes go through OpenCV: the same blur as the
    differentiable depthwise convolution, reflect borders included (radius clamped on small images)."""
    g = torch.Generator().manual_seed(0)
    for shape, radius in (((2, 7, 23, 31), None), ((1, 4, 9, 12), 12)):
        x = torch.rand(*shape, generator=g)
        sig = torch.rand(shape[:2], generator=g) * 3.0
        sig[0, 0] = 0.0                                                   # an identity plane
        with torch.no_grad():
            fast = gaussian_blur_per_plane(x, sig, radius=radius)
        ref = gaussian_blur_per_plane(x.clone().requires_grad_(True), sig, radius=radius)   # the conv path
        assert ref.requires_grad and not fast.requires_grad
        torch.testing.assert_close(fast, ref.detach(), rtol=0, atol=2e-6)


@pytest.mark.parametrize("cam", [_cam(), _cam(fd=(0.5, 0.9, 2.0), f=0.012, n=1.8, px=8e-6, rng=(0.3, 6.0))],
                         ids=["dslr35", "phone12mm"])
@pytest.mark.parametrize("depth_m", [0.7, 1.2, 2.5])
def test_cost_minimum_at_the_true_depth_for_any_camera(cam, depth_m):
    d, vol = depth_from_defocus(_plane(depth_m, cam), cam, num_hypotheses=32)
    est = float(d[0, 0, 16:-16, 16:-16].median())
    step = float(vol.inv_depth[0, 1] - vol.inv_depth[0, 0])        # hypothesis spacing, 1/m
    assert abs(1.0 / est - 1.0 / depth_m) < 0.5 * step, est       # within half a hypothesis step
    assert vol.cost.shape == (1, 32, 72, 72) and (vol.cost >= 0).all()


def test_cost_volume_ignores_frame_order():
    cam = _cam()
    frames = _plane(1.7, cam, hw=40)
    perm = [3, 1, 4, 0, 2]
    rng = torch.tensor([[0.5, 10.0]])
    a = relative_blur_cost(frames, CameraBatch.from_cameras([cam]), rng, 12)
    b = relative_blur_cost(frames[:, perm], CameraBatch.from_cameras([cam.subset(perm)]), rng, 12)
    assert torch.allclose(a.cost, b.cost, atol=1e-5)


@pytest.mark.parametrize("physics_light", ["linear", "encoded"])
def test_cost_is_contrast_invariant(physics_light, monkeypatch):
    """An exposure / contrast change of the values the optics blur (linear light by default) leaves
    the cost unchanged."""
    from focalstack.render import light
    monkeypatch.setattr(light, "PHYSICS_LIGHT", physics_light)
    cam = _cam()
    frames = _plane(2.0, cam, hw=40)
    rng = torch.tensor([[0.5, 10.0]])
    a = relative_blur_cost(frames, CameraBatch.from_cameras([cam]), rng, 12, eps=0.0)
    b = relative_blur_cost(light.from_linear(0.25 + 0.5 * light.to_linear(frames)), CameraBatch.from_cameras([cam]),
                           rng, 12, eps=0.0)
    assert torch.allclose(a.cost, b.cost, rtol=1e-3, atol=1e-5)


def test_one_frame_is_refused():
    with pytest.raises(ValueError, match="at least 2 frames"):
        relative_blur_cost(torch.rand(1, 1, 3, 16, 16), CameraBatch.from_cameras([_cam(fd=(1.0,))]),
                           torch.tensor([[0.5, 10.0]]))


def _torch_path(monkeypatch):
    """Route the relative-blur error through the torch implementation (CPU uses OpenCV's)."""
    import focalstack.classical.dfd as dfd
    monkeypatch.setattr(dfd, "_relative_blur_error_opencv",
                        lambda grey, ref, extra, r: dfd._relative_blur_error(grey, ref, extra, r, dfd.MAX_BLUR_RADIUS_PX))


def test_cost_volume_opencv_path_equals_the_torch_path(monkeypatch):
    """On CPU the relative-blur error runs plane by plane through OpenCV (the reference frame's own
    term skipped, frames at the same σ compared unblurred): the same volume as the torch path. Two
    frames share a focus distance so the no-extra-blur case occurs."""
    cam = _cam(fd=(1.0, 1.0, 2.0, 4.0, 1.5))
    frames = torch.cat([_plane(1.7, cam, hw=40), torch.rand(1, 5, 3, 40, 40)], 0)
    args = (frames, CameraBatch.from_cameras([cam, cam]), torch.tensor([[0.5, 10.0], [0.8, 6.0]]), 12)
    fast = relative_blur_cost(*args).cost
    _torch_path(monkeypatch)
    slow = relative_blur_cost(*args).cost
    assert torch.allclose(fast, slow, rtol=1e-5, atol=1e-6)


def test_aggregated_costs_are_the_plain_definition():
    """aggregated_costs writes every version into one volume (coarse radii pooled, filtered and upsampled
    by OpenCV on CPU): the same as filtering each version with torch ops and stacking them."""
    import torch.nn.functional as F
    from focalstack.classical.dfd import (_coarse_factor, aggregate_cost, aggregated_costs, aggregation_radii,
                                          normalised_cost)
    cam = _cam()
    frames = torch.cat([_plane(2.5, cam, hw=96), _plane(1.2, cam, hw=96, seed=1)])   # a batch: strided versions
    vol = relative_blur_cost(frames, CameraBatch.from_cameras([cam, cam]), torch.tensor([[0.5, 10.0], [0.7, 5.0]]), 10)
    versions, conf = aggregated_costs(vol, frames)
    cn, conf_ref = normalised_cost(vol)
    guide = frames.mean(dim=(1, 2)).unsqueeze(1)
    ref = [cn]
    radii = aggregation_radii(96, 96)
    assert any(_coarse_factor(r, 96, 96) > 1 for r in radii[1:])          # the coarse path is exercised
    for i, r in enumerate(radii):
        f = 1 if i == 0 else _coarse_factor(r, 96, 96)
        d = (lambda t: F.avg_pool2d(t, f, ceil_mode=True)) if f > 1 else (lambda t: t)
        a = aggregate_cost(d(cn), d(conf_ref), d(guide), max(1, r // f))
        ref.append(F.interpolate(a, size=(96, 96), mode="bilinear", align_corners=False) if f > 1 else a)
    assert versions.shape == (2, 5, 10, 96, 96) and torch.equal(conf, conf_ref)
    assert torch.allclose(versions, torch.stack(ref, 1), rtol=1e-5, atol=1e-5)


def test_cost_volume_in_hypothesis_chunks_is_the_same_volume(monkeypatch):
    """relative_blur_cost re-blurs the frames for a chunk of hypotheses at a time (bounded memory with
    many frames); chunks of 1 hypothesis give exactly the volume of one chunk holding all."""
    import focalstack.classical.dfd as dfd
    cam = _cam()
    frames = _plane(2.2, cam, hw=40)
    args = (frames, CameraBatch.from_cameras([cam]), torch.tensor([[0.5, 10.0]]), 12)
    _torch_path(monkeypatch)
    whole = relative_blur_cost(*args).cost
    monkeypatch.setattr(dfd, "_CHUNK_BYTES", 1)
    assert torch.equal(relative_blur_cost(*args).cost, whole)


def test_gated_weights_sum_to_one_and_follow_the_confidence():
    from focalstack.classical.dfd import gated_weights
    conf = torch.zeros(1, 1, 20, 20)
    conf[..., :, 10:] = 1.0
    w = gated_weights(conf, window=1)
    assert w.shape == (1, 5, 1, 20, 20)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(1, 1, 20, 20))
    # no evidence: the wide versions (6r, 12r) and 3r, equally; full confidence: the local ones and 3r
    torch.testing.assert_close(w[0, :, 0, 5, 2], torch.tensor([0.0, 0.0, 1 / 3, 1 / 3, 1 / 3]))
    torch.testing.assert_close(w[0, :, 0, 5, 15], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0, 0.0]))


def test_gated_prior_fills_a_flat_region_from_the_surface_around_it():
    """A constructed cost volume: the left third textured (a sharp minimum at the true hypothesis),
    the rest flat (every hypothesis equal: no evidence), one surface (no edge in the guide). The
    gated prior takes the true depth across the flat region from the wide versions; the local
    versions alone (the mean prior of older checkpoints) cannot reach it."""
    from focalstack.classical.dfd import DefocusCostVolume, aggregated_costs, gated_weights, prior_cost
    j, h, w, true = 16, 96, 96, 11
    inv = inverse_depth_hypotheses(torch.tensor([[0.5, 10.0]]), j)
    cost = torch.ones(1, j, h, w)
    cost[..., :32] = 0.2 + 0.3 * (torch.arange(j, dtype=torch.float32) - true).abs().view(1, j, 1, 1)
    vol = DefocusCostVolume(cost=cost, inv_depth=inv, texture=torch.ones(1, 1, h, w))
    frames = torch.full((1, 2, 3, h, w), 0.5)
    versions, conf = aggregated_costs(vol, frames)
    assert versions.shape == (1, 5, j, h, w) and float(conf[..., :32].min()) > 0.5 and float(conf[..., 40:].max()) == 0.0
    gated = prior_cost(versions, gated_weights(conf)).argmin(dim=1)[0]
    assert (gated[:, :80] == true).all()                            # textured and flat, within reach of 12r
    local = versions[:, :3].mean(dim=1).argmin(dim=1)[0]
    assert (local[:, :32] == true).all() and (local[:, 60:80] != true).all()


# ---- evidence_depth_range: the part of a loose stated range the stack's evidence supports ----

def _nyuv2_cam(rng=(0.1, 10.0), **kw):
    """The core paper's NYUv2 synthesis camera (preset nyuv2_dered) with DEReD's 0.1–10 m bracket."""
    return FocalStackCamera(ThinLens(0.05, 8.0, 1.2e-5), (1.0, 1.5, 2.5, 4.0, 6.0), depth_range_m=rng, **kw)


def _ramp_scene(cam, near_m=1.2, far_m=3.0, hw=96, seed=0):
    """Textured frames [F,3,H,W] of a surface whose depth runs from near_m (left) to far_m (right),
    uniform in inverse depth, and that depth [H,W]."""
    g = torch.Generator().manual_seed(seed)
    aif = torch.nn.functional.avg_pool2d(torch.rand(1, 3, hw, hw, generator=g), 3, 1, 1)
    inv = 1.0 / near_m + torch.linspace(0, 1, hw) * (1.0 / far_m - 1.0 / near_m)
    depth = (1.0 / inv).view(1, 1, 1, hw).expand(1, 1, hw, hw).contiguous()
    return render_stack(aif, depth, cam)[0].clamp(0, 1), depth[0, 0]


def test_evidence_range_narrows_a_loose_bracket_to_the_scene():
    from focalstack.classical.dfd import evidence_depth_range
    cam = _nyuv2_cam()
    frames, _ = _ramp_scene(cam)
    near, far = evidence_depth_range(frames, cam, slack=1.0)          # the evidence's own span
    assert 1.1 <= near <= 1.45 and 2.4 <= far <= 3.3                  # the scene is 1.2–3 m (2 % quantiles)
    near3, far3 = evidence_depth_range(frames, cam)                  # default: widened 3× at each end
    assert near3 == pytest.approx(near / 3) and far3 == pytest.approx(far * 3)
    assert 0.1 < near3 < 1.2 and 3.0 < far3 < 10.0                   # narrowed, and the scene still inside
    # never beyond what the camera states, and the stated range is the default bracket
    assert evidence_depth_range(frames, cam, (1.5, 2.5)) == (1.5, 2.5)
    assert evidence_depth_range(frames, cam, (0.1, 10.0)) == (near3, far3)
    # a bracket hardly wider than that (< 10 % more inverse depth) is kept: no second cost volume for nothing
    assert evidence_depth_range(frames, cam, (near3 * 0.97, far3 * 1.03)) == (near3 * 0.97, far3 * 1.03)


def test_evidence_range_keeps_the_stated_range_without_evidence():
    from dataclasses import replace

    from focalstack.classical.dfd import evidence_depth_range
    cam = _nyuv2_cam()
    frames, _ = _ramp_scene(cam)
    flat = torch.full_like(frames, 0.5)
    assert evidence_depth_range(flat, cam) == (0.1, 10.0)                               # no texture anywhere
    assert evidence_depth_range(frames[:1], cam) == (0.1, 10.0)                         # one frame
    assert evidence_depth_range(frames, replace(cam, lens_known=False)) == (0.1, 10.0)  # placeholder lens
    same = FocalStackCamera(cam.lens, (2.0, 2.0), depth_range_m=(0.1, 10.0))
    assert evidence_depth_range(frames[:2], same) == (0.1, 10.0)                        # identical frames


def test_evidence_range_of_a_large_stack_is_taken_at_a_bounded_size(monkeypatch):
    """Above the size bound the estimate runs on a resized copy (camera pixel pitch scaled with it):
    about the same range, from a quarter of the pixels."""
    import focalstack.classical.dfd as dfd
    cam = _nyuv2_cam()
    frames, _ = _ramp_scene(cam, hw=128)
    full = dfd.evidence_depth_range(frames, cam, slack=1.0)
    seen = []
    real = dfd.relative_blur_cost
    monkeypatch.setattr(dfd, "relative_blur_cost", lambda f, *a, **k: seen.append(tuple(f.shape[-2:])) or real(f, *a, **k))
    monkeypatch.setattr(dfd, "EVIDENCE_RANGE_MAX_SIDE_PX", 64)
    small = dfd.evidence_depth_range(frames, cam, slack=1.0)
    assert seen == [(64, 64)]
    assert small == pytest.approx(full, rel=0.15)


def test_decisiveness_is_distinctness_times_evidence():
    from focalstack.classical.dfd import MIN_EVIDENCE, TEXTURE_EPS, DefocusCostVolume, decisiveness
    cost = torch.tensor([1.0, 0.5, 1.5]).view(1, 3, 1, 1).expand(1, 3, 2, 2).contiguous()
    tex = torch.tensor([[0.0, 0.01], [0.1, 1.0]]).view(1, 1, 2, 2)
    vol = DefocusCostVolume(cost=cost, inv_depth=torch.tensor([[0.1, 0.2, 0.3]]), texture=tex)
    d = decisiveness(vol, cost.amin(dim=1, keepdim=True))
    gain = 0.5                                                           # mean 1.0, minimum 0.5
    want = 0.5 * ((gain * (tex + TEXTURE_EPS)) / MIN_EVIDENCE).clamp(0, 1)
    assert torch.allclose(d, want)
    assert torch.allclose(decisiveness(vol, cost.amin(dim=1, keepdim=True), 0.0), torch.full_like(d, 0.5))
    assert float(decisiveness(vol, cost[:, 2:3]).max()) == 0.0         # a cost above the mean: no evidence for it


def test_reused_cost_volume_is_the_same_volume_computed_once(monkeypatch):
    """Inside reuse_cost_volumes a second call with the same frames, camera, range and settings returns
    the first volume (exact); another range, or frames modified in place, are computed anew; outside
    the block nothing is kept."""
    import focalstack.classical.dfd as dfd
    cam = _cam()
    frames = _plane(2.0, cam, hw=40)
    batch, rng = CameraBatch.from_cameras([cam]), torch.tensor([[0.5, 10.0]])
    plain = dfd.relative_blur_cost(frames, batch, rng)
    calls = []
    real = dfd._relative_blur_cost
    monkeypatch.setattr(dfd, "_relative_blur_cost", lambda *a: calls.append(1) or real(*a))
    with dfd.reuse_cost_volumes():
        a = dfd.relative_blur_cost(frames, CameraBatch.from_cameras([cam]), rng.clone())
        b = dfd.relative_blur_cost(frames, batch, rng)
        assert b is a and len(calls) == 1 and torch.equal(a.cost, plain.cost)
        dfd.relative_blur_cost(frames, batch, torch.tensor([[0.6, 10.0]]))
        assert len(calls) == 2
        frames[..., 0, 0] += 0.1                      # in place: its version moves, no stale volume
        c = dfd.relative_blur_cost(frames, batch, rng)
        assert len(calls) == 3 and c is not a
    dfd.relative_blur_cost(frames, batch, rng)
    assert len(calls) == 4 and dfd._REUSED is None
