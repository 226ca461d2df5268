import pytest
import torch

from focalstack.models import DAIFNet, MODELS, build_model, count_parameters, predict_batch
from focalstack.models.common import depth_from_logit, normalised_focus
from focalstack.optics import get_preset

FOCUS = [0.6, 0.85, 1.2, 1.8, 3.0, 0.7, 1.0, 1.5, 2.4]


def _tiny(**kw):
    """The paper variant (focus-position input only); the camera variant is tested below."""
    torch.manual_seed(0)
    kw.setdefault("variant", "paper")
    return build_model("daifnet", width=8, levels=3, **kw)


def test_registry_and_default_size():
    assert MODELS["daifnet"] is DAIFNet
    n = count_parameters(build_model("daifnet"))
    assert 1.8e6 < n < 2.2e6  # authors' W=16, D=4 net: ~1.96 M
    with pytest.raises(KeyError, match="unknown model"):
        build_model("nope")


@pytest.mark.parametrize("aif_mode", ["select", "direct"])
def test_shapes_any_stack_size_and_odd_sizes(aif_mode):
    m = _tiny(aif_mode=aif_mode)
    rng = torch.tensor([[0.5, 4.0], [0.3, 10.0]])
    for f in range(1, 10):
        x = torch.rand(2, f, 3, 37, 45)
        fd = torch.tensor(FOCUS[:f]).expand(2, f)
        out = m(x, fd, rng)
        assert out["depth_m"].shape == (2, 1, 37, 45)
        assert out["aif"].shape == (2, 3, 37, 45)
        d = out["depth_m"]
        assert torch.isfinite(d).all() and torch.isfinite(out["aif"]).all()
        assert (d[0] >= 0.5).all() and (d[0] <= 4.0).all()
        assert (d[1] >= 0.3).all() and (d[1] <= 10.0).all()
        assert (out["aif"] >= 0).all() and (out["aif"] <= 1).all()
    # tiny image (smaller than the padding multiple) and a float depth range
    out = m(torch.rand(1, 3, 3, 5, 3), torch.tensor([[0.6, 1.2, 3.0]]), (0.5, 4.0))
    assert out["depth_m"].shape == (1, 1, 5, 3)


def test_permutation_invariance():
    m = _tiny()
    x = torch.rand(2, 5, 3, 24, 20)
    fd = torch.tensor(FOCUS[:5]).expand(2, 5)
    perm = torch.tensor([3, 0, 4, 2, 1])
    a = m(x, fd, (0.5, 4.0))
    b = m(x[:, perm], fd[:, perm], (0.5, 4.0))
    for k in ("depth_m", "aif"):
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    # the focus plane matters: swapping focus distances alone changes the output
    c = m(x, fd[:, perm], (0.5, 4.0))
    assert not torch.allclose(a["depth_m"], c["depth_m"], atol=1e-7)


def test_depth_parameterisation_and_focus_plane():
    rng = torch.tensor([[0.5, 4.0]])
    lo = depth_from_logit(torch.full((1, 1, 1, 1), -30.0), rng)
    hi = depth_from_logit(torch.full((1, 1, 1, 1), 30.0), rng)
    assert torch.allclose(lo, torch.tensor(4.0)) and torch.allclose(hi, torch.tensor(0.5))
    u = normalised_focus(torch.tensor([[0.5, 4.0, 1.0]]), rng)
    assert torch.allclose(u[0, :2], torch.tensor([1.0, -1.0]))
    # camera independence: the same positions in inverse depth give the same plane values
    u2 = normalised_focus(torch.tensor([[1.0, 8.0, 2.0]]), rng * 2)
    assert torch.allclose(u, u2)


def test_gradients_reach_every_parameter():
    m = _tiny()
    out = m(torch.rand(1, 3, 3, 16, 16), torch.tensor([[0.6, 1.2, 3.0]]), (0.5, 4.0))
    (out["depth_m"].mean() + out["aif"].mean()).backward()
    # zero-initialised residual weights still get a gradient
    assert all(p.grad is not None for p in m.parameters())


def test_predict_batch():
    m = _tiny()
    cam = get_preset("procedural")
    out = predict_batch(m, torch.rand(5, 3, 20, 22), cam)
    assert out["depth_m"].shape == (1, 1, 20, 22) and out["aif"].shape == (1, 3, 20, 22)
    assert not out["depth_m"].requires_grad and m.training
    out2 = predict_batch(m, torch.rand(2, 5, 3, 20, 22), torch.tensor(cam.focus_distances_m), depth_range=(0.5, 4.0))
    assert out2["depth_m"].shape == (2, 1, 20, 22)
    with pytest.raises(ValueError):
        predict_batch(m, torch.rand(2, 4, 3, 20, 22), cam)


# ---- the camera-aware variant ------------------------------------------------------------------
from focalstack.optics import CameraBatch, FocalStackCamera, ThinLens   # noqa: E402
from focalstack.render import render_stack                              # noqa: E402


def _camera(fd, f=0.05, n=2.0, px=6e-5, rng=(0.5, 10.0)):
    return FocalStackCamera(ThinLens(f, n, px), tuple(fd), depth_range_m=rng)


def _run(m, frames, cams):
    cb = CameraBatch.from_cameras(cams)
    rng = torch.tensor([c.effective_depth_range_m() for c in cams])
    return m(frames, cb, rng)


def test_camera_variant_is_the_default_and_needs_the_camera():
    m = build_model("daifnet", width=4, levels=2)
    assert m.variant == "camera" and m.needs_camera
    with pytest.raises(ValueError, match="needs the camera"):
        m(torch.rand(1, 3, 3, 16, 16), torch.tensor([[1.0, 2.0, 3.0]]), (0.5, 10.0))
    with pytest.raises(ValueError, match="variant"):
        build_model("daifnet", variant="nope")


@pytest.mark.parametrize("f", range(1, 11))
def test_camera_variant_shapes_for_1_to_10_frames(f):
    torch.manual_seed(0)
    m = build_model("daifnet", width=4, levels=2, hypotheses=8)
    cam = _camera([0.6 + 0.4 * i for i in range(f)], rng=(0.5, 5.0))
    out = _run(m, torch.rand(2, f, 3, 19, 23), [cam, cam])
    d = out["depth_m"]
    assert d.shape == (2, 1, 19, 23) and out["aif"].shape == (2, 3, 19, 23)
    assert out["hypothesis_logits"].shape == (2, 8, 19, 23)
    assert torch.isfinite(d).all() and (d >= 0.5 - 1e-4).all() and (d <= 5.0 + 1e-3).all()
    (d.mean() + out["aif"].mean()).backward()
    assert all(p.grad is not None for p in m.parameters())


def test_camera_variant_permutation_invariance():
    torch.manual_seed(0)
    m = build_model("daifnet", width=4, levels=2, hypotheses=8)
    cam = _camera([0.8, 1.2, 2.0, 3.5])
    x = torch.rand(1, 4, 3, 24, 20)
    perm = [2, 0, 3, 1]
    a = _run(m, x, [cam])
    b = _run(m, x[:, perm], [cam.subset(perm)])
    for k in ("depth_m", "aif"):
        assert torch.allclose(a[k], b[k], atol=1e-4), k


def test_camera_variant_fast_layers_equal_the_plain_ones():
    """The camera variant projects the cost volume by matrix products on the volume (no concatenated
    copy) and convolves the decoder's half of the AIF selection input once per sample: both equal
    the plain modules applied to the concatenated inputs."""
    torch.manual_seed(0)
    m = build_model("daifnet", width=4, levels=2, hypotheses=8)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    b, f = 2, 3
    costs, stats = torch.rand(b, 5, 8, 11, 13), torch.randn(b, 3, 11, 13)
    plain = m.cost_proj(torch.cat([costs.flatten(1, 2), stats], 1))
    assert torch.allclose(m._project_costs(costs, stats), plain, atol=1e-5)
    feat0, y = torch.randn(b * f, 4, 11, 13), torch.randn(b, 4, 11, 13)
    yy = y.unsqueeze(1).expand(b, f, 4, 11, 13).reshape(b * f, 4, 11, 13)
    assert torch.allclose(m._select_logits(feat0, y, b, f), m.select(torch.cat([feat0, yy], 1)), atol=1e-5)


def _textured_plane(depth_m, cam, hw=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    aif = torch.nn.functional.avg_pool2d(torch.rand(1, 3, hw, hw, generator=g), 3, 1, 1)
    return render_stack(aif, torch.full((1, 1, hw, hw), depth_m), cam)


@pytest.mark.parametrize("depth_m", [0.8, 1.6, 3.0])
def test_same_scene_under_two_cameras_gives_consistent_depth(depth_m):
    """One set of weights, two very different cameras (a 50 mm f/2 DSLR-like lens and a 9 mm f/1.4 lens
    with other pixels and focus distances): the untrained camera-aware net starts as the soft-argmin of
    the relative-blur cost volume, so it reads metric depth through each camera's optics alone."""
    torch.manual_seed(0)
    m = build_model("daifnet", width=4, levels=2).eval()
    cam_a = _camera([0.7, 1.0, 1.5, 2.3, 4.0], f=0.05, n=2.0, px=6e-5, rng=(0.5, 8.0))
    cam_b = _camera([0.6, 1.1, 2.2, 5.0], f=0.009, n=1.4, px=6e-6, rng=(0.4, 10.0))
    preds = []
    with torch.no_grad():
        for cam in (cam_a, cam_b):
            out = _run(m, _textured_plane(depth_m, cam), [cam])
            preds.append(float(out["depth_m"][0, 0, 16:48, 16:48].median()))
    for p in preds:
        assert abs(p - depth_m) / depth_m < 0.12, preds
    assert abs(preds[0] - preds[1]) / depth_m < 0.15, preds


def test_untrained_camera_net_aif_favours_the_frame_in_focus():
    """The AIF prior: where one frame is sharp at the predicted depth and the others are ≥ 1 px of σ
    blurrier, the untrained net's selection gives that frame the largest weight everywhere, so its
    AIF is nearer the true AIF than any other input frame."""
    torch.manual_seed(0)
    m = build_model("daifnet", width=4, levels=2).eval()
    cam = _camera([0.7, 1.0, 1.5, 2.3, 4.0], f=0.05, n=2.0, px=6e-5, rng=(0.5, 8.0))
    g = torch.Generator().manual_seed(3)
    aif = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 64, 64, generator=g), 3, 1, 1)
    frames = render_stack(aif, torch.full((1, 1, 64, 64), 1.5), cam)
    with torch.no_grad():
        out = _run(m, frames, [cam])
    cb = CameraBatch.from_cameras([cam])
    sig = cb.sigma_px(out["depth_m"])[0, :, 0, 16:48, 16:48]               # [F,h,w] σ at the predicted depth
    k = int(sig.mean(dim=(1, 2)).argmin())
    assert k == 2 and float(sig.mean(dim=(1, 2)).sort().values[1]) >= 1.0      # frame 2 (1.5 m) in focus
    w = out["weights"][0, :, 0, 16:48, 16:48]
    assert bool((w.argmax(dim=0) == k).all())
    err = lambda x: float((x[..., 16:48, 16:48] - aif[0, :, 16:48, 16:48]).abs().mean())
    assert err(out["aif"][0]) < min(err(frames[0, i]) for i in range(frames.shape[1]) if i != k)


def test_aif_prior_gain_option_sharpens_the_untrained_selection():
    """``aif_prior_gain`` sets the initial gain of the AIF selection prior (1.5 by default): at gain 20
    the untrained net gives the frame in focus nearly all the weight, at 1.5 only the largest share;
    the depth does not depend on it, and a gain ≤ 0 is refused."""
    import math
    cam = _camera([0.7, 1.0, 1.5, 2.3, 4.0], f=0.05, n=2.0, px=6e-5, rng=(0.5, 8.0))
    g = torch.Generator().manual_seed(3)
    aif = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 48, 48, generator=g), 3, 1, 1)
    frames = render_stack(aif, torch.full((1, 1, 48, 48), 1.5), cam)
    outs = {}
    for gain in (1.5, 20.0):
        torch.manual_seed(0)
        m = build_model("daifnet", width=4, levels=2, aif_prior_gain=gain).eval()
        assert float(m.log_aif_gain.detach()) == pytest.approx(math.log(gain))
        with torch.no_grad():
            outs[gain] = _run(m, frames, [cam])
    torch.testing.assert_close(outs[1.5]["depth_m"], outs[20.0]["depth_m"])
    top = {gain: float(o["weights"][0, :, 0, 12:36, 12:36].amax(dim=0).mean()) for gain, o in outs.items()}
    assert top[1.5] < 0.9 < 0.99 < top[20.0], top
    with pytest.raises(ValueError, match="aif_prior_gain"):
        build_model("daifnet", aif_prior_gain=0.0)


def test_crop_view_reads_the_cost_prior_of_the_whole_stack():
    """A training crop with its CropView gets exactly the cost maps of its whole stack (run alone, as
    predict runs it), cut and flipped as the crop was: the aggregation radii and neighbourhoods are
    the whole image's (the crop's own maps differ). A PriorCache computes them once per stack."""
    from focalstack.models import CropView, PriorCache
    torch.manual_seed(0)
    m = build_model("daifnet", width=4, levels=2, hypotheses=8)
    cam = _camera([0.7, 1.0, 1.5, 2.3, 4.0], rng=(0.5, 8.0))
    whole = [_textured_plane(1.1, cam, hw=72, seed=0)[0], _textured_plane(2.5, cam, hw=72, seed=1)[0, :, :, 8:64, :60]]
    one = CameraBatch.from_cameras([cam])
    cb, rng = CameraBatch.from_cameras([cam, cam]), torch.tensor([[0.5, 8.0], [0.6, 6.0]])
    yx, flips = [(3, 20), (10, 5)], [(False, True), (True, True)]
    crop = torch.stack([w[..., y:y + 32, x:x + 32].flip([d for d, on in zip((-2, -1), fl) if on])
                        for w, (y, x), fl in zip(whole, yx, flips)])
    cache = PriorCache(2 ** 30)
    view = CropView(whole, [one, one], yx, flips, ["a", "b"], cache)
    got = m._camera_inputs(crop, cb, rng, view)
    own = m._camera_inputs(crop, cb, rng)
    assert len(cache) == 2 and cache.nbytes > 0
    small = PriorCache(cache.nbytes // 2 + 1)   # room for one stack's maps: the other is recomputed when met
    m._camera_inputs(crop, cb, rng, CropView(whole, [one, one], yx, flips, ["a", "b"], small))
    assert len(small) == 1 and small.nbytes <= small.budget_bytes
    for i in range(2):
        ref = m._camera_inputs(whole[i][None], one, rng[i:i + 1])
        for k in (1, 2, 3):   # costs, log-weights, statistics
            (y, x), fl = yx[i], [d for d, on in zip((-2, -1), flips[i]) if on]
            want = ref[k][..., y:y + 32, x:x + 32].flip(fl)
            assert torch.equal(got[k][i:i + 1], want), (i, k)
            assert not torch.allclose(own[k][i:i + 1], want, atol=1e-3), (i, k)
        assert torch.equal(got[4][i], ref[4][0])
    assert torch.equal(got[0], own[0])
    # the cache serves the second pass: the same numbers without computing (poisoned frames are not read)
    view2 = CropView([torch.full_like(w, float("nan")) for w in whole], [one, one], yx, flips, ["a", "b"], cache)
    again = m._camera_inputs(crop, cb, rng, view2)
    assert all(torch.equal(a, b) for a, b in zip(again, got))
    # ... but not for another depth range
    assert torch.isnan(m._camera_inputs(crop, cb, rng.flip(0), view2)[1]).any()
    out = m(crop, cb, rng, view=view)
    assert out["depth_m"].shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="not inside its whole stack"):
        m(crop, cb, rng, view=CropView(whole, [one, one], [(3, 20), (41, 0)], flips))
    with pytest.raises(ValueError, match=r"the crop view holds \[1\] stacks for 2 crops"):
        m(crop, cb, rng, view=CropView(whole[:1], [one], yx[:1], flips[:1]))
