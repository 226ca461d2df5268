"""DDFS (Fujimura et al. 2024): Wiener deconvolution (vs known blur, vs a per-image loop), the cost
volume (minimum at the true depth, camera-scaling invariance), the network, scale augmentation and
training/predict/eval through the CLI."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from focalstack.models import full_options
from focalstack.cli import main
from focalstack.models import MODELS, DDFSNet, build_model, count_parameters, predict_batch
from focalstack.models.ddfs import (adaptive_aggregation, ddfs_cost_volume, depth_hypotheses, hypothesis_coc_px,
                                    outlier_bound, psf_kernels, soft_argmin_depth, wiener_deconvolve)
from focalstack.optics import CameraBatch, get_preset
from focalstack.render import render_stack
from focalstack.train import TrainConfig
from focalstack.train.trainer import scale_batch, scale_factors

TINY = ["--width", "4", "--levels", "2", "--crop", "16", "16", "--batch-size", "2", "--workers", "0",
        "--kernel-size", "7", "--no-progress", "--no-tensorboard", "--val-samples", "1",
        "--model-opt", "num_hypotheses=6"]


def _texture(h=48, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = F.interpolate(torch.rand(1, 3, h // 2, w // 2, generator=g), size=(h, w), mode="bilinear")
    return (0.5 * t + 0.25 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)


def _circular_blur(img, kernel):
    """Circular convolution with a centred kernel (exactly what periodic Wiener deconvolution inverts)."""
    h, w = img.shape[-2:]
    k = kernel.shape[-1]
    full = torch.zeros(h, w, dtype=torch.float64)
    full[:k, :k] = kernel.double()
    full = torch.roll(full, (-(k // 2), -(k // 2)), dims=(0, 1))
    return torch.fft.ifft2(torch.fft.fft2(img.double()) * torch.fft.fft2(full)).real.float()


def test_wiener_inverts_a_known_gaussian_blur():
    img = _texture(32, 32)[0]
    k = psf_kernels(torch.tensor([0.7]), "gaussian", radius=3)                   # [1,7,7]
    blurred = _circular_blur(img, k[0])
    out = wiener_deconvolve(blurred.view(1, 1, 3, 32, 32), k.view(1, 1, 1, 7, 7), balance=1e-10, margin=0)
    assert out.shape == (1, 1, 1, 3, 32, 32)
    assert (out[0, 0, 0] - img).abs().max() < 1e-3                                # an exact inverse
    # the true σ recovers the image better than wrong ones (spatial blur, reflect padding, default balance)
    import kornia
    blurred = kornia.filters.gaussian_blur2d(img[None], (13, 13), (1.2, 1.2), border_type="reflect")
    sig = torch.tensor([0.4, 0.8, 1.2, 1.6, 2.0])
    ks = psf_kernels(sig, "gaussian", radius=6).view(1, 1, 5, 13, 13)
    out = wiener_deconvolve(blurred.view(1, 1, 3, 32, 32), ks, balance=1e-3)[0, 0]
    err = (out - img).abs()[..., 4:-4, 4:-4].mean(dim=(1, 2, 3))
    assert int(err.argmin()) == 2 and err[2] < 0.85 * (blurred[0] - img).abs()[..., 4:-4, 4:-4].mean()


def _wiener_loop(images, kernels, balance, margin):
    """Reference: one image, one kernel, one channel at a time with numpy's full complex FFT."""
    b, f, c, h, w = images.shape
    d, k = kernels.shape[2], kernels.shape[-1]
    r = k // 2
    lap = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=np.float64)
    out = np.zeros((b, f, d, c, h, w))
    for bi in range(b):
        for fi in range(f):
            for di in range(d):
                for ci in range(c):
                    x = np.pad(images[bi, fi, ci].numpy().astype(np.float64), margin, mode="reflect")
                    hp, wp = x.shape
                    K = np.zeros((hp, wp))
                    K[:k, :k] = kernels[bi, fi, di].numpy()
                    K = np.roll(K, (-r, -r), axis=(0, 1))
                    L = np.zeros((hp, wp))
                    L[:3, :3] = lap
                    L = np.roll(L, (-1, -1), axis=(0, 1))
                    Kf, Lf = np.fft.fft2(K), np.fft.fft2(L)
                    X = np.conj(Kf) * np.fft.fft2(x) / (np.abs(Kf) ** 2 + balance * np.abs(Lf) ** 2)
                    out[bi, fi, di, ci] = np.real(np.fft.ifft2(X))[margin:margin + h, margin:margin + w]
    return torch.from_numpy(out)


@pytest.mark.parametrize("psf", ["gaussian", "disk"])
def test_batched_fft_matches_a_loop(psf):
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(2, 2, 3, 11, 9, generator=g)
    sig = torch.rand(2, 2, 3, generator=g) * 1.5
    ks = psf_kernels(sig, psf, radius=3)
    fast = wiener_deconvolve(imgs, ks, balance=0.01)
    ref = _wiener_loop(imgs, ks, 0.01, 3)
    assert fast.shape == (2, 2, 3, 3, 11, 9)
    assert torch.allclose(fast.double(), ref, atol=2e-5)
    assert torch.allclose(ks.sum(dim=(-2, -1)), torch.ones(2, 2, 3))


def test_cost_volume_minimum_at_the_true_depth():
    cam = get_preset("procedural")
    cb = CameraBatch.from_cameras([cam])
    hyp = depth_hypotheses(torch.tensor([[0.5, 4.0]]), 16)
    tex = _texture()
    for d0 in (0.9, 1.5, 2.5):
        frames = render_stack(tex, torch.full((1, 1, 48, 48), d0), cam, kernel_size=15)
        cost, cand = ddfs_cost_volume(frames, cb.focus_distances_m, cb, hyp)
        assert cost.shape == (1, 16, 48, 48) and cand.shape == (1, 16, 3, 48, 48)
        assert cost.min() >= 0 and cost.max() <= 1
        true = int((1.0 / hyp[0] - 1.0 / d0).abs().argmin())
        idx = cost[0, :, 8:-8, 8:-8].argmin(0)
        assert ((idx - true).abs() <= 1).float().mean() > 0.8, (d0, true, torch.bincount(idx.flatten()))
        # the deblurred candidate at the true depth is closer to the AIF than the frames are on average
        assert (cand[0, true] - tex[0]).abs().mean() < (frames[0] - tex).abs().mean()


def test_camera_scaling_leaves_the_cost_volume_unchanged():
    """FocalStackCamera.scaled(s) with the hypotheses × s gives the same CoCs, hence the same volume."""
    cam = get_preset("procedural")
    frames = render_stack(_texture(24, 24), torch.full((1, 1, 24, 24), 1.3), cam, kernel_size=11)
    hyp = depth_hypotheses(torch.tensor([[0.5, 4.0]]), 8)
    a = CameraBatch.from_cameras([cam])
    b = CameraBatch.from_cameras([cam.scaled(3.0)])
    assert torch.allclose(hypothesis_coc_px(a, a.focus_distances_m, hyp),
                          hypothesis_coc_px(b, b.focus_distances_m, hyp * 3), rtol=1e-4)
    ca, _ = ddfs_cost_volume(frames, a.focus_distances_m, a, hyp)
    cb, _ = ddfs_cost_volume(frames, b.focus_distances_m, b, hyp * 3)
    assert torch.allclose(ca, cb, atol=1e-3)


def test_small_pieces():
    assert abs(float(outlier_bound(torch.tensor(0.3))) - 0.999) < 1e-6
    assert float(outlier_bound(torch.tensor(0.0))) == 0.0
    hyp = depth_hypotheses(torch.tensor([[0.5, 4.0]]), 5)
    assert torch.allclose(hyp[0, [0, -1]], torch.tensor([0.5, 4.0]))
    assert torch.allclose(torch.diff(1.0 / hyp[0]), torch.full((4,), -0.4375))
    # soft-argmin: a confident distribution gives its hypothesis; any gives a depth inside the range
    logits = torch.full((1, 5, 2, 2), -50.0)
    logits[:, 2] = 50.0
    d, p = soft_argmin_depth(logits, hyp)
    assert torch.allclose(d, hyp[0, 2].expand_as(d)) and torch.allclose(p.sum(1), torch.ones(1, 2, 2))
    # aggregation with zero offsets and all weight on the centre neighbour is the identity
    c = torch.rand(2, 4, 5, 7)
    wts = torch.zeros(2, 9, 5, 7)
    wts[:, 4] = 1.0
    assert torch.allclose(adaptive_aggregation(c, torch.zeros(2, 18, 5, 7), wts), c, atol=1e-6)


def test_network_shapes_range_gradients():
    assert MODELS["ddfs"] is DDFSNet and count_parameters(build_model("ddfs")) < 2e6
    torch.manual_seed(0)
    m = build_model("ddfs", width=4, levels=2, num_hypotheses=6)
    cam = get_preset("procedural")
    for f, hw in ((1, (9, 11)), (2, (17, 13)), (5, (16, 16))):
        c = cam.subset(list(range(f)))
        cb = CameraBatch.from_cameras([c, c])
        out = m(torch.rand(2, f, 3, *hw), cb, torch.tensor([[0.5, 4.0], [1.0, 2.0]]))
        d = out["depth_m"]
        assert d.shape == (2, 1, *hw) and out["aif"].shape == (2, 3, *hw) and out["prob"].shape == (2, 6, *hw)
        assert (d[0] >= 0.5 - 1e-5).all() and (d[0] <= 4.0 + 1e-5).all()
        assert (d[1] >= 1.0 - 1e-5).all() and (d[1] <= 2.0 + 1e-5).all()
    (d.mean() + out["aif"].mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    with pytest.raises(ValueError, match="needs the camera"):
        m(torch.rand(1, 2, 3, 8, 8), torch.tensor([[0.6, 1.2]]), (0.5, 4.0))
    with pytest.raises(ValueError, match="full camera"):
        predict_batch(m, torch.rand(5, 3, 8, 8), torch.tensor(cam.focus_distances_m), depth_range=(0.5, 4.0))
    o = predict_batch(m, torch.rand(5, 3, 12, 10), cam)
    assert o["depth_m"].shape == (1, 1, 12, 10)


def test_scale_augmentation():
    s = scale_factors(1.0, 9.0, 0.5, 64, seed=3, step_index=5)
    assert torch.equal(s, scale_factors(1.0, 9.0, 0.5, 64, seed=3, step_index=5))
    assert ((s * 2) == (s * 2).round()).all() and s.min() >= 1.0 and s.max() <= 9.0 and len(set(s.tolist())) > 5
    cam = get_preset("procedural")
    batch = {"camera": CameraBatch.from_cameras([cam, cam]), "depth": torch.tensor([1.0, 2.0]).view(2, 1, 1, 1)}
    out = scale_batch(batch, torch.tensor([2.0, 4.0]))
    assert torch.allclose(out["depth"].flatten(), torch.tensor([2.0, 8.0]))
    ref = CameraBatch.from_cameras([cam.scaled(2.0), cam.scaled(4.0)])
    for k in CameraBatch.KEYS:
        assert torch.allclose(getattr(out["camera"], k), getattr(ref, k))
    d = torch.full((2, 1, 1, 1), 1.5)
    assert torch.allclose(out["camera"].coc_px(d * torch.tensor([2.0, 4.0]).view(2, 1, 1, 1)),
                          batch["camera"].coc_px(d), rtol=1e-5)
    with pytest.raises(ValueError, match="depth range"):
        TrainConfig(data_dir="x", scale_aug=(1.0, 3.0))


def test_cli_train_predict_eval(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(tiny_dataset), "--out", str(run), "--model", "ddfs", "--max-steps", "3",
                 "--supervision", "depth", "--scale-aug", "1", "2", "--depth-range", "0.5", "6", *TINY]) == 0
    meta = json.loads((run / "last.json").read_text())
    assert meta["model"] == {"name": "ddfs", "cfg": full_options("ddfs", {"width": 4, "levels": 2, "num_hypotheses": 6})}
    assert meta["config"]["scale_aug"] == [1.0, 2.0] and meta["depth_range_m"] == [0.5, 6.0]
    pred = tmp_path / "pred"
    assert main(["predict", str(tiny_dataset), "--method", "net", "--checkpoint", str(run), "-o", str(pred)]) == 0
    assert main(["eval", str(pred), str(tiny_dataset)]) == 0
    m = json.loads((pred / "metrics.json").read_text())
    assert m["n_samples"] == 3 and 0.0 <= m["mean"]["delta1"] <= 1.0
    # fully self-supervised through the renderer (beyond the paper) also runs
    assert main(["train", str(tiny_dataset), "--out", str(tmp_path / "self"), "--model", "ddfs",
                 "--max-steps", "2", *TINY]) == 0


def test_cli_bad_model_option_is_one_line(tiny_dataset, tmp_path, capsys):
    rc = main(["train", str(tiny_dataset), "--out", str(tmp_path / "r"), "--model", "ddfs", "--max-steps", "1",
               "--model-opt", "nonsense=3", *TINY[:-2]])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nonsense" in err[0]
