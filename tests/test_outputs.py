"""Never lose a user's file: what every command may write, and what it refuses (focalstack.data.io).

Each deletion case plants a decoy file and asserts that it survives byte for byte.
"""

import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from focalstack.cli import main
from focalstack.data import load_sample, save_sample
from focalstack.data.io import (MARKER, OutputError, atomic_write_dir, check_output_path, claim_output_dir,
                                read_marker)

from .conftest import tiny_sample

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DECOY = b"my thesis, the only copy\n"


def _tree(root):
    """{relative path: sha256} of every file under root (to prove nothing changed)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0], err
    for n in needles:
        assert n in err[0], (n, err[0])
    return err[0]


def _photos(d, n=3, hw=(40, 48)):
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((*hw, 3)) * 255).astype(np.uint8)).save(d / f"img_{i}.png")
    return d


# ---- the three ways to destroy data found by the probe -------------------------------------------

def test_predict_into_its_own_dataset_refused_and_dataset_intact(tiny_dataset, capsys):
    (tiny_dataset / "notes.txt").write_bytes(DECOY)
    before = _tree(tiny_dataset)
    assert main(["predict", str(tiny_dataset / "s000"), "--method", "dff", "-o", str(tiny_dataset)]) == 2
    _one_line_error(capsys, "contains the input")
    assert _tree(tiny_dataset) == before
    assert (tiny_dataset / "notes.txt").read_bytes() == DECOY


def test_predict_into_a_users_folder_refused(tiny_dataset, tmp_path, capsys):
    docs = tmp_path / "Documents"
    docs.mkdir()
    (docs / "thesis.tex").write_bytes(DECOY)
    assert main(["predict", str(tiny_dataset / "s000"), "--method", "dff", "-o", str(docs)]) == 2
    _one_line_error(capsys, str(docs), "did not write")
    assert sorted(p.name for p in docs.iterdir()) == ["thesis.tex"]
    assert (docs / "thesis.tex").read_bytes() == DECOY
    # a dataset prediction into the same folder is refused as well (it would mix into the user's files)
    assert main(["predict", str(tiny_dataset), "--method", "dff", "-o", str(docs)]) == 2
    _one_line_error(capsys, str(docs))
    assert sorted(p.name for p in docs.iterdir()) == ["thesis.tex"]


@pytest.mark.parametrize("where", ["same", "parent", "inside"])
def test_import_never_writes_over_or_around_its_photos(tmp_path, capsys, where):
    photos = _photos(tmp_path / "stack" / "photos")
    (photos / "readme.txt").write_bytes(DECOY)
    out = {"same": photos, "parent": photos.parent, "inside": photos / "sample"}[where]
    before = _tree(tmp_path)
    assert main(["import", str(photos), "-o", str(out), "--focus", "0.3", "0.6", "1.2", "--no-align"]) == 2
    _one_line_error(capsys, {"same": "is the input", "parent": "contains the input",
                             "inside": "lies inside the input"}[where])
    assert _tree(tmp_path) == before


def test_symlinked_output_onto_the_input_refused(tiny_dataset, tmp_path, capsys):
    link = tmp_path / "link"
    os.symlink(tiny_dataset, link)
    before = _tree(tiny_dataset)
    assert main(["predict", str(tiny_dataset / "s001"), "--method", "dff", "-o", str(link)]) == 2
    _one_line_error(capsys, "contains the input")
    assert _tree(tiny_dataset) == before


# ---- an output path that is an existing file ----------------------------------------------------

@pytest.mark.parametrize("command", ["predict", "import", "train", "eval", "synth"])
def test_output_that_is_an_existing_file_is_one_line_for_every_command(tiny_dataset, tmp_path, capsys, command):
    target = tmp_path / "results.bin"
    target.write_bytes(DECOY)
    photos = _photos(tmp_path / "photos") if command == "import" else None
    argv = {"predict": ["predict", str(tiny_dataset), "--method", "dff", "-o", str(target)],
            "import": ["import", str(photos), "-o", str(target), "--focus", "0.3", "0.6", "1.2"],
            "train": ["train", str(tiny_dataset), "--out", str(target), "--max-steps", "1"],
            "eval": ["eval", str(tiny_dataset), str(tiny_dataset), "--out", str(target)],
            "synth": ["synth", str(target), "--num", "1", "--size", "16", "16", "--quiet"]}[command]
    assert main(argv) == 2
    _one_line_error(capsys, str(target), "is a file")
    assert target.read_bytes() == DECOY
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "photos") == ["ds", "results.bin"]


# ---- what focalstack may replace: its own outputs, nothing else ----------------------------------

def test_predict_replaces_its_own_output_but_not_a_file_added_to_it(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "pred"
    sample = str(tiny_dataset / "s000")
    assert main(["predict", sample, "--method", "dff", "-o", str(out)]) == 0
    assert read_marker(out) == "prediction"
    first = json.loads((out / "meta.json").read_text())["seconds"]
    assert main(["predict", sample, "--method", "dff", "-o", str(out)]) == 0   # its own folder: replaced
    assert json.loads((out / "meta.json").read_text())["seconds"] != first
    (out / "my_notes.txt").write_bytes(DECOY)
    capsys.readouterr()
    assert main(["predict", sample, "--method", "dff", "-o", str(out)]) == 2
    _one_line_error(capsys, "my_notes.txt")
    assert (out / "my_notes.txt").read_bytes() == DECOY


def test_a_focalstack_folder_of_another_kind_is_not_replaced(tiny_dataset, tmp_path, capsys):
    other = tmp_path / "other_sample"
    save_sample(tiny_sample(3), other)   # a sample focalstack wrote: still not a prediction to replace
    before = _tree(other)
    assert main(["predict", str(tiny_dataset / "s000"), "--method", "dff", "-o", str(other)]) == 2
    _one_line_error(capsys, "holds a focalstack sample, not a prediction")
    assert _tree(other) == before


def test_empty_folder_is_used(tiny_dataset, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert main(["predict", str(tiny_dataset / "s000"), "--method", "dff", "-o", str(out)]) == 0
    assert (out / "depth.npy").is_file()


def test_train_refuses_a_users_folder_before_reading_its_config(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "project"
    run.mkdir()
    (run / "config.json").write_text('{"mine": true}')
    before = _tree(run)
    assert main(["train", str(tiny_dataset), "--out", str(run), "--max-steps", "1", "--crop", "0", "0"]) == 2
    _one_line_error(capsys, str(run), "did not write")
    assert _tree(run) == before


def test_synth_refuses_a_users_folder_and_its_own_input(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_bytes(DECOY)
    assert main(["synth", str(docs), "--num", "1", "--size", "16", "16", "--quiet"]) == 2
    _one_line_error(capsys, "did not write")
    assert _tree(docs) == {"a.txt": hashlib.sha256(DECOY).hexdigest()}
    # RGB-D source folder as the output's parent
    rgbd = tmp_path / "rgbd"
    rgbd.mkdir()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(rgbd / "room.png")
    np.save(rgbd / "room_depth.npy", np.full((16, 16), 2.0, np.float32))
    before = _tree(rgbd)
    assert main(["synth", str(rgbd / "out"), "--source", "folder", "--input", str(rgbd), "--quiet"]) == 2
    _one_line_error(capsys, "lies inside the input")
    assert _tree(rgbd) == before


def test_eval_writes_beside_foreign_predictions_but_never_over_their_files(tiny_dataset, tmp_path, capsys):
    pred = tmp_path / "other_tool"
    for s in ("s000", "s001", "s002"):
        (pred / s).mkdir(parents=True)
        np.save(pred / s / "depth.npy", np.load(tiny_dataset / s / "depth.npy"))
    assert main(["eval", str(pred), str(tiny_dataset)]) == 0        # new files beside them: fine
    (pred / "metrics.json").write_bytes(DECOY)                       # now a file focalstack did not write
    (pred / "metrics.md").unlink()
    capsys.readouterr()
    assert main(["eval", str(pred), str(tiny_dataset)]) == 2
    _one_line_error(capsys, "metrics.json", "did not write")
    assert (pred / "metrics.json").read_bytes() == DECOY


# ---- the other probe findings -------------------------------------------------------------------

@pytest.fixture
def dataset_missing_camera(tmp_path):
    root = tmp_path / "ds"
    for i in range(3):
        save_sample(tiny_sample(i, name=f"s{i}"), root / f"s{i}")
    (root / "s1" / "camera.json").unlink()
    return root


@pytest.mark.parametrize("command", ["predict", "train"])
def test_sample_without_camera_json_is_named(dataset_missing_camera, tmp_path, capsys, command):
    argv = (["predict", str(dataset_missing_camera), "--method", "dff", "-o", str(tmp_path / "p")]
            if command == "predict" else
            ["train", str(dataset_missing_camera), "--out", str(tmp_path / "r"), "--max-steps", "1",
             "--crop", "0", "0", "--workers", "0", "--no-progress", "--no-tensorboard", "--width", "4",
             "--levels", "2"])
    assert main(argv) == 2
    _one_line_error(capsys, "s1", "no camera.json", "--no-strict")
    assert not (tmp_path / "p").exists() and not (tmp_path / "r").exists()
    if command == "predict":   # --no-strict: skipped, with a warning naming it
        with pytest.warns(UserWarning, match=r"s1: has frames but no camera.json; skipped"):
            assert main(argv + ["--no-strict"]) == 0
        assert sorted(p.name for p in (tmp_path / "p").iterdir() if p.name != MARKER) == ["s0", "s2"]


@pytest.mark.parametrize("opt", ["--f-number", "--focal-length-mm", "--pixel-size-um"])
def test_import_refuses_zero_lens_values(tmp_path, capsys, opt):
    photos = _photos(tmp_path / "photos")
    assert main(["import", str(photos), "-o", str(tmp_path / "s"), "--focus", "0.3", "0.6", "1.2",
                 opt, "0"]) == 2
    _one_line_error(capsys, opt, "positive")
    assert not (tmp_path / "s").exists()


def test_import_png_is_quiet_about_missing_exif(tmp_path, capsys):
    photos = _photos(tmp_path / "photos")
    assert main(["import", str(photos), "-o", str(tmp_path / "s"), "--focus", "0.3", "0.6", "1.2",
                 "--focal-length-mm", "26", "--f-number", "1.8", "--pixel-size-um", "1.4", "--no-align"]) == 0
    cap = capsys.readouterr()
    text = cap.out + cap.err
    assert "does not have exif" not in text.lower()
    assert text.count("no EXIF data in any photo") == 1
    assert load_sample(tmp_path / "s").num_frames == 3


def _train_argv(data, run):
    return ["train", str(data), "--out", str(run), "--max-steps", "1", "--crop", "0", "0", "--workers", "0",
            "--no-progress", "--no-tensorboard", "--width", "4", "--levels", "2"]


@pytest.mark.parametrize("stacks,named", [({"s0": [0], "s1": [0]}, "s0"),              # only 1-frame stacks
                                           ({"five": None, "one": [0]}, "one")])    # 1 and 5 frames mixed
def test_train_one_frame_stacks_are_named_and_leave_no_run_folder(tmp_path, capsys, stacks, named):
    root = tmp_path / "ds"
    for i, (name, frames) in enumerate(stacks.items()):
        s = tiny_sample(i)
        save_sample(s if frames is None else s.subset(frames), root / name)
    run = tmp_path / "run"
    assert main(_train_argv(root, run)) == 2
    _one_line_error(capsys, f"{named}: 1 frame")
    assert not run.exists()


def test_train_mixed_stack_sizes_share_batches(tmp_path, capsys):
    """Stacks of 5 and 3 frames train together (collate_stacks pads by repeating frames)."""
    root = tmp_path / "ds"
    save_sample(tiny_sample(0), root / "five")
    save_sample(tiny_sample(1).subset([0, 2, 4]), root / "three")
    run = tmp_path / "run"
    assert main(_train_argv(root, run) + ["--batch-size", "2"]) == 0
    assert (run / "last.safetensors").is_file()


def test_train_failing_input_check_leaves_no_run_folder(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    argv = _train_argv(tiny_dataset, run)
    argv[argv.index("--crop") + 1: argv.index("--crop") + 3] = ["64", "64"]   # larger than the 24×28 frames
    assert main(argv) == 2
    _one_line_error(capsys, "crop 64×64 larger than the frames")
    assert not run.exists()


def test_depth_supervision_with_only_invalid_depth_stops(tmp_path, capsys):
    root = tmp_path / "ds"
    for i in range(2):
        s = tiny_sample(i)
        s.depth_m[:] = float("nan") if i else 0.0
        save_sample(s, root / f"s{i}")
    run = tmp_path / "run"
    assert main(_train_argv(root, run) + ["--supervision", "depth"]) == 2
    _one_line_error(capsys, "no valid depth", "depth.npy")
    assert not run.exists()


@pytest.mark.parametrize("fills,needles", [
    ([float("inf"), float("-inf"), float("nan")], ("no valid depth", "s0/depth.npy", "and 2 more")),
    ([0.0, float("nan"), float("inf")], ("no valid depth", "s0/depth.npy", "and 2 more")),
    ([float("nan"), -1.0, float("nan")], ("s1/depth.npy", "negative")),       # ≤ 0: a negative depth is named
])
def test_depth_supervision_with_only_invalid_depth_of_any_kind_stops_before_training(tmp_path, capsys, fills,
                                                                                     needles):
    """Issue 13, probe (a): every depth.npy invalid (NaN, ±inf, 0, negative) stops at dataset set-up,
    one line naming the files, before a step runs or the run folder exists."""
    root = tmp_path / "ds"
    for i, v in enumerate(fills):
        s = tiny_sample(i)
        s.depth_m[:] = v
        save_sample(s, root / f"s{i}")
    run = tmp_path / "run"
    assert main(_train_argv(root, run) + ["--supervision", "depth"]) == 2
    _one_line_error(capsys, *needles)
    assert not run.exists()


def test_one_frame_stack_is_named_under_self_supervision_and_trains_under_depth_supervision(tmp_path, capsys):
    """Issue 13, probe (b): a 1-frame sample is named with its frame count, never reported as a stack-size
    mismatch. Only self-supervision rejects it (re-rendering one frame compares it with itself: nothing to
    learn depth from); depth and AIF supervision have their target, and collate_stacks pads the 1-frame
    stack by repeating it beside 5-frame ones, so it trains."""
    root = tmp_path / "ds"
    save_sample(tiny_sample(0), root / "five")
    save_sample(tiny_sample(1).subset([2]), root / "single")
    run = tmp_path / "run"
    assert main(_train_argv(root, run) + ["--batch-size", "2"]) == 2
    err = _one_line_error(capsys, "single: 1 frame(s) but at least 2 are needed")
    assert "size" not in err
    assert not run.exists()
    assert main(_train_argv(root, run) + ["--batch-size", "2", "--supervision", "depth"]) == 0
    assert (run / "last.safetensors").is_file()
    # a model that renders from the sample's AIF (Gur & Wolf) has its signal in one frame: the
    # focus sequence F1 of its paper is a 1-frame stack, trained self-supervised
    ones = tmp_path / "ones"
    for i in range(2):
        save_sample(tiny_sample(i).subset([2]), ones / f"f1_{i}")
    assert main(["train", str(ones), "--out", str(tmp_path / "gw"), "--model", "gurwolf", "--width", "4",
                 "--levels", "2", "--max-steps", "1", "--batch-size", "2", "--crop", "16", "16", "--workers", "0",
                 "--no-progress", "--no-tensorboard"]) == 0


# ---- the helpers themselves ---------------------------------------------------------------------

def test_atomic_write_dir_failure_leaves_the_old_output_and_no_temporaries(tmp_path):
    out = tmp_path / "pred"
    with atomic_write_dir(out, "prediction") as tmp:
        (tmp / "depth.npy").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write_dir(out, "prediction") as tmp:
            (tmp / "depth.npy").write_bytes(b"new")
            raise RuntimeError("crash mid-write")
    assert (out / "depth.npy").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"]


def test_folder_that_changed_during_the_job_is_not_replaced(tmp_path):
    out = tmp_path / "pred"
    with atomic_write_dir(out, "prediction") as tmp:
        (tmp / "depth.npy").write_bytes(b"old")
    with pytest.raises(OutputError, match="holds mine.txt"):
        with atomic_write_dir(out, "prediction") as tmp:
            (out / "mine.txt").write_bytes(DECOY)   # the user drops a file in while the job runs
            (tmp / "depth.npy").write_bytes(b"new")
    assert (out / "mine.txt").read_bytes() == DECOY and (out / "depth.npy").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"]


def test_claim_output_dir_rules(tmp_path):
    run = claim_output_dir(tmp_path / "a" / "run", "run")
    assert read_marker(run) == "run"
    assert claim_output_dir(run, "run") == run                # an earlier run: reused
    with pytest.raises(OutputError, match="holds a focalstack run, not a demo"):
        claim_output_dir(run, "demo")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("x")
    with pytest.raises(OutputError, match="did not write"):
        claim_output_dir(tmp_path / "b", "run")
    (tmp_path / "b" / MARKER).write_text("not json")          # a marker must be focalstack's own
    with pytest.raises(OutputError, match="did not write"):
        claim_output_dir(tmp_path / "b", "run")
    with pytest.raises(OutputError, match="lies inside the input"):
        check_output_path(tmp_path / "b" / "c", [tmp_path / "b"])
    assert not claim_output_dir(tmp_path / "new", "run", create=False).exists()


def test_bench_refuses_to_overwrite_a_file_it_did_not_write(tmp_path, capsys):
    mine = tmp_path / "table.md"
    mine.write_bytes(DECOY)
    assert main(["bench", "render", "--out", str(mine)]) == 2
    _one_line_error(capsys, "table.md", "not replacing it")
    assert mine.read_bytes() == DECOY
