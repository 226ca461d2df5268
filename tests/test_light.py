"""focalstack.render.light: optics blur radiance. Under PHYSICS_LIGHT = "linear" the renderer decodes
sRGB, blurs and re-encodes (a bright-on-dark step edge matches the analytic linear-light result and
differs from blurring the encoded values), the default; "encoded" blurs the encoded values, the
convention before issue 13."""

import pytest
import torch

import focalstack.render.light as light
from focalstack.classical.dfd import relative_blur_cost
from focalstack.data.encoding import linear_to_srgb, srgb_to_linear
from focalstack.optics import get_preset
from focalstack.optics.camera import CameraBatch
from focalstack.render import defocus, render_stack

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DARK, BRIGHT = 0.05, 1.0


def _edge_scene(h=9, w=41):
    aif = torch.full((1, 3, h, w), DARK, dtype=torch.float64)
    aif[..., w // 2:] = BRIGHT
    cam = get_preset("procedural")
    depth = torch.full((1, 1, h, w), 0.6, dtype=torch.float64)     # one depth: one σ per frame
    return aif, depth, cam


def _analytic(aif_row: torch.Tensor, sigma: float, k: int) -> torch.Tensor:
    """Normalised truncated Gaussian blur of one row of radiance (valid region only)."""
    r = torch.arange(k, dtype=torch.float64) - k // 2
    g = torch.exp(-r ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.nn.functional.conv1d(aif_row.view(1, 1, -1), g.view(1, 1, -1))[0, 0]


def test_linear_light_step_edge_matches_the_analytic_blur(monkeypatch):
    monkeypatch.setattr(light, "PHYSICS_LIGHT", "linear")
    aif, depth, cam = _edge_scene()
    k = 11
    out = render_stack(aif, depth, cam, frames=[4], kernel_size=k, backend="reference")[0, 0]   # [3,H,W]
    sigma = float(cam.sigma_px(depth, [4])[0, 0, 0, 0, 0])
    assert 1.0 < sigma < 2.0      # the window holds ±3σ: the truncation is the analytic one too
    row = out[0, 4]                                                  # a middle row, one channel
    want = linear_to_srgb(_analytic(srgb_to_linear(aif[0, 0, 4]), sigma, k))
    got = row[k // 2: -(k // 2)]
    assert torch.allclose(got, want, atol=1e-6)
    # …and not what blurring the encoded values gives: at the edge the linear blur is much brighter
    monkeypatch.setattr(light, "PHYSICS_LIGHT", "encoded")
    enc = render_stack(aif, depth, cam, frames=[4], kernel_size=k, backend="reference")[0, 0, 0, 4]
    c = aif.shape[-1] // 2
    assert enc[c - 1] == pytest.approx(float(_analytic(aif[0, 0, 4], sigma, k)[c - 1 - k // 2]), abs=1e-6)
    assert float(row[c - 1] - enc[c - 1]) > 0.1


def test_encoded_light_is_the_plain_blur_of_the_values(monkeypatch):
    monkeypatch.setattr(light, "PHYSICS_LIGHT", "encoded")
    torch.manual_seed(0)
    aif = torch.rand(1, 3, 12, 14)
    depth = torch.rand(1, 1, 12, 14) * 2 + 0.5
    cam = get_preset("procedural")
    sig = cam.sigma_px(depth)[0]                                      # [F,1,H,W]
    want = defocus(aif.expand(cam.num_frames, -1, -1, -1).contiguous(), sig.contiguous(), kernel_size=9)
    assert torch.equal(render_stack(aif, depth, cam, kernel_size=9)[0], want)


def test_linear_light_render_gradcheck(monkeypatch):
    monkeypatch.setattr(light, "PHYSICS_LIGHT", "linear")
    torch.manual_seed(1)
    aif = (torch.rand(1, 3, 5, 6, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    depth = (torch.rand(1, 1, 5, 6, dtype=torch.float64) + 0.6).requires_grad_()
    cam = get_preset("procedural")
    assert torch.autograd.gradcheck(lambda a, d: render_stack(a, d, cam, frames=[0, 3], kernel_size=5,
                                                              backend="reference"), (aif, depth))


def test_relative_blur_cost_finds_the_depth_of_a_linear_light_stack_only_in_linear_light(monkeypatch):
    """A bright-on-dark texture at one depth rendered in linear light: the cost volume's minimum is at
    that depth when it models linear light, and further off when it re-blurs encoded values."""
    torch.manual_seed(3)
    h = w = 48
    tex = (torch.rand(1, 1, h // 4, w // 4) > 0.7).float()
    aif = (DARK + (BRIGHT - DARK) * torch.nn.functional.interpolate(tex, size=(h, w), mode="nearest")).repeat(1, 3, 1, 1)
    cam = get_preset("procedural")
    d_true = 1.2
    depth = torch.full((1, 1, h, w), d_true)
    monkeypatch.setattr(light, "PHYSICS_LIGHT", "linear")
    frames = render_stack(aif, depth, cam, kernel_size=21)               # [1,F,3,H,W]
    rng = torch.tensor([[0.5, 4.0]])
    errs = {}
    for mode in ("linear", "encoded"):
        monkeypatch.setattr(light, "PHYSICS_LIGHT", mode)
        vol = relative_blur_cost(frames, CameraBatch.from_cameras([cam]), rng, num_hypotheses=48)
        best = vol.inv_depth[0, vol.cost[0, :, 8:-8, 8:-8].mean(dim=(1, 2)).argmin()]
        errs[mode] = abs(1.0 / float(best) - d_true)
    step = (1 / 0.5 - 1 / 4.0) / 47
    assert errs["linear"] <= d_true ** 2 * step * 1.01          # within one hypothesis step (in 1/d)
    assert errs["encoded"] > errs["linear"]


def test_unknown_physics_light_is_refused(monkeypatch):
    monkeypatch.setattr(light, "PHYSICS_LIGHT", "gamma")
    with pytest.raises(ValueError, match="PHYSICS_LIGHT must be one of"):
        light.to_linear(torch.zeros(1))


def test_the_environment_sets_the_light_for_a_run():
    import os
    import subprocess
    import sys
    code = "import focalstack.render.light as l; print(l.PHYSICS_LIGHT)"
    env = {**os.environ, "FOCALSTACK_PHYSICS_LIGHT": "encoded"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "encoded"
    env.pop("FOCALSTACK_PHYSICS_LIGHT")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "linear"                     # the default (issue 13)
