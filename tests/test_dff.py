"""Depth from focus: sub-frame peak, inverse-depth interpolation, recovery of a synthetic scene."""

import math

import pytest
import torch
import torch.nn.functional as F

from focalstack.classical import (depth_from_focus, focus_order, frame_position_to_inverse_depth,
                                  subframe_peak)
from focalstack.optics import FocalStackCamera, ThinLens, get_preset
from focalstack.render import render_stack


def test_frame_position_to_inverse_depth_by_hand():
    # focus 1 m and 2 m: halfway in frame position = halfway in inverse depth = 0.75 /m → 1.333 m
    rho = frame_position_to_inverse_depth(torch.tensor([0.0, 0.5, 1.0]), [1.0, 2.0])
    # sorted far → near: position 0 = 2 m (0.5 /m), position 1 = 1 m (1 /m)
    assert torch.allclose(rho, torch.tensor([0.5, 0.75, 1.0]))
    assert math.isclose(1 / float(rho[1]), 4 / 3, rel_tol=1e-6)
    # unsorted focus list: 4, 1, 2 m → sorted inverse 0.25, 0.5, 1.0
    rho = frame_position_to_inverse_depth(torch.tensor([0.5, 1.5, 2.0]), [4.0, 1.0, 2.0])
    assert torch.allclose(rho, torch.tensor([0.375, 0.75, 1.0]))


@pytest.mark.parametrize("interp,curve", [("parabolic", lambda r: 1 - (r - 0.6) ** 2),
                                          ("gaussian", lambda r: torch.exp(-(r - 0.6) ** 2 / 0.1))])
def test_subframe_peak_exact_on_uneven_inverse_depths(interp, curve):
    rho = torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64)     # focus 4, 2, 1 m (uneven in ρ)
    fv = curve(rho).view(1, 3, 1, 1)
    peak, k = subframe_peak(fv, rho, interp)
    assert int(k) == 1
    assert abs(float(peak) - 0.6) < 1e-9
    plain, _ = subframe_peak(fv, rho, "none")
    assert float(plain) == 0.5


def test_focus_order_sorts_far_to_near():
    cam = FocalStackCamera(ThinLens(0.01, 2, 1e-5), (1.0, 3.0, 0.5, 2.0))
    assert focus_order(cam) == [1, 3, 0, 2]


def _texture(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.zeros(1, 3, h, w)
    for s in (1, 2, 4, 8):
        n = torch.rand(1, 3, max(1, h // s), max(1, w // s), generator=g)
        t += F.interpolate(n, size=(h, w), mode="bilinear", align_corners=False) / 4
    return t


def planar_scene(h=64, w=64, seed=0):
    """A slanted plane (linear in inverse depth) + a fronto-parallel box, textured."""
    cam = get_preset("procedural")
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    rho = 1 / 3.5 + (1 / 0.55 - 1 / 3.5) * xx
    depth = 1 / rho
    box = (yy > 0.3) & (yy < 0.65) & (xx > 0.15) & (xx < 0.5)
    depth = torch.where(box, torch.full_like(depth, 1.0), depth)
    aif = _texture(h, w, seed)
    return cam, aif, depth.view(1, 1, h, w)


def _abs_rel(pred, gt, border=4):
    p, g = pred[..., border:-border, border:-border], gt[..., border:-border, border:-border]
    return float(((p - g).abs() / g).mean())


def test_dff_recovers_synthetic_depth_and_subframe_beats_argmax():
    cam, aif, depth = planar_scene()
    stack = render_stack(aif, depth, cam)
    plain = depth_from_focus(stack, cam, interp="none", refine=None)
    para = depth_from_focus(stack, cam, interp="parabolic", refine=None)
    gauss = depth_from_focus(stack, cam, interp="gaussian", refine=None)
    e_plain, e_para, e_gauss = (_abs_rel(r.depth_m, depth) for r in (plain, para, gauss))
    assert e_para < 0.12 and e_gauss < 0.12, (e_para, e_gauss)
    assert e_para < 0.85 * e_plain and e_gauss < 0.85 * e_plain, (e_plain, e_para, e_gauss)
    assert para.depth_m.shape == (1, 1, 64, 64) and para.aif.shape == (1, 3, 64, 64)
    assert para.confidence.min() >= 0 and para.confidence.max() < 1
    refined = depth_from_focus(stack, cam)  # default: parabolic + guided refinement
    assert _abs_rel(refined.depth_m, depth) < e_para


def test_dff_independent_of_frame_order():
    cam, aif, depth = planar_scene(48, 48, seed=1)
    stack = render_stack(aif, depth, cam)
    perm = [3, 0, 4, 2, 1]
    a = depth_from_focus(stack, cam, refine=None)
    b = depth_from_focus(stack[:, perm], cam.subset(perm), refine=None)
    assert torch.allclose(a.depth_m, b.depth_m, atol=1e-5)
    # index is reported in the camera's own frame order
    assert torch.equal(torch.tensor(perm)[b.index], a.index)


def test_confidence_low_on_textureless_pixels():
    cam, aif, depth = planar_scene(48, 48)
    aif[..., :, :20] = 0.5                                   # flat left part
    stack = render_stack(aif, depth, cam)
    r = depth_from_focus(stack, cam)
    conf = r.confidence[0, 0]
    assert conf[:, 2:14].mean() < 0.5 * conf[:, 28:].mean()


def test_dff_rejects_mismatched_camera():
    cam = get_preset("procedural")
    with pytest.raises(ValueError, match="focus distances"):
        depth_from_focus(torch.rand(3, 3, 16, 16), cam)
