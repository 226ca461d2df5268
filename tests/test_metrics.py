"""Tests for focalstack.metrics: every expected value is worked out by hand below."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from focalstack.metrics import (
    AIF_KEYS,
    DEPTH_KEYS,
    EPS_DEPTH_M,
    aif_metrics,
    bumpiness_map,
    depth_metrics,
    format_table,
)

T = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
LN2 = math.log(2.0)


# --------------------------------------------------------------------------- depth


def test_all_depth_metrics_by_hand_2x2():
    g = T([[1.0, 2.0], [4.0, 2.0]])
    p = T([[2.0, 2.0], [2.0, 2.0]])
    # errors e = p - g = [1, 0, -2, 0]; ratios max(p/g, g/p) = [2, 1, 2, 1]
    # d = ln p - ln g = [ln2, 0, -ln2, 0]
    m = depth_metrics(p, g)
    assert set(m) == set(DEPTH_KEYS) | {"n_images"}
    assert m["n_images"] == 1 and type(m["n_images"]) is int
    assert all(type(m[k]) is float for k in DEPTH_KEYS)
    assert m["abs_rel"] == pytest.approx((1 / 1 + 0 + 2 / 4 + 0) / 4)  # 0.375
    assert m["sq_rel"] == pytest.approx((1 / 1 + 0 + 4 / 4 + 0) / 4)  # 0.5
    assert m["mse"] == pytest.approx((1 + 0 + 4 + 0) / 4)  # 1.25
    assert m["rmse"] == pytest.approx(math.sqrt(1.25))
    assert m["mae"] == pytest.approx((1 + 0 + 2 + 0) / 4)  # 0.75
    assert m["rmse_log"] == pytest.approx(math.sqrt((LN2**2 + LN2**2) / 4))  # natural log
    assert m["log10"] == pytest.approx((math.log10(2) + math.log10(2)) / 4)
    # ratio 2 is not < 1.25, 1.5625 or 1.953125
    assert m["delta1"] == pytest.approx(0.5)
    assert m["delta2"] == pytest.approx(0.5)
    assert m["delta3"] == pytest.approx(0.5)
    # mean(d) = 0, mean(d²) = ln²2 / 2
    assert m["sc_inv"] == pytest.approx(math.sqrt(LN2**2 / 2))


def test_rmse_log_uses_natural_log_not_log10():
    g = T([[1.0, 1.0]])
    p = T([[math.e, math.e]])  # ln ratio = 1 exactly; log10 ratio = 0.434
    m = depth_metrics(p, g)
    assert m["rmse_log"] == pytest.approx(1.0)
    assert m["log10"] == pytest.approx(math.log10(math.e))


def test_delta_thresholds_by_hand():
    g = T([[1.0, 1.0, 1.0, 1.0]])
    # ratios 1.2 (< 1.25), 1.5 via g/p (< 1.5625), 1.9 (< 1.953125), 3 (none)
    p = T([[1.2, 1.0 / 1.5, 1.9, 3.0]])
    m = depth_metrics(p, g)
    assert m["delta1"] == pytest.approx(1 / 4)
    assert m["delta2"] == pytest.approx(2 / 4)
    assert m["delta3"] == pytest.approx(3 / 4)


def test_sc_inv_is_scale_invariant_and_by_hand():
    g = T([[1.0, 2.0], [3.0, 4.0]])
    m = depth_metrics(2.0 * g, g)  # d = ln 2 everywhere
    assert m["sc_inv"] == pytest.approx(0.0, abs=1e-12)
    assert m["rmse_log"] == pytest.approx(LN2)
    # d = [ln2, 0]: mean(d²) − mean(d)² = ln²2/2 − ln²2/4 = ln²2/4
    m = depth_metrics(T([[2.0, 1.0]]), T([[1.0, 1.0]]))
    assert m["sc_inv"] == pytest.approx(LN2 / 2)


def test_invalid_gt_excluded_from_means_and_delta_denominator():
    g = T([[1.0, 2.0, 0.0], [float("nan"), float("inf"), -1.0]])
    p = T([[1.0, 1.0, 5.0], [5.0, 5.0, 5.0]])
    # valid: (0,0) exact and (0,1) with p=1, g=2 (ratio 2, |e|=1)
    m = depth_metrics(p, g)
    assert m["abs_rel"] == pytest.approx((0 + 1 / 2) / 2)  # 0.25
    assert m["mae"] == pytest.approx((0 + 1) / 2)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 1) / 2))
    # 1 of the 2 VALID pixels (not 1 of all 6: DEReD's bug would give 1/6)
    assert m["delta1"] == pytest.approx(1 / 2)
    assert all(math.isfinite(m[k]) for k in DEPTH_KEYS)


def test_nonfinite_pred_and_mask_exclude_pixels():
    g = T([[1.0, 2.0], [4.0, 8.0]])
    p = T([[2.0, float("nan")], [4.0, 100.0]])
    mask = torch.tensor([[True, True], [True, False]])
    # valid: (0,0) e=1, (1,0) e=0
    m = depth_metrics(p, g, mask)
    assert m["mae"] == pytest.approx(0.5)
    assert m["abs_rel"] == pytest.approx((1 / 1 + 0) / 2)
    assert m["delta1"] == pytest.approx(0.5)


def test_per_image_average_differs_from_pooled():
    # image A: one valid pixel, |e| = 1; image B: four valid pixels, all exact.
    g = T([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 2.0], [3.0, 4.0]]])
    p = T([[[2.0, 9.0], [9.0, 9.0]], [[1.0, 2.0], [3.0, 4.0]]])
    m = depth_metrics(p, g)
    assert m["n_images"] == 2
    assert m["mae"] == pytest.approx((1.0 + 0.0) / 2)  # pooled would be 1/5
    assert m["rmse"] == pytest.approx((1.0 + 0.0) / 2)  # pooled: sqrt(1/5)
    assert m["delta1"] == pytest.approx((0.0 + 1.0) / 2)  # pooled: 4/5
    assert m["abs_rel"] == pytest.approx((1.0 + 0.0) / 2)


def test_empty_image_is_skipped_not_counted():
    g = T([[[1.0, 0.0]], [[1.0, 2.0]], [[0.0, float("nan")]]])
    p = T([[[2.0, 9.0]], [[1.0, 2.0]], [[3.0, 3.0]]])
    m = depth_metrics(p, g)
    assert m["n_images"] == 2
    assert m["mae"] == pytest.approx((1.0 + 0.0) / 2)


def test_all_invalid_raises():
    with pytest.raises(ValueError, match="no valid pixels"):
        depth_metrics(T([[1.0, 2.0]]), T([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="no valid pixels"):
        depth_metrics(T([[1.0, 2.0]]), T([[1.0, 2.0]]), torch.tensor([[False, False]]))
    with pytest.raises(ValueError, match="no valid pixels"):
        depth_metrics(T([[1.0, 2.0]]), T([[1.0, 2.0]]), max_depth=0.5)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        depth_metrics(T([[1.0, 2.0]]), T([[1.0], [2.0]]))


def test_max_and_min_depth_subsets():
    g = T([[0.2, 0.4], [0.5, 1.0]])
    p = g + 0.1
    # gt < 0.5 (strict): pixels 0.2 and 0.4
    m = depth_metrics(p, g, max_depth=0.5)
    assert m["abs_rel"] == pytest.approx((0.1 / 0.2 + 0.1 / 0.4) / 2)  # 0.375
    # gt >= 0.5: pixels 0.5 and 1.0
    m = depth_metrics(p, g, min_depth=0.5)
    assert m["abs_rel"] == pytest.approx((0.1 / 0.5 + 0.1 / 1.0) / 2)  # 0.15
    m = depth_metrics(p, g)
    assert m["abs_rel"] == pytest.approx((0.5 + 0.25 + 0.2 + 0.1) / 4)


def test_median_scaling_makes_scaled_prediction_perfect_per_image():
    g = T([[[1.0, 2.0], [3.0, 4.0]], [[0.5, 1.5], [2.5, 3.5]]])
    p = torch.stack([0.5 * g[0], 3.0 * g[1]])  # different scale per image
    m = depth_metrics(p, g, median_scaling=True)
    for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "mae", "mse", "sc_inv"):
        assert m[k] == pytest.approx(0.0, abs=1e-12), k
    assert m["delta1"] == pytest.approx(1.0)
    # without scaling: abs_rel = (0.5 + 2.0) / 2
    assert depth_metrics(p, g)["abs_rel"] == pytest.approx(1.25)


def test_median_scaling_uses_true_median_of_valid_pixels():
    # valid gt = [1, 2, 4, 10] (median 3); the gt = 0 pixel with pred 100 is ignored
    g = T([[1.0, 2.0, 4.0, 10.0, 0.0]])
    p = T([[1.0, 1.0, 1.0, 1.0, 100.0]])  # valid pred median 1 → scale 3 → p = 3
    m = depth_metrics(p, g, median_scaling=True)
    assert m["abs_rel"] == pytest.approx((2 / 1 + 1 / 2 + 1 / 4 + 7 / 10) / 4)  # 0.8625


def test_nonpositive_pred_clamped_to_eps():
    g = T([[1.0, 1.0]])
    p = T([[-1.0, 0.0]])  # both clamped to 1e-6 m
    m = depth_metrics(p, g)
    assert all(math.isfinite(m[k]) for k in DEPTH_KEYS)
    assert m["rmse_log"] == pytest.approx(-math.log(EPS_DEPTH_M))  # 6 ln 10
    assert m["log10"] == pytest.approx(6.0)
    assert m["mae"] == pytest.approx(1.0 - EPS_DEPTH_M)
    assert m["delta3"] == 0.0


def test_numpy_and_4d_inputs():
    g = np.array([[1.0, 2.0], [4.0, 2.0]])
    p = np.array([[2.0, 2.0], [2.0, 2.0]])
    m_np = depth_metrics(p, g, np.ones_like(g, dtype=bool))
    m_4d = depth_metrics(torch.tensor(p)[None, None], torch.tensor(g)[None, None])
    assert m_np["abs_rel"] == pytest.approx(0.375)
    assert m_4d["abs_rel"] == pytest.approx(0.375)


# ----------------------------------------------------------------------- bumpiness

# Hand derivation for a spike of height a in the difference map, at the centre pixel:
# Kx = outer([3,10,3]/16, [1,0,-1]) and flipping Kx in both axes gives -Kx, so
# dxx(centre) = a · Σ Kx·flip(Kx) = -a · Σ Kx² = -a · (9+100+9)/256 · 2 = -a · 0.921875;
# the same for dyy; dxy(centre) = ±a · (Σ_u s_u e_u)² = 0 since 3/16 − 3/16 = 0.
# Hence ‖H‖_F(centre) = √2 · 0.921875 · |a|.
SPIKE_GAIN = math.sqrt(2.0) * 0.921875


def _spike(a: float, n: int = 9):
    g = torch.ones(n, n, dtype=torch.float64)
    p = g.clone()
    p[n // 2, n // 2] += a
    return p, g


def test_bumpiness_spike_by_hand():
    p, g = _spike(0.01)
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[4, 4] = True
    m = depth_metrics(p, g, mask)
    assert m["bumpiness"] == pytest.approx(100 * SPIKE_GAIN * 0.01)  # ≈ 1.3037 (< clip)
    assert m["bumpiness"] > 0


def test_bumpiness_clips_per_pixel_before_mean():
    p, g = _spike(1.0)  # centre norm 1.30 → clipped to 0.05
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[4, 4] = True
    mask[0, 0] = True  # ≥ 3 px from the spike: Hessian exactly 0 there
    m = depth_metrics(p, g, mask)
    # per-pixel clip: 100·(0.05 + 0)/2; clipping the mean instead would give 5.0
    assert m["bumpiness"] == pytest.approx(100 * (0.05 + 0.0) / 2)


def test_bumpiness_zero_for_plane_error_in_interior():
    gen = torch.Generator().manual_seed(0)
    h, w = 10, 12
    g = 1.0 + torch.rand(h, w, generator=gen, dtype=torch.float64)
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                          torch.arange(w, dtype=torch.float64), indexing="ij")
    p = g + 0.05 + 0.02 * x - 0.03 * y  # error is affine in (x, y)
    interior = torch.zeros(h, w, dtype=torch.bool)
    interior[2:-2, 2:-2] = True  # ≥ 2 px from the border, where padding cannot reach
    assert depth_metrics(p, g, interior)["bumpiness"] == pytest.approx(0.0, abs=1e-12)
    # documented border effect: replicate padding bends the plane at the outer 2 px
    assert depth_metrics(p, g)["bumpiness"] > 0
    # a bumpy error is positive in the same interior
    bumpy = g + 0.01 * torch.sin(x) * torch.cos(y)
    assert depth_metrics(bumpy, g, interior)["bumpiness"] > 0.1


def test_bumpiness_matches_ddff_toolbox_filters():
    skf = pytest.importorskip("skimage.filters")
    rng = np.random.default_rng(1)
    d = rng.normal(scale=0.01, size=(9, 11))
    dx, dy = skf.scharr_v(d), skf.scharr_h(d)
    ref = np.sqrt(skf.scharr_v(dx) ** 2 + skf.scharr_h(dx) ** 2
                  + skf.scharr_v(dy) ** 2 + skf.scharr_h(dy) ** 2).clip(0, 0.05)
    np.testing.assert_allclose(bumpiness_map(torch.tensor(d)).numpy(), ref, atol=1e-12)


def test_bumpiness_ignores_nan_holes_outside_their_reach():
    p, g = _spike(0.01)
    g[0, 8] = float("nan")  # far corner: must not turn the result into NaN
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[4, 4] = True
    assert depth_metrics(p, g, mask)["bumpiness"] == pytest.approx(100 * SPIKE_GAIN * 0.01)


# ----------------------------------------------------------------------------- AiF


def test_psnr_and_mae_by_hand_per_image():
    gt = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    pred = gt.clone()
    pred[0] += 0.1  # MSE 0.01 → 10·log10(1/0.01) = 20 dB, MAE 0.1
    pred[1] += 0.01  # MSE 1e-4 → 40 dB, MAE 0.01
    m = aif_metrics(pred, gt)
    assert set(m) == set(AIF_KEYS)
    assert all(type(v) is float for v in m.values())
    assert m["psnr"] == pytest.approx((20.0 + 40.0) / 2)  # pooled MSE would give 22.97
    assert m["mae"] == pytest.approx((0.1 + 0.01) / 2)


def test_psnr_data_range_and_mask():
    gt = torch.zeros(1, 2, 2, dtype=torch.float64)  # [C,H,W]
    pred = T([[[0.1, 0.5], [0.1, 0.1]]])
    mask = torch.tensor([[True, False], [True, True]])  # drops the 0.5 pixel
    m = aif_metrics(pred, gt, mask)
    assert m["psnr"] == pytest.approx(20.0)
    assert m["mae"] == pytest.approx(0.1)
    m = aif_metrics(pred, gt, mask, data_range=2.0)
    assert m["psnr"] == pytest.approx(10 * math.log10(4.0 / 0.01))
    # without mask: MSE = (0.03 + 0.25)/4 = 0.07
    assert aif_metrics(pred, gt)["psnr"] == pytest.approx(10 * math.log10(1 / 0.07))


def test_ssim_identical_is_one_and_different_is_less():
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 16, 16, generator=gen)
    m = aif_metrics(img, img)
    assert m["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert m["psnr"] == math.inf
    assert m["mae"] == 0.0
    mask = torch.zeros(2, 16, 16, dtype=torch.bool)
    mask[:, 4:12, 4:12] = True
    assert aif_metrics(img, img, mask)["ssim"] == pytest.approx(1.0, abs=1e-6)
    other = torch.rand(img.shape, generator=gen)  # independent noise: SSIM ≈ 0
    assert aif_metrics(other, img)["ssim"] < 0.5


def test_aif_empty_mask_raises():
    img = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError):
        aif_metrics(img, img, torch.zeros(1, 4, 4, dtype=torch.bool))


# ---------------------------------------------------------------------------- table


def test_format_table_markdown():
    rows = {"ours": {"rmse": 0.5, "n_images": 3}, "base": {"rmse": 0.25}}
    assert format_table(rows) == (
        "| method | rmse | n_images |\n"
        "|---|---:|---:|\n"
        "| ours | 0.5000 | 3 |\n"
        "| base | 0.2500 | – |"
    )
    assert format_table(rows, keys=["n_images"]).splitlines()[2] == "| ours | 3 |"


def test_bumpiness_in_bands_equals_the_whole_map(monkeypatch):
    """depth_metrics sums the bumpiness band by band (bounded memory on photo-sized maps): the halo
    makes every band row see its true neighbours, so the result is the whole map's."""
    import focalstack.metrics as M
    torch.manual_seed(0)
    g = torch.rand(70, 40, dtype=torch.float64) + 0.5
    p = g + 0.1 * torch.rand(70, 40, dtype=torch.float64) ** 3
    g[3:9, 5:8] = 0
    v = torch.isfinite(g) & (g > 0)
    diff = torch.where(v, p - g, torch.zeros_like(g))
    want = float(M.bumpiness_map(diff)[v].sum())
    monkeypatch.setattr(M, "_BAND_ROWS", 16)
    assert M._banded_bumpiness_sum(diff, v) == pytest.approx(want, rel=1e-12)
    assert depth_metrics(p, g)["bumpiness"] == pytest.approx(100 * want / int(v.sum()), rel=1e-12)
