"""Gur & Wolf (CVPR 2019): focus sequences, the single-image network, the sharpness loss, and training
through the renderer from the sample's AIF via the CLI, then predict → eval."""

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from focalstack.models import full_options
from focalstack.cli import main
from focalstack.losses import LossConfig, compute_losses, focus_sharpness_map, render_sharpness_loss
from focalstack.models import MODELS, GurWolfNet, build_model, count_parameters, predict_batch
from focalstack.models.gurwolf import FOCUS_SEQUENCE, focus_sequence
from focalstack.optics import CameraBatch, get_preset
from focalstack.render import render_stack

TINY = ["--width", "4", "--levels", "2", "--crop", "16", "16", "--batch-size", "2", "--workers", "0",
        "--kernel-size", "7", "--no-progress", "--no-tensorboard", "--val-samples", "1"]


def test_focus_sequences():
    assert focus_sequence("F1", 10.0) == [2.0]
    assert focus_sequence("F2", 10.0) == [2.0, 8.0]
    assert focus_sequence("f6", 4.0) == pytest.approx([0.8, 3.2, 0.4, 3.6, 1.2, 2.8])
    assert focus_sequence(10, 1.0) == pytest.approx(list(FOCUS_SEQUENCE))
    with pytest.raises(ValueError):
        focus_sequence("F3", 4.0)


def test_shapes_image_input_and_range():
    assert MODELS["gurwolf"] is GurWolfNet and count_parameters(build_model("gurwolf")) < 2e6
    torch.manual_seed(0)
    m = build_model("gurwolf", width=4, levels=2)
    rng = torch.tensor([[0.5, 4.0], [1.0, 2.0]])
    img = torch.rand(2, 3, 19, 23)
    for f in (1, 2, 5):
        frames = torch.rand(2, f, 3, 19, 23)
        out = m(frames, torch.rand(2, f) + 0.5, rng, image=img)
        d = out["depth_m"]
        assert d.shape == (2, 1, 19, 23) and torch.equal(out["aif"], img)   # the AIF output is the input
        assert (d[0] >= 0.5 - 1e-5).all() and (d[0] <= 4.0 + 1e-5).all()
        assert (d[1] >= 1.0 - 1e-5).all() and (d[1] <= 2.0 + 1e-5).all()
    m.eval()
    # single-image depth: the stack and focus distances do not matter once the image is given
    a = m(torch.rand(1, 3, 3, 19, 23), torch.tensor([[0.6, 1.2, 3.0]]), (0.5, 4.0), image=img[:1])
    b = m(torch.rand(1, 2, 3, 19, 23), torch.tensor([[0.9, 2.0]]), (0.5, 4.0), image=img[:1])
    assert torch.allclose(a["depth_m"], b["depth_m"])
    # without an image: a classical AIF fusion of the stack (one frame: the frame itself)
    one = torch.rand(1, 1, 3, 9, 7)
    assert torch.equal(m(one, torch.tensor([[1.0]]), (0.5, 4.0))["aif"], one[:, 0])
    out = m(torch.rand(1, 3, 3, 20, 22), torch.tensor([[0.6, 1.2, 3.0]]), (0.5, 4.0))
    assert out["aif"].shape == (1, 3, 20, 22)
    half = build_model("gurwolf", width=4, levels=2, input_scale=0.5).eval()
    assert half(torch.rand(1, 1, 3, 21, 17), torch.tensor([[1.0]]), (0.5, 4.0))["depth_m"].shape == (1, 1, 21, 17)


def test_gradients_and_predict_batch():
    m = build_model("gurwolf", width=4, levels=2)
    out = m(torch.rand(2, 2, 3, 16, 16), torch.tensor([[0.6, 3.0]] * 2), (0.5, 4.0), image=torch.rand(2, 3, 16, 16))
    out["depth_m"].mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert missing == [] and all(torch.isfinite(p.grad).all() for p in m.parameters())
    m(torch.rand(1, 1, 3, 16, 16), torch.tensor([[1.0]]), (0.5, 4.0))["depth_m"].sum().backward()  # batch 1 trains
    o = predict_batch(m, torch.rand(5, 3, 20, 22), get_preset("procedural"), image=torch.rand(3, 20, 22))
    assert o["depth_m"].shape == (1, 1, 20, 22)


def test_sharpness_measure_and_loss():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 24, 24, generator=g)
    s = focus_sharpness_map(img)
    assert s.shape == img.shape and torch.isfinite(s).all()
    flat = torch.full((1, 3, 24, 24), 0.5)
    assert torch.allclose(focus_sharpness_map(flat), torch.zeros_like(flat), atol=1e-5)
    stack = img.unsqueeze(1).expand(1, 2, 3, 24, 24)
    assert float(render_sharpness_loss(stack, stack)) == 0.0
    blurred = F.avg_pool2d(F.pad(img, (1, 1, 1, 1), mode="reflect"), 3, stride=1).unsqueeze(1).expand_as(stack)
    assert float(render_sharpness_loss(blurred, stack)) > 0.1
    # the term enters compute_losses only with a positive weight, next to the reconstruction
    cam = get_preset("procedural")
    depth = torch.full((1, 1, 24, 24), 1.3, requires_grad=True)
    frames = render_stack(img, torch.full((1, 1, 24, 24), 1.0), cam, kernel_size=7)
    batch = {"frames": frames, "camera": CameraBatch.from_cameras([cam])}
    _, terms = compute_losses({"depth_m": depth, "aif": img}, batch, LossConfig(kernel_size=7))
    assert "render_sharp" not in terms
    total, terms = compute_losses({"depth_m": depth, "aif": img}, batch,
                                  LossConfig(kernel_size=7, render_sharp=0.1, aif_guide=0, aif_sharp=0))
    assert {"recon", "render_sharp", "smooth"} <= set(terms)
    total.backward()
    assert depth.grad is not None and depth.grad.abs().sum() > 0


def test_cli_train_from_the_aif_predict_eval(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_dataset), "--out", str(run), "--model", "gurwolf", "--max-steps", "3",
                 *TINY]) == 0
    cfg = json.loads((run / "config.json").read_text())
    # the paper's loss weights (eq. 13) are this model's defaults for a fresh run
    assert cfg["loss"]["render_sharp"] == 0.1 and cfg["loss"]["smooth"] == 1e-3 and cfg["loss"]["aif_guide"] == 0.0
    assert cfg["model_cfg"] == full_options("gurwolf", {"width": 4, "levels": 2})
    pred = tmp_path / "pred"
    assert main(["predict", str(tiny_dataset), "--method", "net", "--checkpoint", str(run), "-o", str(pred)]) == 0
    assert main(["eval", str(pred), str(tiny_dataset)]) == 0
    m = json.loads((pred / "metrics.json").read_text())
    assert m["n_samples"] == 3 and 0.0 <= m["mean"]["delta1"] <= 1.0
    # rendering from the AIF needs aif.png: one clear line when a training sample lacks it
    noaif = tmp_path / "noaif"
    shutil.copytree(tiny_dataset, noaif)
    (noaif / "s001" / "aif.png").unlink()
    capsys.readouterr()
    rc = main(["train", str(noaif), "--out", str(tmp_path / "r2"), "--model", "gurwolf", "--max-steps", "1", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "aif.png" in err[0]
    # depth supervision does not need the AIF (the input falls back to the fused stack)
    (noaif / "s000" / "aif.png").unlink()
    (noaif / "s002" / "aif.png").unlink()
    assert main(["train", str(noaif), "--out", str(tmp_path / "r3"), "--model", "gurwolf", "--max-steps", "1",
                 "--supervision", "depth", *TINY]) == 0


def test_synth_focus_setup(tmp_path):
    out = tmp_path / "f2"
    assert main(["synth", str(out), "--num", "1", "--size", "16", "16", "--focus-setup", "F2", "--quiet"]) == 0
    cam = json.loads(next(out.glob("*/camera.json")).read_text())
    assert cam["focus_distances_m"] == pytest.approx([0.8, 3.2]) and cam["depth_range_m"] == [0.5, 4.0]
