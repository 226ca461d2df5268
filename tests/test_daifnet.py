import pytest
import torch

from focalstack.models import DAIFNet, MODELS, build_model, count_parameters, predict_batch
from focalstack.models.common import depth_from_logit, normalised_focus
from focalstack.optics import get_preset

FOCUS = [0.6, 0.85, 1.2, 1.8, 3.0, 0.7, 1.0, 1.5, 2.4]


def _tiny(**kw):
    torch.manual_seed(0)
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
