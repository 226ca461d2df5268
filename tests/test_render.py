"""The reference renderer: the oracle every fused backend is compared with."""

import math

import pytest
import torch
import torch.nn.functional as F

from focalstack.optics import get_preset
from focalstack.render import defocus, render_stack


def naive_defocus(image, sigma, radius, psf="gaussian"):
    """Direct transcription of J(x) = Σ_u I(x−u) G_{x−u}(u) / Σ_u G_{x−u}(u), per pixel,
    differentiated by autograd (tiny images only)."""
    b, c, h, w = image.shape
    out = torch.zeros_like(image)
    rows = []
    for y in range(h):
        cols = []
        for x in range(w):
            num = torch.zeros(b, c, dtype=image.dtype)
            den = torch.zeros(b, 1, dtype=image.dtype)
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    py, px = y - dy, x - dx
                    if not (0 <= py < h and 0 <= px < w):
                        continue
                    s = sigma[:, :, py, px].clamp_min(1e-4)
                    r2 = dy * dy + dx * dx
                    if psf == "gaussian":
                        g = torch.exp(-r2 / (2 * s * s)) / (2 * math.pi * s * s)
                    else:
                        rho = 2 * s
                        area = torch.where(rho >= 0.5, math.pi * rho ** 2 + math.pi / 12, math.pi * (rho + 0.5) ** 3 / 3)
                        g = (rho - math.sqrt(r2) + 0.5).clamp(0, 1) / area
                    num = num + g * image[:, :, py, px]
                    den = den + g
            cols.append(num / den)
        rows.append(torch.stack(cols, -1))
    out = torch.stack(rows, -2)
    return out


@pytest.mark.parametrize("psf", ["gaussian", "disk"])
def test_matches_naive_formula_forward_and_gradient(psf):
    torch.manual_seed(1)
    img = torch.rand(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    sig = (torch.rand(2, 1, 6, 7, dtype=torch.float64) * 1.5 + 0.2).requires_grad_()
    a = defocus(img, sig, kernel_size=5, psf=psf, backend="reference")
    b = naive_defocus(img, sig, 2, psf)
    assert torch.allclose(a, b, atol=1e-12)
    g = torch.randn_like(a)
    ga = torch.autograd.grad(a, (img, sig), g)
    gb = torch.autograd.grad(b, (img, sig), g)
    assert torch.allclose(ga[0], gb[0], atol=1e-10)
    assert torch.allclose(ga[1], gb[1], atol=1e-10)


@pytest.mark.parametrize("psf", ["gaussian", "disk"])
def test_gradcheck_float64(psf):
    torch.manual_seed(0)
    img = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    sig = (torch.rand(1, 1, 5, 6, dtype=torch.float64) * 1.2 + 0.3).requires_grad_()
    assert torch.autograd.gradcheck(lambda i, s: defocus(i, s, kernel_size=5, psf=psf, backend="reference"), (img, sig))


def test_constant_sigma_is_normalised_gaussian_convolution_in_the_interior():
    torch.manual_seed(2)
    img = torch.rand(1, 3, 20, 20, dtype=torch.float64)
    s, k = 1.3, 9
    out = defocus(img, torch.full((1, 1, 20, 20), s, dtype=torch.float64), kernel_size=k, backend="reference")
    r = torch.arange(k, dtype=torch.float64) - k // 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * s * s))
    g = (g / g.sum()).view(1, 1, k, k).repeat(3, 1, 1, 1)
    conv = F.conv2d(img, g, groups=3)  # valid region only
    assert torch.allclose(out[..., k // 2:-(k // 2), k // 2:-(k // 2)], conv, atol=1e-12)


def test_sigma_to_zero_is_identity():
    torch.manual_seed(3)
    img = torch.rand(1, 3, 9, 9, dtype=torch.float64)
    for s in (0.0, 1e-6, 0.05):
        out = defocus(img, torch.full((1, 1, 9, 9), s, dtype=torch.float64), kernel_size=7, backend="reference")
        assert torch.allclose(out, img, atol=1e-12)
    out = defocus(img, torch.full((1, 1, 9, 9), 0.15, dtype=torch.float64), kernel_size=7, backend="reference")
    assert (out - img).abs().max() < 1e-4  # continuous approach to the identity


def test_in_focus_pixels_get_the_true_sigma_gradient():
    """At σ = 0.4 px the σ-gradient equals a central finite difference of the formula
    (the authors' CUDA op returns 0 for CoC ≤ 1 px, so in-focus regions never learn)."""
    torch.manual_seed(4)
    img = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    sig = torch.full((1, 1, 8, 8), 0.4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    (defocus(img, sig, kernel_size=5) * w).sum().backward()
    eps = 1e-6
    for (y, x) in [(0, 0), (3, 4), (7, 2)]:
        sp, sm = sig.detach().clone(), sig.detach().clone()
        sp[0, 0, y, x] += eps
        sm[0, 0, y, x] -= eps
        fd = ((defocus(img, sp, kernel_size=5) * w).sum() - (defocus(img, sm, kernel_size=5) * w).sum()) / (2 * eps)
        assert sig.grad[0, 0, y, x].item() == pytest.approx(fd.item(), rel=1e-6, abs=1e-9)
        assert abs(fd.item()) > 1e-4


def test_border_renormalisation_keeps_constant_images_constant():
    torch.manual_seed(5)
    img = torch.full((2, 3, 11, 13), 0.37, dtype=torch.float64)
    sig = torch.rand(2, 1, 11, 13, dtype=torch.float64) * 4
    for psf in ("gaussian", "disk"):
        out = defocus(img, sig, kernel_size=9, psf=psf)
        assert torch.allclose(out, img, atol=1e-12)


def test_border_taps_are_dropped_not_zero_padded():
    img = torch.ones(1, 1, 1, 5, dtype=torch.float64)
    img[..., 0] = 0.0
    sig = torch.full((1, 1, 1, 5), 1.0, dtype=torch.float64)
    out = defocus(img, sig, kernel_size=3)
    # pixel 0 sees sources 0 (weight 1, value 0) and 1 (weight e^-1/2, value 1) only;
    # counting a zero-padded tap in the denominator would give e^-1/2 / (1 + 2e^-1/2) instead
    e = math.exp(-0.5)
    assert out[0, 0, 0, 0].item() == pytest.approx(e / (1 + e), rel=1e-12)


def test_auto_kernel_size_holds_three_sigma():
    torch.manual_seed(6)
    img = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    sig = torch.rand(1, 1, 16, 16, dtype=torch.float64) * 1.6  # max < 1.6 → R = ceil(4.8) = 5
    assert torch.equal(defocus(img, sig), defocus(img, sig, kernel_size=11))
    assert not torch.equal(defocus(img, sig), defocus(img, sig, kernel_size=9))


def test_float32_matches_float64():
    torch.manual_seed(7)
    img = torch.rand(2, 3, 24, 24, dtype=torch.float64)
    sig = torch.rand(2, 1, 24, 24, dtype=torch.float64) * 3
    a = defocus(img, sig, kernel_size=13, backend="reference")
    b = defocus(img.float(), sig.float(), kernel_size=13, backend="reference")
    assert (a - b.double()).abs().max() < 1e-5


def test_clear_errors():
    img = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"sigma must be \[B,1,H,W\]"):
        defocus(img, torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match=r"image must be \[B,C,H,W\]"):
        defocus(img[0], torch.rand(1, 1, 8, 8))
    with pytest.raises(TypeError, match="dtype"):
        defocus(img, torch.rand(1, 1, 8, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match="float32 or float64"):
        defocus(img.half(), torch.rand(1, 1, 8, 8).half())
    with pytest.raises(ValueError, match="kernel_size must be a positive odd"):
        defocus(img, torch.rand(1, 1, 8, 8), kernel_size=4)
    with pytest.raises(ValueError, match="unknown backend"):
        defocus(img, torch.rand(1, 1, 8, 8), backend="nope")
    with pytest.raises(ValueError, match="psf must be"):
        defocus(img, torch.rand(1, 1, 8, 8), psf="box")
    with pytest.raises(ValueError, match="NaN or inf"):
        defocus(img, torch.full((1, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="NaN or inf"):
        defocus(img, torch.full((1, 1, 8, 8), float("nan")), psf="gaussian_matched")
    with pytest.raises(ValueError, match="NaN or inf"):
        defocus(img, torch.full((1, 1, 8, 8), float("inf")), kernel_size=9, window="per_image")


def test_render_stack_focus_plane_is_sharp():
    cam = get_preset("procedural")
    torch.manual_seed(8)
    aif = torch.rand(1, 3, 20, 20, dtype=torch.float64)
    depth = torch.full((1, 1, 20, 20), cam.focus_distances_m[2], dtype=torch.float64)
    st = render_stack(aif, depth, cam, kernel_size=9)
    assert st.shape == (1, 5, 3, 20, 20)
    assert torch.allclose(st[:, 2], aif, atol=1e-12)
    err = [(st[:, k] - aif).abs().mean().item() for k in range(5)]
    assert err[0] > err[1] > err[2] and err[4] > err[3] > err[2]


def _impulse_std(sigma_px: float, psf: str, backend: str = "auto") -> float:
    """√ per-axis variance (px) of the render of a centred unit impulse at a uniform σ."""
    img = torch.zeros(1, 1, 31, 31, dtype=torch.float64)
    img[0, 0, 15, 15] = 1.0
    out = defocus(img, torch.full((1, 1, 31, 31), sigma_px, dtype=torch.float64), psf=psf, backend=backend)[0, 0]
    u = torch.arange(31, dtype=torch.float64) - 15
    m = out / out.sum()
    return math.sqrt(0.5 * float((m.sum(1) * u * u).sum() + (m.sum(0) * u * u).sum()))


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_gaussian_matched_blurs_by_sigma_on_the_grid(backend):
    # a PSF of std σ adds σ² of variance; the sampled Gaussian falls far short of it below a pixel
    for s in (0.15, 0.3, 0.45, 0.7, 1.1, 2.0):
        assert _impulse_std(s, "gaussian_matched", backend) == pytest.approx(s, rel=0.01), s
    assert _impulse_std(0.3, "gaussian", backend) < 0.1
    assert _impulse_std(0.45, "gaussian", backend) < 0.41


def test_matched_gaussian_sigma_is_monotone_and_the_identity_above_a_pixel():
    from focalstack.render.psf import matched_gaussian_sigma
    s = torch.linspace(0, 3, 3001, dtype=torch.float64)
    m = matched_gaussian_sigma(s)
    assert m[0] == 0 and bool((m[1:] >= m[:-1]).all())
    assert bool((m >= s - 1e-9).all())                       # never narrower than σ
    assert torch.equal(m[s >= 1.2], s[s >= 1.2])
    # above ~1 px the two PSFs render the same stack
    torch.manual_seed(3)
    img = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    sig = torch.rand(1, 1, 16, 16, dtype=torch.float64) * 2 + 1.3
    assert torch.allclose(defocus(img, sig, kernel_size=15, psf="gaussian_matched"),
                          defocus(img, sig, kernel_size=15, psf="gaussian"), atol=1e-12)


def test_gradcheck_gaussian_matched_float64():
    torch.manual_seed(4)
    img = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    sig = (torch.rand(1, 1, 5, 6, dtype=torch.float64) * 1.2 + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda i, s: defocus(i, s, kernel_size=7, psf="gaussian_matched", backend="reference"), (img, sig))
