"""Procedural scenes: determinism, depth range, z-order, texture, sharpness vs focus, noise/quantisation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from focalstack.data.procedural import (SHAPE_KINDS, TEXTURE_KINDS, generate_scene, make_procedural_sample,
                                        random_texture, zbuffer_paint)
from focalstack.data.synthesis import synthesize_stack
from focalstack.optics import FocalStackCamera, ThinLens, get_preset

CAM = get_preset("procedural")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_generate_scene_deterministic_by_seed():
    a1, d1 = generate_scene(7, (64, 64))
    a2, d2 = generate_scene(7, (64, 64))
    assert torch.equal(a1, a2) and torch.equal(d1, d2)
    a3, d3 = generate_scene(8, (64, 64))
    assert not torch.equal(a1, a3) and not torch.equal(d1, d3)
    a4, _ = generate_scene([7, 1], (64, 64))  # sequence seeds (used by the CLI) are distinct too
    assert not torch.equal(a1, a4)


@pytest.mark.parametrize("rng_", [(0.5, 4.0), (0.1, 3.0), (2.0, 5.5)])
def test_scene_shapes_and_depth_range(rng_):
    for seed in range(4):
        aif, depth = generate_scene(seed, (48, 40), rng_)
        assert aif.shape == (3, 48, 40) and depth.shape == (48, 40)
        assert aif.dtype == torch.float32 and depth.dtype == torch.float32
        assert float(aif.min()) >= 0 and float(aif.max()) <= 1
        assert float(depth.min()) >= rng_[0] - 1e-6 and float(depth.max()) <= rng_[1] + 1e-6
        assert torch.isfinite(depth).all()
        # objects in front of the wall: more than one depth level
        assert float(depth.max() / depth.min()) > 1.2


def test_bad_arguments():
    with pytest.raises(ValueError, match="near < far"):
        generate_scene(0, (32, 32), (3.0, 1.0))
    with pytest.raises(ValueError, match="8"):
        generate_scene(0, (4, 32))


def test_strong_texture_everywhere():
    for seed in range(6):
        aif, _ = generate_scene(seed, (64, 64))
        lum = aif.mean(0).numpy()
        m, m2 = ndimage.uniform_filter(lum, 5), ndimage.uniform_filter(lum * lum, 5)
        local_std = np.sqrt(np.clip(m2 - m * m, 0, None))
        assert np.mean(local_std > 0.02) > 0.8, seed


@pytest.mark.parametrize("kind", TEXTURE_KINDS)
def test_every_texture_kind_is_textured(kind):
    t = random_texture(np.random.default_rng(3), 48, 48, kind)
    assert t.shape == (48, 48, 3) and t.dtype == np.float32
    assert 0 <= t.min() and t.max() <= 1
    assert np.abs(np.diff(t.mean(-1), axis=1)).mean() > 0.01  # not flat


def test_zbuffer_nearer_object_wins_in_any_order():
    h = w = 16
    img = np.zeros((h, w, 3), np.float32)
    dep = np.full((h, w), 5.0, np.float32)
    red, blue = np.zeros_like(img), np.zeros_like(img)
    red[..., 0], blue[..., 2] = 1, 1
    m1 = np.zeros((h, w), bool)
    m1[2:10, 2:10] = True          # red square at 2 m
    m2 = np.zeros((h, w), bool)
    m2[6:14, 6:14] = True          # blue square at 1 m, overlapping
    d1, d2 = np.full((h, w), 2.0, np.float32), np.full((h, w), 1.0, np.float32)
    for order in ((red, d1, m1, blue, d2, m2), (blue, d2, m2, red, d1, m1)):
        i, d = zbuffer_paint(img, dep, *order[:3])
        i, d = zbuffer_paint(i, d, *order[3:])
        assert np.all(i[7, 7] == [0, 0, 1]) and d[7, 7] == 1.0   # overlap: the nearer (blue) wins
        assert np.all(i[3, 3] == [1, 0, 0]) and d[3, 3] == 2.0
        assert np.all(i[0, 0] == 0) and d[0, 0] == 5.0
    # an object behind the wall is hidden
    i, d = zbuffer_paint(img, dep, red, np.full((h, w), 9.0, np.float32), m1)
    assert np.all(i == 0) and np.all(d == 5.0)


def test_each_shape_kind_draws():
    for kind in SHAPE_KINDS:
        aif, depth = generate_scene(1, (64, 64), num_objects=(4, 4), shapes=(kind,))
        assert float(depth.max() / depth.min()) > 1.2, kind


def _lap_energy(frames):
    lum = frames.mean(1, keepdim=True)
    k = torch.tensor([[0., 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
    return (F.conv2d(lum, k, padding=1) ** 2)[:, 0].numpy()


def test_constant_depth_sharpest_in_matching_frame():
    aif, _ = generate_scene(2, (48, 48))
    for k, fd in enumerate(CAM.focus_distances_m):
        frames = synthesize_stack(aif, torch.full((48, 48), fd), CAM)
        e = _lap_energy(frames)[:, 6:-6, 6:-6].mean((1, 2))
        assert int(np.argmax(e)) == k
        assert torch.allclose(frames[k], aif, atol=1e-5)  # in focus: the AIF itself


def test_scene_frames_sharper_where_depth_matches_focus():
    checked = 0
    for seed in range(6):
        s = make_procedural_sample(seed, CAM, (96, 96), noise_std=0, quantize_bits=None)
        d = s.depth_m.numpy()
        sig = CAM.sigma_px(s.depth_m.view(1, 1, 96, 96))[0, :, 0].numpy()
        best, ss = sig.argmin(0), np.sort(sig, 0)
        flat = ndimage.maximum_filter(d, 9) / ndimage.minimum_filter(d, 9) < 1.05  # away from depth edges
        e = _lap_energy(s.frames)
        for k in range(CAM.num_frames):
            m = (best == k) & flat & (ss[1] - ss[0] > 0.3)
            if m.sum() >= 30:
                assert int(np.argmax([e[j][m].mean() for j in range(CAM.num_frames)])) == k, (seed, k)
                checked += 1
    assert checked >= 4


def test_sample_noise_quantisation_and_determinism():
    kw = dict(camera=CAM, size_hw=(40, 40))
    s1 = make_procedural_sample(3, noise_std=0.02, **kw)
    s2 = make_procedural_sample(3, noise_std=0.02, **kw)
    assert torch.equal(s1.frames, s2.frames) and torch.equal(s1.aif, s2.aif)
    assert s1.frames.shape == (CAM.num_frames, 3, 40, 40) and s1.depth_m.dtype == torch.float32
    s1.validate()
    # 8-bit quantisation of frames and AIF
    for t in (s1.frames, s1.aif):
        assert torch.allclose(t * 255, torch.round(t * 255), atol=1e-4)
    clean = make_procedural_sample(3, noise_std=0.0, quantize_bits=None, **kw)
    ref = synthesize_stack(clean.aif, clean.depth_m, CAM)
    assert torch.allclose(clean.frames, ref, atol=1e-6)          # no noise, no rounding: the render
    noise = (s1.frames - clean.frames)
    assert 0.012 < float(noise.std()) < 0.03                      # ≈ 0.02 plus rounding
    q = make_procedural_sample(3, noise_std=0.0, **kw)
    assert float((q.frames - clean.frames).abs().max()) <= 0.5 / 255 + 1e-6
    assert not torch.allclose(q.frames, clean.frames)


def test_any_camera_and_occlusion_aware():
    cam = FocalStackCamera(ThinLens(7.2e-3, 1.2, 5.6e-6 * 4), (0.3, 0.75, 1.8), depth_range_m=(0.2, 3.0))
    s = make_procedural_sample(0, cam, (32, 32), occlusion_aware=True)
    assert s.frames.shape == (3, 3, 32, 32) and s.camera == cam
    assert 0.2 - 1e-6 <= float(s.depth_m.min()) and float(s.depth_m.max()) <= 3.0 + 1e-6
