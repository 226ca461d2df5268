import math

import numpy as np
import pytest
import torch

from focalstack.cli import main
from focalstack.data import collate_stacks, list_samples, load_camera
from focalstack.optics.distribution import CAMERA_DISTRIBUTIONS, CameraDistribution, get_camera_distribution


def _max_sigma(cam, depth_range_m=None):
    near, far = depth_range_m or cam.effective_depth_range_m()
    return max(float(cam.lens.sigma_px(d, fd, n)) for fd, n in zip(cam.focus_distances_m, cam.frame_f_numbers())
               for d in (near, far))


def test_draws_are_deterministic_and_inside_the_documented_ranges():
    dist = get_camera_distribution("general")
    draws = [dist.sample_scene([0, i], 192) for i in range(60)]
    cams = [c for c, _ in draws]
    assert cams[7] == dist.sample([0, 7], 192) and cams[7] != cams[8]
    for c, (near, far) in draws:
        # the stated range holds the scene's with the documented slack at each end
        lo, hi = c.depth_range_m
        assert near / dist.range_slack[1] - 1e-9 <= lo <= near + 1e-9 and far - 1e-9 <= hi <= far * dist.range_slack[1] + 1e-9
        assert dist.frames[0] <= c.num_frames <= dist.frames[1]
        assert dist.focal_length_mm[0] <= c.lens.focal_length_m * 1e3 <= dist.focal_length_mm[1]
        assert dist.f_number[0] - 1e-9 <= c.lens.f_number <= dist.f_number[1] + 1e-9
        assert all(near - 1e-9 <= fd <= far + 1e-9 for fd in c.focus_distances_m)
        # the f-number is solved for the drawn largest blur over the scene
        assert dist.sigma_max_px[0] - 1e-6 <= _max_sigma(c, (near, far)) <= dist.sigma_max_px[1] + 1e-6
        # pixel pitch = sensor width (2 f tan(fov/2)) / image width
        fov = math.degrees(2 * math.atan(c.lens.pixel_size_m * 192 / (2 * c.lens.focal_length_m)))
        assert dist.fov_deg[0] - 1e-6 <= fov <= dist.fov_deg[1] + 1e-6
    # phones to DSLRs: the draws span the range
    fl = [c.lens.focal_length_m * 1e3 for c in cams]
    assert min(fl) < 10 and max(fl) > 40
    assert len({c.num_frames for c in cams}) >= 5
    # stated ranges are loose brackets, not the scene's extent (optics.distribution step 6)
    slack = [math.log(c.depth_range_m[1] / far) for c, (_, far) in draws]
    assert max(slack) > math.log(2.0) and min(slack) < math.log(1.3)


def test_range_slack_changes_only_the_stated_range():
    tight = CameraDistribution(name="t", range_slack=(1.0, 1.0))
    loose = CameraDistribution(name="t")
    for i in range(10):
        a, scene_a = tight.sample_scene([1, i], 256)
        b, scene_b = loose.sample_scene([1, i], 256)
        assert a.depth_range_m == scene_a == scene_b
        assert (a.lens, a.focus_distances_m) == (b.lens, b.focus_distances_m)
        assert b.depth_range_m[0] <= scene_b[0] and b.depth_range_m[1] >= scene_b[1]
    with pytest.raises(ValueError, match="range_slack"):
        CameraDistribution(range_slack=(0.5, 2.0))


def test_given_depth_range_and_two_aperture_pairs():
    dist = CameraDistribution(name="t", two_aperture=1.0)
    c, scene = dist.sample_scene(3, 645, depth_range_m=(0.4, 9.0))
    assert scene == (0.4, 9.0) and c.depth_range_m[0] <= 0.4 and c.depth_range_m[1] >= 9.0
    assert c.num_frames == 2 and c.focus_distances_m[0] == c.focus_distances_m[1]
    assert c.f_numbers[1] > c.f_numbers[0]
    with pytest.raises(KeyError, match="unknown camera distribution"):
        get_camera_distribution("nope")
    with pytest.raises(ValueError):
        CameraDistribution(frames=(0, 3))
    assert set(CAMERA_DISTRIBUTIONS) >= {"general"}


def test_collate_pads_stacks_by_repeating_their_own_frames():
    def item(f, v):
        return {"frames": torch.full((f, 3, 4, 5), float(v)) + torch.arange(f).view(f, 1, 1, 1) / 10,
                "camera": {"focal_length_m": torch.tensor(0.05), "pixel_size_m": torch.tensor(1e-5),
                           "psf_scale": torch.tensor(0.25), "focus_distances_m": torch.arange(1.0, f + 1.0),
                           "f_numbers": torch.full((f,), 2.0)},
                "index": v}
    b = collate_stacks([item(5, 0), item(2, 1), item(3, 2)])
    assert b["frames"].shape == (3, 5, 3, 4, 5)
    assert b["camera"]["focus_distances_m"][1].tolist() == [1.0, 2.0, 1.0, 2.0, 1.0]
    assert b["camera"]["focus_distances_m"][2].tolist() == [1.0, 2.0, 3.0, 1.0, 2.0]
    # frame k of a padded stack is its own frame k mod F, with that frame's focus distance
    assert torch.equal(b["frames"][1, 2], b["frames"][1, 0]) and torch.equal(b["frames"][2, 4], b["frames"][2, 1])
    assert b["index"].tolist() == [0, 1, 2]


def test_synth_camera_distribution_writes_a_camera_per_stack_and_resumes(tmp_path, capsys):
    out = tmp_path / "pre"
    argv = ["synth", str(out), "--num", "4", "--size", "40", "48", "--camera-distribution", "general", "--quiet"]
    assert main(argv) == 0
    cams = [load_camera(p) for p in list_samples(out)]
    assert len(cams) == 4 and len({c.lens for c in cams}) == 4
    assert all(len(list(p.glob("frame_*.png"))) == c.num_frames for p, c in zip(list_samples(out), cams))
    # each procedural scene fills the range its camera was drawn for, not the camera's looser stated range
    for i, p in enumerate(list_samples(out)):
        cam, (near, far) = get_camera_distribution("general").sample_scene([0, i, 2], 48)
        assert cam == load_camera(p)
        depth = np.load(p / "depth.npy")
        assert near - 1e-4 <= depth.min() and depth.max() <= far + 1e-4
    assert main(argv) == 0
    assert "skipped 4" in capsys.readouterr().out
    assert main(argv[:-1] + ["--f-number", "2", "--quiet"]) == 2   # a fixed lens value makes no sense per-stack draws


def test_a_shallow_scene_gets_a_wider_camera_range_that_holds_it():
    c, (near, far) = get_camera_distribution("general").sample_scene([0, 5, 2], 322, depth_range_m=(2.9, 3.1))
    assert near <= 2.9 and far >= 3.1 and (near, far) != (2.9, 3.1)
    assert c.depth_range_m[0] <= near and c.depth_range_m[1] >= far
