"""Pixel encodings: the sRGB transfer function, camera.json's ``encoding`` round trip, 16-bit linear
samples converted to the working encoding in one place, and predict's 16-bit linear aif.tif."""

import json

import cv2
import numpy as np
import pytest
import torch

from focalstack.cli import main
from focalstack.data import load_sample, save_sample
from focalstack.data.encoding import (WORKING_ENCODING, convert, from_working, linear_to_srgb, srgb_to_linear,
                                      to_working)
from focalstack.evaluate import evaluate
from focalstack.inference import Prediction, write_prediction
from focalstack.optics import CameraError, FocalStackCamera
from focalstack.optics.camera import DEFAULT_ENCODING

from .conftest import tiny_sample

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_srgb_transfer_function_known_values_and_inverse():
    x = torch.linspace(0, 1, 1001, dtype=torch.float64)
    assert torch.allclose(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-12)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-12)
    assert float(srgb_to_linear(torch.tensor(0.5, dtype=torch.float64))) == pytest.approx(0.214041, abs=1e-6)
    assert float(linear_to_srgb(torch.tensor(0.18, dtype=torch.float64))) == pytest.approx(0.461356, abs=1e-6)
    assert float(linear_to_srgb(torch.tensor(0.002, dtype=torch.float64))) == pytest.approx(0.02584, abs=1e-6)
    assert (torch.diff(linear_to_srgb(x)) > 0).all()                         # monotonic, continuous at the knee
    a = np.linspace(0, 1, 11, dtype=np.float32)                              # numpy in, numpy out, same dtype
    out = linear_to_srgb(a)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert np.allclose(out, linear_to_srgb(torch.from_numpy(a)).numpy(), atol=1e-6)
    assert convert(x, "srgb", "srgb") is x
    with pytest.raises(ValueError, match="unknown pixel encoding 'gamma22'"):
        convert(x, "gamma22", "srgb")


def test_working_encoding_is_srgb_until_the_pipeline_moves_to_linear_light():
    x = torch.rand(3, 4, 5)
    assert WORKING_ENCODING == "srgb" and DEFAULT_ENCODING == "srgb"
    assert to_working(x, "srgb") is x and from_working(x, "srgb") is x
    assert torch.allclose(to_working(x, "linear"), linear_to_srgb(x))
    assert torch.allclose(from_working(to_working(x, "linear"), "linear"), x, atol=1e-6)


def test_camera_json_round_trip_keeps_the_encoding(tmp_path):
    cam = tiny_sample(0).camera
    assert cam.encoding == "srgb"
    lin = FocalStackCamera(cam.lens, cam.focus_distances_m, encoding="linear")
    lin.save(tmp_path / "camera.json")
    d = json.loads((tmp_path / "camera.json").read_text())
    assert d["encoding"] == "linear"
    back = FocalStackCamera.load(tmp_path / "camera.json")
    assert back == lin and back.encoding == "linear"
    assert back.subset([0, 2]).encoding == "linear" and back.resized(0.5).encoding == "linear"
    # absent → the documented default
    del d["encoding"]
    (tmp_path / "camera.json").write_text(json.dumps(d))
    assert FocalStackCamera.load(tmp_path / "camera.json").encoding == "srgb"
    # anything else is a one-line error naming the file
    d["encoding"] = "log"
    (tmp_path / "camera.json").write_text(json.dumps(d))
    with pytest.raises(CameraError, match=r"camera\.json: encoding must be one of 'srgb', 'linear', got 'log'"):
        FocalStackCamera.load(tmp_path / "camera.json")
    with pytest.raises(CameraError, match="encoding"):
        FocalStackCamera(cam.lens, cam.focus_distances_m, encoding="LINEAR")


def _linear_sample(seed=0):
    s = tiny_sample(seed)
    cam = FocalStackCamera(s.camera.lens, s.camera.focus_distances_m, encoding="linear")
    return type(s)(s.frames, cam, s.depth_m, s.aif, name="lin")


def test_linear_sample_is_saved_at_16_bit_in_linear_light_and_loads_in_the_working_encoding(tmp_path):
    s = _linear_sample()
    save_sample(s, tmp_path / "lin")                       # bit_depth 8 asked, but linear is always 16 bit
    raw = cv2.imread(str(tmp_path / "lin" / "frame_00.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    stored = torch.from_numpy(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB).astype(np.float32) / 65535).permute(2, 0, 1)
    assert torch.allclose(stored, from_working(s.frames[0], "linear"), atol=1 / 65535)   # the file is linear light
    assert json.loads((tmp_path / "lin" / "camera.json").read_text())["encoding"] == "linear"
    back = load_sample(tmp_path / "lin")
    assert back.camera.encoding == "linear"
    assert torch.allclose(back.frames, s.frames, atol=2e-3)          # working encoding again (16-bit round trip)
    assert torch.allclose(back.aif, s.aif, atol=2e-3)
    # a second round trip keeps the encoding and the values
    save_sample(back, tmp_path / "lin2")
    again = load_sample(tmp_path / "lin2")
    assert again.camera.encoding == "linear" and torch.allclose(again.frames, back.frames, atol=2e-3)


def test_16_bit_srgb_frames_load_unchanged(tmp_path):
    s = tiny_sample(1)
    save_sample(s, tmp_path / "s16", bit_depth=16)
    assert cv2.imread(str(tmp_path / "s16" / "frame_00.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    back = load_sample(tmp_path / "s16")
    assert back.camera.encoding == "srgb" and torch.allclose(back.frames, s.frames, atol=1 / 65535)


def test_predict_writes_a_16_bit_linear_aif_tif_only_for_linear_samples(tmp_path):
    save_sample(_linear_sample(), tmp_path / "lin")
    save_sample(tiny_sample(0), tmp_path / "srgb")
    for name in ("lin", "srgb"):
        assert main(["predict", str(tmp_path / name), "--method", "dff", "-o", str(tmp_path / f"p_{name}")]) == 0
    assert not (tmp_path / "p_srgb" / "aif.tif").exists()
    tif = cv2.imread(str(tmp_path / "p_lin" / "aif.tif"), cv2.IMREAD_UNCHANGED)
    png = cv2.imread(str(tmp_path / "p_lin" / "aif.png"), cv2.IMREAD_UNCHANGED)
    assert tif.dtype == np.uint16 and tif.shape == png.shape == (24, 28, 3)
    # aif.tif is the linear light of aif.png (8-bit sRGB), to within the quantisation of both files
    # (half an 8-bit step, plus half a 16-bit step × the sRGB curve's largest slope, 12.92)
    lin = tif.astype(np.float64) / 65535
    assert np.abs(linear_to_srgb(lin) - png / 255.0).max() < 0.5 / 255 + 0.5 / 65535 * 12.92 + 1e-9
    meta = json.loads((tmp_path / "p_lin" / "meta.json").read_text())
    assert meta["input_encoding"] == "linear"


def test_eval_compares_aif_in_one_encoding(tmp_path):
    """A linear ground-truth aif.png and an sRGB predicted aif.png are compared in the working encoding."""
    s = _linear_sample(2)
    save_sample(s, tmp_path / "gt" / "lin")
    gt = load_sample(tmp_path / "gt" / "lin")
    write_prediction(tmp_path / "pred" / "lin", gt, Prediction(gt.depth_m, gt.aif))
    res = evaluate(tmp_path / "pred", tmp_path / "gt")
    assert res.mean["aif_psnr"] > 45, res.mean    # only 8-bit quantisation between them
