"""AiFDepthNet (Wang et al. 2021): shapes for any stack size, the attention → depth/AIF formulas,
order independence, and training/predict/eval through the CLI."""

import json

import pytest
import torch
import torch.nn.functional as F

from focalstack.models import full_options
from focalstack.cli import main
from focalstack.models import MODELS, AiFDepthNet, build_model, count_parameters, predict_batch
from focalstack.models.aifdepthnet import softplus_normalise
from focalstack.optics import get_preset

FOCUS = [0.6, 0.85, 1.2, 1.8, 3.0, 0.7, 1.0]
TINY = ["--width", "4", "--levels", "2", "--crop", "16", "16", "--batch-size", "2", "--workers", "0",
        "--kernel-size", "7", "--no-progress", "--no-tensorboard", "--val-samples", "1"]


def _tiny(**kw):
    torch.manual_seed(0)
    return build_model("aifdepthnet", width=4, levels=2, **kw)


def test_registry_and_size():
    assert MODELS["aifdepthnet"] is AiFDepthNet
    assert count_parameters(build_model("aifdepthnet")) < 2e6
    with pytest.raises(ValueError):
        AiFDepthNet(space="log")


@pytest.mark.parametrize("space", ["inverse", "metric"])
def test_shapes_any_stack_size_and_range(space):
    m = _tiny(space=space)
    rng = torch.tensor([[0.5, 4.0], [0.7, 2.0]])  # second range narrower than the focus span: clamped
    for f in (1, 2, 3, 5, 7):
        x = torch.rand(2, f, 3, 19, 23)
        out = m(x, torch.tensor(FOCUS[:f]).expand(2, f), rng)
        d = out["depth_m"]
        assert d.shape == (2, 1, 19, 23) and out["aif"].shape == (2, 3, 19, 23)
        assert out["attention"].shape == (2, f, 1, 19, 23)
        assert torch.isfinite(d).all()
        assert (d[0] >= 0.5 - 1e-5).all() and (d[0] <= 4.0 + 1e-5).all()
        assert (d[1] >= 0.7 - 1e-5).all() and (d[1] <= 2.0 + 1e-5).all()
        assert (out["aif"] >= 0).all() and (out["aif"] <= 1).all()
    out = m(torch.rand(1, 2, 3, 5, 3), torch.tensor([[0.6, 3.0]]), (0.5, 4.0))  # smaller than 2^levels
    assert out["depth_m"].shape == (1, 1, 5, 3)


def test_attention_formulas():
    """depth = Σ softplus-normalised M × positions (inverse depth), AIF = Σ softmax(M) × frames."""
    m = _tiny()
    x = torch.rand(1, 3, 3, 8, 8)
    fd = torch.tensor([[0.6, 1.2, 3.0]])
    att = torch.randn(1, 3, 8, 8)
    m.attention = lambda frames: att                       # frames arrive sorted (fd already sorted)
    out = m(x, fd, (0.5, 4.0))
    w = softplus_normalise(att, 1)
    inv = (w * (1.0 / fd).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(out["depth_m"], 1.0 / inv, rtol=1e-5)
    aif = (torch.softmax(att, 1).unsqueeze(2) * x).sum(1)
    assert torch.allclose(out["aif"], aif, atol=1e-6)
    # one frame: all weight on it, the depth is its focus distance
    m.attention = lambda frames: torch.randn(1, 1, 8, 8)
    out = m(x[:, :1], fd[:, 1:2], (0.5, 4.0))
    assert torch.allclose(out["depth_m"], torch.full_like(out["depth_m"], 1.2), rtol=1e-4)
    assert torch.allclose(out["aif"], x[:, 0], atol=1e-6)


def test_frame_order_does_not_matter():
    m = _tiny()
    x = torch.rand(2, 5, 3, 16, 12)
    fd = torch.tensor(FOCUS[:5]).expand(2, 5)
    perm = torch.tensor([3, 0, 4, 2, 1])
    a, b = m(x, fd, (0.5, 4.0)), m(x[:, perm], fd[:, perm], (0.5, 4.0))
    assert torch.allclose(a["depth_m"], b["depth_m"], atol=1e-5)
    assert torch.allclose(a["aif"], b["aif"], atol=1e-5)
    assert torch.allclose(a["attention"][:, perm], b["attention"], atol=1e-5)


def test_gradients_and_predict_batch():
    m = _tiny()
    out = m(torch.rand(1, 3, 3, 16, 16), torch.tensor([[0.6, 1.2, 3.0]]), (0.5, 4.0))
    (out["depth_m"].mean() + out["aif"].mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    o = predict_batch(m, torch.rand(5, 3, 21, 22), get_preset("procedural"))
    assert o["depth_m"].shape == (1, 1, 21, 22)


def test_aif_supervision_learns_the_sharp_frame():
    """The paper's unsupervised mode: only the AIF L1 trains the attention (here a 2-frame stack whose
    left half is sharp in frame 0 and right half in frame 1)."""
    torch.manual_seed(0)
    m = build_model("aifdepthnet", width=4, levels=1)
    tex = torch.rand(1, 3, 16, 16)
    blur = F.avg_pool2d(F.pad(tex, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    f0 = torch.cat([tex[..., :8], blur[..., 8:]], -1)
    f1 = torch.cat([blur[..., :8], tex[..., 8:]], -1)
    x = torch.stack([f0, f1], 1)
    fd = torch.tensor([[0.6, 3.0]])
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        loss = (m(x, fd, (0.5, 4.0))["aif"] - tex).abs().mean()
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.6 * first
    d = m(x, fd, (0.5, 4.0))["depth_m"]
    assert d[..., 2:-2, :6].mean() < d[..., 2:-2, 10:].mean()   # nearer where the near frame is sharp


def test_cli_train_predict_eval(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(tiny_dataset), "--out", str(run), "--model", "aifdepthnet", "--max-steps", "3",
                 *TINY]) == 0
    meta = json.loads((run / "last.json").read_text())
    # every option recorded (those given over the defaults)
    assert meta["model"] == {"name": "aifdepthnet", "cfg": full_options("aifdepthnet", {"width": 4, "levels": 2})}
    assert meta["step"] == 3
    pred = tmp_path / "pred"
    assert main(["predict", str(tiny_dataset), "--method", "net", "--checkpoint", str(run), "-o", str(pred)]) == 0
    assert main(["eval", str(pred), str(tiny_dataset)]) == 0
    m = json.loads((pred / "metrics.json").read_text())
    assert m["n_samples"] == 3 and 0.0 <= m["mean"]["delta1"] <= 1.0
    # the paper's AIF supervision (L1 AIF + smoothness, no re-rendering) and its depth supervision
    for mode, extra in (("aif", ["--w-recon", "0"]), ("depth", ["--w-aif-guide", "0"])):
        out = tmp_path / mode
        assert main(["train", str(tiny_dataset), "--out", str(out), "--model", "aifdepthnet", "--max-steps", "2",
                     "--supervision", mode, *extra, *TINY]) == 0
        assert json.loads((out / "last.json").read_text())["supervision"] == mode
