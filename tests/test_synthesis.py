"""RGB-D → focal-stack synthesis (plain and occlusion-aware) and the RGB-D sources."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from focalstack.data.rgbd import (DSLR_SYNTH_CAMERA, SOURCES, dslr_pairs, get_source, read_depth_m)
from focalstack.data.io import SampleError
from focalstack.data.synthesis import (depth_layers, fill_invalid_depth, make_sample, resize_rgbd,
                                       synthesize_stack)
from focalstack.optics import get_preset
from focalstack.render import light
from focalstack.render.psf import support_radius_px

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CAM = get_preset("procedural")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def need(folder: str) -> Path:
    p = DATA / folder
    if not p.is_dir():
        pytest.skip(f"{p} not available")
    return p


def texture(h=48, w=48, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((3, h, w), dtype=np.float32))


def gaussian_blur(img, sigma):
    """Normalised Gaussian truncated at ±ceil(3σ), zero padding (valid in the interior)."""
    r = support_radius_px(sigma, "gaussian")
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    k2 = (g[:, None] * g[None, :])
    k2 = (k2 / k2.sum()).to(img.dtype).view(1, 1, 2 * r + 1, 2 * r + 1).expand(3, 1, -1, -1)
    return F.conv2d(F.pad(img[None], (r,) * 4), k2, groups=3)[0], r


# ---- synthesis --------------------------------------------------------------------------------
@pytest.mark.parametrize("occ", [False, True])
def test_constant_depth_equals_gaussian_blur(occ):
    aif = texture()
    depth = torch.full((48, 48), 1.0)
    frames = synthesize_stack(aif, depth, CAM, occlusion_aware=occ)
    sig = CAM.sigma_px(depth.view(1, 1, 48, 48))[0, :, 0, 0, 0]
    for k in range(CAM.num_frames):
        s = float(sig[k])
        if s < 1e-3:
            assert torch.allclose(frames[k], aif, atol=1e-5)
            continue
        ref, r = gaussian_blur(light.to_linear(aif), s)      # the optics blur linear light (by default)
        ref = light.from_linear(ref)
        assert torch.allclose(frames[k][:, r:-r, r:-r], ref[:, r:-r, r:-r], atol=1e-4), (occ, k, s)
    # both modes renormalise at the image border the same way
    other = synthesize_stack(aif, depth, CAM, occlusion_aware=not occ)
    assert torch.allclose(frames, other, atol=1e-4)


@pytest.mark.parametrize("occ", [False, True])
def test_gaussian_matched_renders_the_gaussian_of_matched_width_in_both_modes(occ):
    from focalstack.render.psf import matched_gaussian_sigma
    aif = texture()
    depth = torch.full((48, 48), 1.9)         # σ of 0.1–1.4 px over the frames: where the two PSFs differ
    frames = synthesize_stack(aif, depth, CAM, occlusion_aware=occ, psf="gaussian_matched")
    plain = synthesize_stack(aif, depth, CAM, occlusion_aware=occ)
    sig = CAM.sigma_px(depth.view(1, 1, 48, 48))[0, :, 0, 0, 0]
    differ = 0
    for k in range(CAM.num_frames):
        s = float(sig[k])
        if s < 1e-3:
            continue
        m = float(matched_gaussian_sigma(torch.tensor(s, dtype=torch.float64)))
        ref, r = gaussian_blur(light.to_linear(aif), m)
        ref = light.from_linear(ref)
        assert torch.allclose(frames[k][:, r:-r, r:-r], ref[:, r:-r, r:-r], atol=1e-4), (occ, k, s)
        differ += int(s < 0.6 and (frames[k] - plain[k]).abs().mean() > 1e-3)
    assert differ >= 1


def _two_depth_scene():
    h, w, edge = 32, 48, 24
    depth = torch.full((h, w), 3.0)
    depth[:, :edge] = 0.6            # near on the left, far on the right
    return depth, edge


def test_modes_agree_in_flat_regions():
    depth, edge = _two_depth_scene()
    aif = texture(32, 48, 1)
    plain = synthesize_stack(aif, depth, CAM)
    layered = synthesize_stack(aif, depth, CAM, occlusion_aware=True)
    smax = float(CAM.sigma_px(depth.view(1, 1, *depth.shape)).max())
    r = support_radius_px(smax, "gaussian") + 2
    flat = torch.ones(48, dtype=torch.bool)
    flat[edge - r: edge + r] = False
    assert torch.allclose(plain[..., flat], layered[..., flat], atol=1e-4)
    assert not torch.allclose(plain[..., ~flat], layered[..., ~flat], atol=1e-3)


def test_occlusion_aware_near_blur_spreads_over_far_side():
    depth, edge = _two_depth_scene()
    aif = torch.zeros(3, 32, 48)
    aif[:, :, :edge] = 1.0            # white near object, black far background
    kfar = CAM.focus_distances_m.index(3.0)   # far in focus, near blurred
    knear = CAM.focus_distances_m.index(0.6)  # near in focus, far blurred
    assert float(CAM.sigma_px(torch.full((1, 1, 1, 1), 0.6))[0, kfar]) > 1.0
    plain = synthesize_stack(aif, depth, CAM)
    layered = synthesize_stack(aif, depth, CAM, occlusion_aware=True)
    far_side = slice(edge, edge + 2)
    # gather model: the sharp far pixels keep their own colour; layered: the blurred near object
    # covers them partially ("over")
    assert float(plain[kfar, :, 8:24, far_side].max()) < 0.02
    assert float(layered[kfar, :, 8:24, edge].mean()) > 0.2
    assert float(layered[kfar, :, 8:24, far_side].mean()) > float(plain[kfar, :, 8:24, far_side].mean()) + 0.1
    # near in focus: the blurred far background never bleeds over the near object's edge
    assert float(layered[knear, :, 8:24, edge - 1].min()) > 0.999
    # and the near side of the edge still shows the blurred near object fading out
    assert float(layered[kfar, :, 8:24, edge - 1].mean()) < 0.95


def test_depth_layers_uniform_in_inverse_depth():
    d = torch.tensor([[0.5, 1.0, 2.0, 4.0]])
    labels, reps = depth_layers(d, 8)
    assert labels.tolist() == [[3, 2, 1, 0]]              # 0 = farthest
    assert np.allclose(reps, [4.0, 2.0, 1.0, 0.5])          # empty bins dropped, exact reps
    labels, reps = depth_layers(torch.full((3, 3), 1.5), 16)
    assert labels.max() == 0 and np.allclose(reps, [1.5])


def test_invalid_depth_filled_and_all_invalid_raises():
    d = torch.tensor([[1.0, 0.0, float("nan")], [2.0, float("inf"), 3.0]])
    f = fill_invalid_depth(d)
    assert torch.isfinite(f).all() and (f > 0).all()
    assert f[0, 1] in (1.0, 2.0, 3.0) and f[0, 0] == 1.0 and f[1, 2] == 3.0
    with pytest.raises(ValueError, match="myscene.png: depth has no valid pixels"):
        fill_invalid_depth(torch.zeros(4, 4), source="myscene.png")
    with pytest.raises(ValueError, match="no valid pixels"):
        synthesize_stack(texture(4, 4), torch.full((4, 4), float("nan")), CAM)
    aif = texture(16, 16)
    dep = torch.full((16, 16), 1.2)
    dep[4:8, 4:8] = 0
    s = make_sample(aif, dep, CAM, "holes", noise_std=0)
    assert torch.isfinite(s.frames).all()
    assert (s.depth_m[4:8, 4:8] == 0).all() and (s.depth_m[:4] == 1.2).all()  # invalid stays marked


def test_resize_rgbd():
    aif, dep = texture(40, 60), torch.rand(40, 60) + 1
    a, d = resize_rgbd(aif, dep, 0.5)
    assert a.shape == (3, 20, 30) and d.shape == (20, 30)
    assert set(np.unique(d.numpy())) <= set(np.unique(dep.numpy()))  # nearest: no invented depths


# ---- RGB-D sources -----------------------------------------------------------------------------
def test_registry_names():
    assert set(SOURCES) == {"dslr_indoor", "middlebury", "nyuv2", "folder"}
    with pytest.raises(ValueError, match="unknown RGB-D source"):
        get_source("kinect")


def test_dslr_pairs_use_pairs_csv():
    root = need("dfd_indoor_carvalho2018")
    pairs = dslr_pairs(root)
    assert len(pairs) == 81
    p = pairs[0]
    assert p.rgb_f8.name == "2018-04-26T16:38:31.689710.JPG"
    assert p.depth.name == "2018-04-26T16:38:31.655986.png"
    assert p.rgb_f2_8.parent.name == "rgb_f2.8" and p.rgb_f2_8.name == p.rgb_f8.name
    # file names differ between RGB and depth, so pairing by name cannot work
    assert all(q.rgb_f8.stem != q.depth.stem for q in pairs)
    src = get_source("dslr_indoor", root)
    name, aif, depth = src.load(0)
    assert aif.shape == (3, 432, 645) and depth.shape == (432, 645)
    assert 0.2 < float(depth.min()) and float(depth.max()) < 10.0   # mm → m
    assert src.records[0].extra["rgb_f2_8"] == p.rgb_f2_8
    assert src.default_camera == DSLR_SYNTH_CAMERA


def test_dslr_pairing_differs_from_sorted_order(tmp_path):
    """A mirror of the set with one extra depth capture (as in the original test split): pairs.csv
    still gives the right pairs, sorted-order pairing would shift every one."""
    root = need("dfd_indoor_carvalho2018")
    with open(root / "pairs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:4]
    for sub in ("rgb_f2.8", "rgb_f8", "depth_mm"):
        (tmp_path / "train" / sub).mkdir(parents=True)
    for r in rows:
        for sub in ("rgb_f2.8", "rgb_f8"):
            os.symlink(root / "train" / sub / r["rgb_file"], tmp_path / "train" / sub / r["rgb_file"])
        os.symlink(root / "train" / "depth_mm" / r["depth_file"], tmp_path / "train" / "depth_mm" / r["depth_file"])
    orphan = "2018-04-26T16:00:00.000000.png"    # a depth frame with no RGB, sorting first
    os.symlink(root / "train" / "depth_mm" / rows[0]["depth_file"], tmp_path / "train" / "depth_mm" / orphan)
    with open(tmp_path / "pairs.csv", "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    pairs = dslr_pairs(tmp_path)
    assert [(p.rgb_f8.name, p.depth.name) for p in pairs] == [(r["rgb_file"], r["depth_file"]) for r in rows]
    by_sort = list(zip(sorted(os.listdir(tmp_path / "train" / "rgb_f8")),
                       sorted(os.listdir(tmp_path / "train" / "depth_mm"))))
    assert sum(a != (p.rgb_f8.name, p.depth.name) for a, p in zip(by_sort, pairs)) >= 1
    (tmp_path / "pairs.csv").unlink()
    with pytest.raises(SampleError, match="pairs.csv"):
        dslr_pairs(tmp_path)


def test_middlebury_metric_depth():
    need("middlebury2014_motorcycle_quarter")
    src = get_source("middlebury", DATA / "middlebury2014_motorcycle_quarter")
    name, aif, depth = src.load(0)
    assert name == "motorcycle" and aif.shape == (3, 500, 741) and depth.shape == (500, 741)
    valid = depth > 0
    assert 0.85 < float(valid.float().mean()) < 0.97             # +inf disparity → invalid
    v = depth[valid]
    assert 2.0 < float(v.min()) and float(v.max()) < 5.2
    assert 2.6 < float(v.median()) < 2.9


def test_nyuv2_depth_units():
    need("nyuv2_sample_0045")
    src = get_source("nyuv2", DATA / "nyuv2_sample_0045")
    name, aif, depth = src.load(0)
    assert name == "nyuv2_0045" and aif.shape == (3, 480, 640)
    assert 0.6 < float(depth.min()) and float(depth.max()) < 2.0     # 0.1 mm units → 0.71–1.91 m
    assert abs(src.default_camera.lens.pixel_size_m - 6e-6) < 1e-12  # nyuv2_dered at 640 px


def test_folder_source(tmp_path):
    from focalstack.data.io import write_image
    import cv2

    aif = texture(12, 16)
    write_image(tmp_path / "a.png", aif)
    np.save(tmp_path / "a_depth.npy", np.full((12, 16), 1.5, np.float32))
    write_image(tmp_path / "b.jpg", aif)
    cv2.imwrite(str(tmp_path / "b_depth.png"), np.full((12, 16), 2500, np.uint16))
    (tmp_path / "notes.txt").write_text("ignored")
    with pytest.raises(SampleError, match="depth-scale"):
        get_source("folder", tmp_path)
    src = get_source("folder", tmp_path, depth_scale=1e-3)
    got = {n: (a, d) for n, a, d in src}
    assert set(got) == {"a", "b"}
    assert torch.allclose(got["b"][1], torch.full((12, 16), 2.5))
    assert torch.allclose(got["a"][1], torch.full((12, 16), 1.5e-3))  # npy × depth_scale
    assert torch.allclose(read_depth_m(get_source("folder", tmp_path, depth_scale=1.0).records[0]),
                          torch.full((12, 16), 1.5))
    with pytest.raises(SampleError, match="no such folder"):
        get_source("folder", tmp_path / "missing")
