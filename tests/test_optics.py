import json
import math

import pytest
import torch

from focalstack.optics import PRESETS, CameraBatch, CameraError, FocalStackCamera, ThinLens, coc_table, get_preset
from focalstack.render import render_stack


def test_coc_by_hand():
    lens = ThinLens(0.05, 2.0, 10e-6)
    # C = (f/N)·|d − d_f|/d · f/(d_f − f) = 0.025 · 1/2 · 0.05/0.95
    expected_m = 0.025 * 0.5 * 0.05 / 0.95
    assert lens.coc_m(2.0, 1.0).item() == pytest.approx(expected_m, rel=1e-6)
    assert lens.coc_px(2.0, 1.0).item() == pytest.approx(expected_m / 10e-6, rel=1e-6)
    assert lens.sigma_px(2.0, 1.0).item() == pytest.approx(0.25 * expected_m / 10e-6, rel=1e-6)
    assert lens.coc_px(1.0, 1.0).item() == 0.0
    # per-frame f-number override
    assert lens.coc_m(2.0, 1.0, f_number=4.0).item() == pytest.approx(expected_m / 2, rel=1e-6)


def test_psf_scale_is_explicit():
    a = ThinLens(0.05, 2.0, 10e-6)
    b = ThinLens(0.05, 2.0, 10e-6, psf_scale=0.5)  # Gur & Wolf eq. 4
    assert b.sigma_px(3.0, 1.0).item() == pytest.approx(2 * a.sigma_px(3.0, 1.0).item())


def test_coc_broadcasts_and_is_differentiable():
    lens = ThinLens(0.012, 2.0, 15e-6)
    d = torch.linspace(0.5, 4.0, 7, dtype=torch.float64).view(1, 7).requires_grad_()
    fd = torch.tensor([0.6, 1.2, 3.0], dtype=torch.float64).view(3, 1)
    c = lens.coc_px(d, fd)
    assert c.shape == (3, 7)
    torch.autograd.gradcheck(lambda x: lens.coc_px(x, fd), (d,))
    # defocus grows on both sides of the focus plane
    c12 = c[1].detach()
    i = int(torch.argmin(c12))
    assert torch.all(c12[:i].diff() < 0) and torch.all(c12[i:].diff() > 0)


def test_depths_for_coc_inverts_coc():
    lens = ThinLens(0.035, 2.8, 36e-6)
    for fd in (0.8, 1.7, 3.0):
        for target in (0.5, 2.0, 5.0):
            near, far = lens.depths_for_coc(target, fd)
            assert near < fd
            assert lens.coc_px(near, fd).item() == pytest.approx(target, rel=1e-9)
            if math.isfinite(far):
                assert far > fd
                assert lens.coc_px(far, fd).item() == pytest.approx(target, rel=1e-9)
    # beyond the asymptote: everything behind the focus plane is sharper than that
    big = lens.max_coc_px(1.7) * 1.01
    assert math.isinf(lens.depths_for_coc(big, 1.7)[1])
    a, b = lens.depth_of_field(1.7, 1.0)
    assert a < 1.7 < b


def test_camera_sigma_shapes_and_per_frame_apertures():
    cam = FocalStackCamera(ThinLens(0.035, 2.8, 36e-6), (1.7, 1.7), f_numbers=(2.8, 8.0))
    depth = torch.full((2, 1, 4, 5), 3.0)
    s = cam.sigma_px(depth)
    assert s.shape == (2, 2, 1, 4, 5)
    assert s[0, 0, 0, 0, 0].item() == pytest.approx(s[0, 1, 0, 0, 0].item() * 8.0 / 2.8, rel=1e-5)
    cb = CameraBatch.from_cameras([cam, cam])
    assert torch.allclose(cb.sigma_px(depth), s)


def test_ddfs_scale_augmentation_leaves_blur_unchanged():
    cam = get_preset("procedural")
    torch.manual_seed(0)
    depth = torch.rand(1, 1, 24, 24, dtype=torch.float64) * 3 + 0.6
    aif = torch.rand(1, 3, 24, 24, dtype=torch.float64)
    for s in (0.1, 3.7):
        cs = cam.scaled(s)
        assert torch.allclose(cs.coc_px(depth * s), cam.coc_px(depth), rtol=1e-10)
        a = render_stack(aif, depth, cam, kernel_size=9)
        b = render_stack(aif, depth * s, cs, kernel_size=9)
        assert torch.allclose(a, b, atol=1e-10)
        assert cs.depth_range_m == pytest.approx((cam.depth_range_m[0] * s, cam.depth_range_m[1] * s))
    # sanity: scaling the depth alone does change the blur
    assert not torch.allclose(cam.coc_px(depth * 2), cam.coc_px(depth))


def test_presets_match_their_sources():
    p = PRESETS
    assert p["defocusnet"].lens.focal_length_m == 2.9e-3 and p["defocusnet"].lens.f_number == 1.0
    assert p["defocusnet"].lens.pixel_size_m == pytest.approx(3.1e-3 / 256)
    assert p["defocusnet"].focus_distances_m == (0.1, 0.15, 0.3, 0.7, 1.5)
    assert p["defocusnet_dered"].focus_distances_m == (0.3, 0.45, 0.75, 1.2, 1.8)
    assert (p["defocusnet_dered"].lens.focal_length_m, p["defocusnet_dered"].lens.f_number) == (7.2e-3, 1.2)
    assert p["nyuv2_dered"].focus_distances_m == (1.0, 1.5, 2.5, 4.0, 6.0)
    assert (p["nyuv2_dered"].lens.focal_length_m, p["nyuv2_dered"].lens.f_number,
            p["nyuv2_dered"].lens.pixel_size_m) == (50e-3, 8.0, 12e-6)
    assert p["dslr_indoor"].f_numbers == (2.8, 8.0)
    assert "approximate" in p["dslr_indoor"].source
    for name, cam in p.items():
        assert cam.source, name
    with pytest.raises(KeyError, match="unknown camera preset"):
        get_preset("nope")


def test_camera_json_roundtrip_and_errors(tmp_path):
    cam = FocalStackCamera(ThinLens(0.05, 4.0, 7.3e-5), (0.8, 1.2, 1.8), f_numbers=(4, 4, 8), depth_range_m=(0.5, 5))
    cam.save(tmp_path / "camera.json")
    assert FocalStackCamera.load(tmp_path / "camera.json") == cam
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CameraError, match="bad.json: malformed JSON"):
        FocalStackCamera.load(bad)
    bad.write_text(json.dumps({"focal_length_m": 0.05, "f_number": 4}))
    with pytest.raises(CameraError, match="missing key.*pixel_size_m.*focus_distances_m"):
        FocalStackCamera.load(bad)
    bad.write_text(json.dumps({**cam.to_dict(), "f_numbers": [4, 4]}))
    with pytest.raises(CameraError, match="f_numbers has 2 entries"):
        FocalStackCamera.load(bad)
    bad.write_text(json.dumps({**cam.to_dict(), "focus_distances_m": [0.01]}))
    with pytest.raises(CameraError, match="not beyond the focal length"):
        FocalStackCamera.load(bad)
    with pytest.raises(CameraError, match="camera file not found"):
        FocalStackCamera.load(tmp_path / "missing.json")


def test_coc_table_rows_are_coc():
    cam = get_preset("procedural")
    depths, rows = coc_table(cam, [0.6, 2.0])
    assert rows[0][0] == pytest.approx(0.0, abs=1e-9)  # 0.6 m is the first focus distance
    assert rows[1][2] == pytest.approx(cam.lens.coc_px(2.0, 1.2).item(), rel=1e-6)


def test_default_depth_range():
    cam = FocalStackCamera(ThinLens(0.05, 4.0, 1e-5), (1.0, 4.0))
    assert cam.effective_depth_range_m() == (0.5, 8.0)
