"""focalstack.inference.large: photo-sized stacks are streamed (frames never held) through every
method, at full resolution for DFF and the AIF, at the working size for dfd/optimize/net."""

import json

import numpy as np
import pytest
import torch

import focalstack.classical.streaming as streaming
import focalstack.inference.large as large
from focalstack.cli import main
from focalstack.data import load_sample, save_sample
from focalstack.data.format import SampleError, open_sample_files

from .conftest import tiny_sample

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_working_size_bounds_side_and_pixel_frames():
    h, w = large.working_size(30, (4000, 6000))
    assert max(h, w) <= large.WORK_MAX_SIDE_PX and 30 * h * w <= large.WORK_MAX_PIXEL_FRAMES * 1.01
    assert abs(w / h - 1.5) < 0.01
    assert large.working_size(5, (4000, 6000)) == (683, 1024)
    assert large.working_size(5, (200, 300)) == (200, 300)           # never upscaled
    assert large.is_photo_sized(30, (4000, 6000)) and not large.is_photo_sized(5, (1000, 1500))


@pytest.fixture
def photo(tmp_path, monkeypatch):
    """A 64×80 sample that counts as photo-sized, with a 32-px working size."""
    monkeypatch.setattr(streaming, "STREAM_ABOVE_PIXEL_FRAMES", 1000)
    monkeypatch.setattr(large, "WORK_MAX_SIDE_PX", 40)
    s = tiny_sample(3, hw=(64, 80))
    save_sample(s, tmp_path / "photo")
    return tmp_path / "photo"


def test_photo_sized_dff_streams_and_matches_the_in_memory_prediction(photo, tmp_path, monkeypatch):
    argv = ["--method", "dff", "--no-guided-filter"]
    assert main(["predict", str(photo), "-o", str(tmp_path / "big")] + argv) == 0
    meta = json.loads((tmp_path / "big" / "meta.json").read_text())
    assert meta["photo_sized"]["size_hw"] == [64, 80]
    assert "streamed" in json.loads((tmp_path / "big" / "recon_error.json").read_text())["error"]
    monkeypatch.setattr(streaming, "STREAM_ABOVE_PIXEL_FRAMES", 10**12)
    assert main(["predict", str(photo), "-o", str(tmp_path / "mem")] + argv) == 0
    assert "photo_sized" not in json.loads((tmp_path / "mem" / "meta.json").read_text())
    d_big, d_mem = (np.load(tmp_path / p / "depth.npy") for p in ("big", "mem"))
    rel = np.abs(1 / d_big - 1 / d_mem) / (1 / d_mem)
    # OpenCV's and torch's filters differ by ~1e-6, which flips the argmax only at near-ties (8-bit frames)
    assert np.median(rel) < 1e-5 and np.mean(rel > 1e-3) < 0.005


@pytest.mark.parametrize("argv", [["--method", "optimize", "--iters-scale", "0.1"], ["--method", "net"],
                                  ["--method", "dfd"]])
def test_photo_sized_methods_run_at_the_working_size_and_upsample(photo, tmp_path, argv):
    out = tmp_path / "o"
    assert main(["predict", str(photo), "-o", str(out)] + argv) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["photo_sized"]["working_size_hw"] == [32, 40]
    d = np.load(out / "depth.npy")
    assert d.shape == (64, 80) and np.isfinite(d).all()
    # the two planes of the scene (0.7 m left, 2.5 m right) come back on their sides of the edge
    assert np.median(d[:, 8:30]) < np.median(d[:, 50:72])


def test_photo_sized_working_frames_are_area_means_in_linear_light(photo, monkeypatch):
    """A working-size pixel integrates the photo's radiance: the frames a method sees at the working
    size are area means taken in the light the optics blur, not means of the encoded values."""
    import torch.nn.functional as F

    import focalstack.inference as inference
    from focalstack.render import from_linear, light, to_linear
    assert light.PHYSICS_LIGHT == "linear"
    seen = {}
    real = inference.get_method

    def spy(name):
        fn = real(name)
        return lambda sample, opts=None: seen.setdefault("frames", sample.frames.clone()) is None or fn(sample, opts)

    monkeypatch.setattr(inference, "get_method", spy)
    large.predict_large(open_sample_files(photo), "dfd")
    full = load_sample(photo).frames
    want = from_linear(F.interpolate(to_linear(full), size=(32, 40), mode="area"))
    torch.testing.assert_close(seen["frames"], want, rtol=0, atol=2e-5)
    assert float((seen["frames"] - F.interpolate(full, size=(32, 40), mode="area")).abs().max()) > 1e-3


def test_sample_files_read_and_downscale(tmp_path):
    s = tiny_sample(4, hw=(40, 48))
    save_sample(s, tmp_path / "s")
    files = open_sample_files(tmp_path / "s", min_frames=2)
    assert files.frames is None and files.num_frames == 5 and files.size_hw == (40, 48)
    mem = load_sample(tmp_path / "s")
    assert np.allclose(files.read_frame(1), mem.frames[1].permute(1, 2, 0).numpy())
    small = files.downscaled((20, 24))
    assert small.frames.shape == (5, 3, 20, 24)
    assert small.camera.lens.pixel_size_m == pytest.approx(2 * s.camera.lens.pixel_size_m)
    assert torch.allclose(small.frames[2], torch.nn.functional.interpolate(mem.frames[2:3], size=(20, 24),
                                                                          mode="area")[0], atol=2e-3)
    import cv2
    cv2.imwrite(str(files.paths[3]), np.zeros((40, 47, 3), np.uint8))
    with pytest.raises(SampleError, match="frame_03.png: frame size"):
        files.read_frame(3)


@pytest.mark.parametrize("argv", [["--method", "dff"], ["--method", "optimize", "--iters-scale", "0.1"]])
def test_photo_sized_stack_of_unknown_focus_gives_relative_inverse_depth(photo, tmp_path, argv):
    from dataclasses import replace

    from focalstack.data import load_camera
    cam = load_camera(photo)
    replace(cam, focus_known=False).save(photo / "camera.json")
    out = tmp_path / "rel"
    assert main(["predict", str(photo), "-o", str(out)] + argv) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["depth_kind"] == "relative_inverse" and "photo_sized" in meta
    d = np.load(out / "depth.npy")
    assert d.shape == (64, 80) and d.min() >= 0 and d.max() <= 1
    # larger = nearer: the near plane (left) has the larger relative inverse depth
    assert np.median(d[:, 8:30]) > np.median(d[:, 50:72])


def test_photo_sized_stack_a_method_cannot_take_is_refused_before_streaming(photo, tmp_path, capsys, monkeypatch):
    from dataclasses import replace

    from focalstack.data import load_camera
    cam = load_camera(photo)
    replace(cam, focus_known=False).save(photo / "camera.json")
    streamed = []
    monkeypatch.setattr(streaming, "_focus", lambda *a, **k: streamed.append(1))
    assert main(["predict", str(photo), "-o", str(tmp_path / "o"), "--method", "dfd"]) == 2
    err = capsys.readouterr().err.strip()
    assert "photo: --method dfd needs the lens and the focus distances" in err and "\n" not in err
    assert not streamed and not (tmp_path / "o").exists()


def test_photo_sized_linear_raw_stack_streams_with_a_16_bit_linear_aif(tmp_path, monkeypatch):
    """A stack of 16-bit linear frames (a RAW import) goes through the streamed path: the frames are
    converted to the working encoding as they are read, aif.tif holds the full-size linear AIF."""
    from dataclasses import replace
    import cv2
    monkeypatch.setattr(streaming, "STREAM_ABOVE_PIXEL_FRAMES", 1000)
    s = tiny_sample(6, hw=(48, 64))
    s = replace(s, camera=replace(s.camera, encoding="linear"))
    save_sample(s, tmp_path / "raw")
    out = tmp_path / "o"
    assert main(["predict", str(tmp_path / "raw"), "-o", str(out), "--method", "dff"]) == 0
    tif = cv2.imread(str(out / "aif.tif"), cv2.IMREAD_UNCHANGED)
    png = cv2.imread(str(out / "aif.png"), cv2.IMREAD_UNCHANGED)
    assert tif.dtype == np.uint16 and tif.shape[:2] == (48, 64) and png.shape[:2] == (48, 64)
    # linear light is darker than its sRGB encoding in the mid-tones
    mid = (png > 80) & (png < 160)
    assert (tif[mid] / 65535.0 < png[mid] / 255.0).mean() > 0.95
    mem = load_sample(tmp_path / "raw")
    files = open_sample_files(tmp_path / "raw")
    assert np.allclose(files.read_frame(2), mem.frames[2].permute(1, 2, 0).numpy(), atol=1e-6)
