import json

import numpy as np
import pytest
import torch

from focalstack.data import (SampleError, check_sample, list_samples, load_sample, read_image, save_sample,
                             write_image)
from tests.conftest import tiny_sample


def test_roundtrip_8_and_16_bit(tmp_path):
    s = tiny_sample()
    for bits, tol in ((8, 0.5 / 255 + 1e-6), (16, 0.5 / 65535 + 1e-6)):
        out = save_sample(s, tmp_path / f"b{bits}", bit_depth=bits)
        r = load_sample(out)
        assert r.camera == s.camera
        assert (r.frames - s.frames).abs().max() <= tol
        assert (r.aif - s.aif).abs().max() <= tol
        assert torch.equal(r.depth_m, s.depth_m)
        assert r.name == f"b{bits}"
    assert sorted(p.name for p in (tmp_path / "b8").iterdir() if p.name != ".focalstack") == [
        "aif.png", "camera.json", "depth.npy"] + [f"frame_{i:02d}.png" for i in range(5)]


def test_rgb_order_is_kept(tmp_path):
    img = torch.zeros(3, 4, 4)
    img[0] = 1.0  # pure red
    write_image(tmp_path / "r.png", img)
    back = read_image(tmp_path / "r.png")
    assert back[0].min() == 1.0 and back[1:].max() == 0.0


def test_optional_files_and_invalid_depth(tmp_path):
    s = tiny_sample()
    s.depth_m[0, 0] = float("nan")
    s.depth_m[0, 1] = 0.0
    out = save_sample(s, tmp_path / "s")
    r = load_sample(out)
    assert torch.isnan(r.depth_m[0, 0]) and r.depth_m[0, 1] == 0  # kept: they mark invalid pixels
    (out / "aif.png").unlink()
    (out / "depth.npy").unlink()
    r = load_sample(out)
    assert r.aif is None and r.depth_m is None


@pytest.fixture
def sample_dir(tmp_path):
    return save_sample(tiny_sample(), tmp_path / "sample")


# the full loader and the header-only check (used on whole datasets before training) report the
# same structural problems the same way
LOADERS = pytest.mark.parametrize("load", [load_sample, check_sample], ids=["load_sample", "check_sample"])


def one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@LOADERS
def test_error_focus_count_mismatch(sample_dir, load):
    cam = json.loads((sample_dir / "camera.json").read_text())
    cam["focus_distances_m"] = cam["focus_distances_m"][:4]
    (sample_dir / "camera.json").write_text(json.dumps(cam))
    with pytest.raises(SampleError) as e:
        load(sample_dir)
    assert "camera.json" in one_line(e) and "4 entries" in str(e.value) and "5 frames" in str(e.value)


@LOADERS
def test_error_mismatched_frame_sizes(sample_dir, load):
    write_image(sample_dir / "frame_03.png", torch.rand(3, 10, 10))
    with pytest.raises(SampleError) as e:
        load(sample_dir)
    assert "frame_03.png" in one_line(e) and "differs" in str(e.value)


@LOADERS
def test_error_missing_and_malformed_camera(sample_dir, load):
    (sample_dir / "camera.json").write_text("{oops")
    with pytest.raises(SampleError) as e:
        load(sample_dir)
    assert "camera.json" in one_line(e) and "malformed JSON" in str(e.value)
    (sample_dir / "camera.json").unlink()
    with pytest.raises(SampleError) as e:
        load(sample_dir)
    assert "missing camera.json" in one_line(e)


@LOADERS
def test_error_corrupt_image(sample_dir, load):
    (sample_dir / "frame_01.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(SampleError) as e:
        load(sample_dir)
    assert "frame_01.png" in one_line(e) and "not a readable image" in str(e.value)


def test_error_depth_problems(sample_dir):
    np.save(sample_dir / "depth.npy", np.ones((3, 3), np.float32))
    with pytest.raises(SampleError) as e:
        load_sample(sample_dir)
    assert "depth.npy" in one_line(e) and "size" in str(e.value)
    np.save(sample_dir / "depth.npy", -np.ones((24, 28), np.float32))
    with pytest.raises(SampleError, match="negative"):
        load_sample(sample_dir)
    (sample_dir / "depth.npy").write_bytes(b"garbage")
    with pytest.raises(SampleError, match="depth.npy: not a readable"):
        load_sample(sample_dir)


def test_error_single_frame_where_two_are_needed(tmp_path):
    s = tiny_sample().subset([2])
    d = save_sample(s, tmp_path / "one")
    assert load_sample(d).num_frames == 1
    with pytest.raises(SampleError) as e:
        load_sample(d, min_frames=2)
    assert "1 frame(s) but at least 2" in one_line(e)
    with pytest.raises(SampleError) as e:
        check_sample(d, min_frames=2)
    assert "1 frame(s) but at least 2" in one_line(e)


def test_list_samples(tmp_path, tiny_dataset):
    assert [p.name for p in list_samples(tiny_dataset)] == ["s000", "s001", "s002"]
    assert list_samples(tiny_dataset / "s001") == [tiny_dataset / "s001"]
    with pytest.raises(SampleError, match="no sample folders"):
        list_samples(tmp_path)  # holds a dataset folder, but no sample folder itself
    with pytest.raises(SampleError, match="no such folder"):
        list_samples(tmp_path / "missing")


def test_save_is_atomic(tmp_path, monkeypatch):
    s = tiny_sample()
    import focalstack.data.format as fmt

    calls = {"n": 0}
    real = fmt.write_image

    def failing(path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(path, *a, **k)

    monkeypatch.setattr(fmt, "write_image", failing)
    with pytest.raises(OSError):
        save_sample(s, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # no half-written folder, no temp left behind
