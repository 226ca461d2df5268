"""``focalstack predict``: outputs for dff and optimize, single sample vs dataset, errors."""

import json

import cv2
import numpy as np
import pytest
import torch

from focalstack.cli import main
from focalstack.data import save_sample
from focalstack.inference import METHODS, Prediction, get_method, write_prediction

from .conftest import tiny_sample

FILES = ("depth.npy", "depth.png", "depth_color.png", "aif.png", "recon_error.json", "recon_error.png", "meta.json")


def _check_outputs(out, hw, kind="metric", rendered=True):
    for f in FILES:
        if f.startswith("recon_error") and not rendered:
            continue
        assert (out / f).is_file(), f
    d = np.load(out / "depth.npy")
    assert d.dtype == np.float32 and d.shape == hw
    png = cv2.imread(str(out / "depth.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == hw
    meta = json.loads((out / "meta.json").read_text())
    assert meta["depth_kind"] == kind
    if kind == "metric":
        assert np.abs(png.astype(np.float64) - np.round(d * 1000)).max() <= 1   # millimetres
    aif = cv2.imread(str(out / "aif.png"))
    assert aif.shape[:2] == hw
    if rendered:
        rec = json.loads((out / "recon_error.json").read_text())
        assert rec["l1"] >= 0 and len(rec["l1_per_frame"]) == 5
    return meta


@pytest.mark.parametrize("method", ["dff", "optimize"])
def test_predict_dataset_writes_all_outputs(tiny_dataset, tmp_path, method):
    out = tmp_path / "pred"
    argv = ["predict", str(tiny_dataset), "-o", str(out), "--method", method]
    if method == "optimize":
        argv += ["--iters-scale", "0.1"]
    assert main(argv) == 0
    names = sorted(p.name for p in tiny_dataset.iterdir())
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == names
    for n in names:
        meta = _check_outputs(out / n, (24, 28))
        assert meta["method"] == method and meta["seconds"] > 0
        if method == "optimize":
            assert "recon_before" in meta and "recon_after" in meta


def test_predict_single_sample_goes_straight_into_out(tmp_path):
    save_sample(tiny_sample(5, hw=(20, 22)), tmp_path / "one")
    out = tmp_path / "o"
    assert main(["predict", str(tmp_path / "one"), "-o", str(out)]) == 0
    _check_outputs(out, (20, 22))


def test_predict_unknown_focus_is_relative(tmp_path):
    save_sample(tiny_sample(1, hw=(20, 22)), tmp_path / "u")
    cam = json.loads((tmp_path / "u" / "camera.json").read_text())
    cam["focus_known"] = False
    (tmp_path / "u" / "camera.json").write_text(json.dumps(cam))
    for method in ("dff", "optimize"):
        out = tmp_path / method
        assert main(["predict", str(tmp_path / "u"), "-o", str(out), "--method", method, "--iters-scale", "0.05"]) == 0
        # relative DFF has no blur model to re-render with: no recon_error files
        meta = _check_outputs(out, (20, 22), kind="relative_inverse", rendered=method == "optimize")
        d = np.load(out / "depth.npy")
        assert d.min() >= 0 and d.max() <= 1
        if method == "optimize":
            assert len(meta["focus_positions_relative"]) == 5


@pytest.mark.parametrize("method,msg", [("foo", "unknown method 'foo'"), ("", "unknown method ''")])
def test_predict_unknown_method_is_one_line(tiny_dataset, tmp_path, capsys, method, msg):
    rc = main(["predict", str(tiny_dataset), "-o", str(tmp_path / "x"), "--method", method])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and msg in err
    assert not (tmp_path / "x").exists()


def test_predict_missing_input_is_one_line(tmp_path, capsys):
    rc = main(["predict", str(tmp_path / "nope"), "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no such folder" in err and len(err.splitlines()) == 1


def test_write_prediction_rejects_wrong_size(tmp_path):
    s = tiny_sample(0)
    with pytest.raises(ValueError, match="frames are"):
        write_prediction(tmp_path / "w", s, Prediction(torch.ones(5, 5), s.aif))
    assert not (tmp_path / "w").exists()
    assert get_method("dff") is METHODS["dff"]


def test_predict_real_two_aperture_pair_dff_refuses(tmp_path, capsys):
    from focalstack.optics import get_preset
    s = tiny_sample(0)
    cam = get_preset("dslr_indoor")
    save_sample(type(s)(s.frames[:2], cam, None, None, "pair"), tmp_path / "pair")
    rc = main(["predict", str(tmp_path / "pair"), "-o", str(tmp_path / "o"), "--method", "dff"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--method optimize" in err


def test_predict_checkpoint_errors_are_one_line(tiny_dataset, tmp_path, capsys):
    rc = main(["predict", str(tiny_dataset), "-o", str(tmp_path / "x"), "--checkpoint", str(tmp_path / "none.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "none.safetensors: checkpoint not found" in err[0]
    rc = main(["predict", str(tiny_dataset), "-o", str(tmp_path / "y"), "--method", "dff", "--refine", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--method net" in err[0]
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_predict_dfd_is_metric_and_refuses_placeholder_cameras(tiny_dataset, tmp_path):
    import json

    import numpy as np

    from focalstack.cli import main
    out = tmp_path / "dfd"
    assert main(["predict", str(tiny_dataset / "s000"), "--method", "dfd", "-o", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["method"] == "dfd" and meta["depth_kind"] == "metric"
    d = np.load(out / "depth.npy")
    gt = np.load(tiny_dataset / "s000" / "depth.npy")
    assert d.shape == gt.shape and np.isfinite(d).all()
    # the two planes (0.7 m and 2.5 m) are told apart, each within 25 %
    h, w = d.shape
    near, far = np.median(d[4:-4, 3:w // 2 - 3]), np.median(d[4:-4, w // 2 + 3:-3])
    assert abs(near - 0.7) / 0.7 < 0.25 and abs(far - 2.5) / 2.5 < 0.25, (near, far)
    cam = json.loads((tiny_dataset / "s001" / "camera.json").read_text())
    cam["lens_known"] = False
    (tiny_dataset / "s001" / "camera.json").write_text(json.dumps(cam))
    assert main(["predict", str(tiny_dataset / "s001"), "--method", "dfd", "-o", str(tmp_path / "x")]) == 2


def test_predict_with_a_named_shipped_checkpoint(tiny_dataset, tmp_path, capsys):
    import json

    from focalstack.cli import main
    out = tmp_path / "p"
    assert main(["predict", str(tiny_dataset / "s000"), "--checkpoint", "shipped:procedural", "-o", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["method"] == "net" and meta["checkpoint"] == "shipped:procedural"
    assert meta["model"]["cfg"]["variant"] == "paper"
    capsys.readouterr()
    assert main(["predict", str(tiny_dataset / "s000"), "--checkpoint", "shipped:nope", "-o", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown shipped checkpoint 'nope'" in err[0]


def test_written_reconstruction_renders_each_frame_with_its_own_window():
    """recon_error.* re-renders the stack from depth + AIF the way the optimiser and training do:
    each frame with the window of its own largest σ, so a frame focused near the scene blurs with a
    narrow window and one focused far away with a wide one — the same as rendering each frame alone."""
    from focalstack.inference.prediction import Prediction
    from focalstack.inference.writer import render_prediction
    from focalstack.render import render_stack, window_size_px
    from .conftest import tiny_sample

    s = tiny_sample(3, hw=(32, 36))
    depth = torch.full((32, 36), 0.7)
    depth[:, 18:] = 3.5
    got = render_prediction(s, Prediction(depth, s.aif))
    sig = s.camera.sigma_px(depth.view(1, 1, 32, 36))[0].amax(dim=(1, 2, 3))
    windows = [window_size_px(float(x), "gaussian", 31) for x in sig]
    assert len(set(windows)) > 1                                   # the frames do need different windows
    for k, win in enumerate(windows):
        want = render_stack(s.aif[None], depth[None, None], s.camera, frames=[k], kernel_size=win)[0, 0]
        torch.testing.assert_close(got[k], want, rtol=0, atol=1e-6)


def test_dfd_and_net_search_the_depth_range_the_evidence_supports(tmp_path):
    """A stack through the NYUv2 synthesis camera whose camera.json states DEReD's 0.1–10 m bracket
    around a 1.2–3 m surface: both camera-aware methods narrow the range to the evidence
    (classical.dfd.evidence_depth_range, recorded in meta.json beside the stated one) and their depth
    is nearer the truth than over the stated range (--stated-range); a checkpoint trained on a fixed
    range keeps it."""
    from types import SimpleNamespace

    from focalstack.data.format import FocalStackSample
    from focalstack.metrics import depth_metrics

    from .test_dfd import _nyuv2_cam, _ramp_scene
    cam = _nyuv2_cam()
    frames, depth = _ramp_scene(cam)
    sample = FocalStackSample(frames=frames, camera=cam, depth_m=depth, name="ramp")
    for method in ("dfd", "net"):
        ev = get_method(method)(sample, SimpleNamespace(range_from_evidence=True))
        st = get_method(method)(sample, SimpleNamespace(range_from_evidence=False))
        near, far = ev.extras["depth_range_m"]
        assert ev.extras["stated_depth_range_m"] == [0.1, 10.0] and st.extras["depth_range_m"] == [0.1, 10.0]
        assert 0.1 < near < 1.2 and 3.0 < far < 10.0, (method, near, far)
        e, s = (depth_metrics(p.depth_m.view(depth.shape), depth)["abs_rel"] for p in (ev, st))
        assert e < 0.05 and e < 0.7 * s, (method, e, s)      # measured: dfd 0.024 vs 0.071, net 0.028 vs 0.115
        if method == "dfd":
            dfd_range = (near, far)
    fixed = get_method("net")(sample, SimpleNamespace(checkpoint="shipped:procedural"))
    assert fixed.extras["depth_range_m"] == [0.5, 4.0]         # its training range, not the camera's
    # optimize searches the same evidence range (its sigmoid bracket), and stays inside it
    ev, st = (get_method("optimize")(sample, SimpleNamespace(range_from_evidence=r, iters_scale=0.3))
              for r in (True, False))
    assert ev.extras["depth_range_m"] == pytest.approx(list(dfd_range)) and "depth_range_m" not in st.extras
    assert ev.extras["stated_depth_range_m"] == [0.1, 10.0]
    assert dfd_range[0] <= float(ev.depth_m.min()) and float(ev.depth_m.max()) <= dfd_range[1]
    e, s = (depth_metrics(p.depth_m.view(depth.shape), depth)["abs_rel"] for p in (ev, st))
    assert e < s, (e, s)
    # the CLI switch reaches both methods, and meta.json records both ranges
    save_sample(sample, tmp_path / "s")
    assert main(["predict", str(tmp_path / "s"), "--method", "dfd", "--stated-range", "-o", str(tmp_path / "o")]) == 0
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert meta["depth_range_m"] == meta["stated_depth_range_m"] == [0.1, 10.0]


def test_a_range_left_as_stated_costs_one_cost_volume(monkeypatch):
    """When the evidence leaves the stated range as it is (a tight bracket), dfd and net compute the
    cost volume once (classical.dfd.reuse_cost_volumes) and give exactly what --stated-range gives."""
    from types import SimpleNamespace

    import focalstack.classical.dfd as dfd
    from focalstack.data.format import FocalStackSample

    from .test_dfd import _nyuv2_cam, _ramp_scene
    cam = _nyuv2_cam(rng=(1.0, 3.5))
    frames, depth = _ramp_scene(cam)
    sample = FocalStackSample(frames=frames, camera=cam, depth_m=depth, name="ramp")
    calls = []
    real = dfd._relative_blur_cost
    monkeypatch.setattr(dfd, "_relative_blur_cost", lambda *a: calls.append(1) or real(*a))
    for method in ("dfd", "net"):
        calls.clear()
        ev = get_method(method)(sample, SimpleNamespace(range_from_evidence=True))
        assert ev.extras["depth_range_m"] == [1.0, 3.5] and len(calls) == 1, (method, calls)
        st = get_method(method)(sample, SimpleNamespace(range_from_evidence=False))
        assert torch.equal(ev.depth_m, st.depth_m) and torch.equal(ev.aif, st.aif)


def _portrait_cam(f_number=1.8):
    """85 mm full frame at 645 px (60 µm pixels): σ up to ~10 px over a 1.2–3 m scene at f/1.8."""
    from focalstack.optics import FocalStackCamera, ThinLens
    return FocalStackCamera(ThinLens(0.085, f_number, 6e-5), (1.2, 1.6, 2.2, 3.0, 4.2), depth_range_m=(0.5, 10.0))


def test_working_scale_brings_the_blur_into_the_trained_band():
    from focalstack.inference.scale import MIN_WORKING_SIDE_PX, trained_blur_px, working_scale
    cam = _portrait_cam()
    smax = cam.max_sigma_px((1.2, 3.0))
    assert trained_blur_px() == 5.0 and smax > 10                                  # ~10 px over a 1.2–3 m scene
    assert working_scale(cam, (1.2, 3.0), (432, 645)) == pytest.approx(5.0 / smax)
    assert cam.resized(5.0 / smax).max_sigma_px((1.2, 3.0)) == pytest.approx(5.0)   # σ scales with the image
    f8 = _portrait_cam(f_number=8.0)
    assert f8.max_sigma_px((1.2, 3.0)) < 5 and working_scale(f8, (1.2, 3.0), (432, 645)) == 1.0   # inside the band
    assert working_scale(cam, (1.2, 3.0), (150, 200)) == MIN_WORKING_SIDE_PX / 200  # never below the floor
    assert working_scale(cam.resized(5.4 / smax), (1.2, 3.0), (432, 645)) == 1.0    # σ 5.4 px: not worth 7 %
    assert working_scale(cam.resized(6.0 / smax), (1.2, 3.0), (432, 645)) == pytest.approx(5.0 / 6.0)
    assert working_scale(cam, (1.2, 3.0), (100, 120)) == 1.0                       # … nor upscaled


def test_net_runs_strong_blur_at_the_working_scale_and_composes_a_full_size_aif():
    from types import SimpleNamespace

    from focalstack.data.format import FocalStackSample
    from focalstack.inference.scale import working_scale
    from focalstack.losses import coarse_aif
    from focalstack.optics import CameraBatch

    from .test_dfd import _ramp_scene
    cam = _portrait_cam()
    frames, depth = _ramp_scene(cam, hw=160)
    sample = FocalStackSample(frames=frames, camera=cam, depth_m=depth, name="ramp")
    auto = get_method("net")(sample, None)
    span = auto.extras["evidence_span_m"]
    assert 1.1 < span[0] < 1.45 and 2.4 < span[1] < 3.3
    assert auto.extras["scale"] == working_scale(cam, tuple(span), (160, 160)) < 1
    assert auto.depth_m.shape[-2:] == (160, 160) and auto.aif.shape == (3, 160, 160)
    pick = coarse_aif(frames[None], auto.depth_m.view(1, 1, 160, 160), CameraBatch.from_cameras([cam]))[0][0]
    assert torch.equal(auto.aif, pick.clamp(0, 1))                 # per pixel the full-size frame in focus
    full = get_method("net")(sample, SimpleNamespace(scale=1.0))
    assert full.extras["scale"] == 1.0 and not torch.equal(full.aif, auto.aif)
    fixed = get_method("net")(sample, SimpleNamespace(checkpoint="shipped:procedural"))
    assert fixed.extras["scale"] == 1.0 and fixed.extras["evidence_span_m"] is None   # a fixed-range checkpoint
    one = get_method("net")(sample.subset([0]), None)                                 # one frame: no blur to read
    assert one.extras["scale"] == 1.0 and one.extras["evidence_span_m"] is None


def test_dfd_reads_strong_blur_at_the_working_scale():
    """dfd shares the working scale with its own band (the cost volume models σ ≤ 5 px), and --scale
    reaches it from the command line."""
    from types import SimpleNamespace

    from focalstack.classical.dfd import MAX_BLUR_RADIUS_PX
    from focalstack.cli import build_parser
    from focalstack.cli.predict import method_options
    from focalstack.data.format import FocalStackSample
    from focalstack.inference.scale import working_scale

    from .test_dfd import _ramp_scene
    cam = _portrait_cam()
    frames, depth = _ramp_scene(cam, hw=160)
    sample = FocalStackSample(frames=frames, camera=cam, depth_m=depth, name="ramp")
    auto = get_method("dfd")(sample, None)
    span = tuple(auto.extras["evidence_span_m"])
    assert auto.extras["scale"] == working_scale(cam, span, (160, 160), MAX_BLUR_RADIUS_PX / 3) < 1
    assert auto.depth_m.shape == (160, 160) and auto.aif.shape == (3, 160, 160)
    assert get_method("dfd")(sample, SimpleNamespace(scale=1.0)).extras["scale"] == 1.0
    args = build_parser().parse_args(["predict", "in", "-o", "out", "--scale", "1"])
    assert method_options("dfd", args).scale == 1.0 and method_options("net", args).scale == 1.0


def test_refine_runs_at_the_working_scale():
    """``--refine N`` on strong blur refines the working stack (blur inside the band, its pixels and
    window), then brings the depth back to full size like the network's own."""
    from types import SimpleNamespace

    from focalstack.data.format import FocalStackSample
    from focalstack.inference.network import load_cached, refine_prediction, run_network
    from focalstack.inference.scale import to_full_size, working_stack

    from .test_dfd import _ramp_scene
    cam = _portrait_cam()
    frames, depth = _ramp_scene(cam, hw=160)
    sample = FocalStackSample(frames=frames, camera=cam, depth_m=depth, name="ramp")
    p = get_method("net")(sample, SimpleNamespace(refine_steps=3))
    assert p.extras["scale"] < 1 and p.extras["refine_steps"] == 3 and "rendered" not in p.extras
    model, _ = load_cached("shipped")
    ws = working_stack(frames, cam, cam.effective_depth_range_m())
    d, a = run_network(model, ws.frames, ws.camera, ws.depth_range_m)
    r = refine_prediction(ws.frames, ws.camera, ws.depth_range_m, d, a, 3)
    want, _ = to_full_size(r.depth_m.reshape(d.shape), frames, cam)
    assert p.depth_m.shape == (160, 160) and torch.allclose(p.depth_m, want)
    assert not torch.equal(p.depth_m, get_method("net")(sample, None).depth_m)   # the refinement moved it
