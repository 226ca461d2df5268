"""focalstack.data.synthesize_dataset: the library function behind `focalstack synth`, `demo` and the
benchmarks writes exactly what the command writes."""

import filecmp

import pytest

from focalstack.cli import main
from focalstack.data import SynthConfig, list_samples, synthesize_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _same_tree(a, b):
    for d in list_samples(a):
        files = sorted(p.name for p in d.iterdir())
        match, mismatch, errors = filecmp.cmpfiles(d, b / d.name, files, shallow=False)
        assert not mismatch and not errors, (d.name, mismatch, errors)
    assert [d.name for d in list_samples(a)] == [d.name for d in list_samples(b)]


def test_library_writes_what_the_command_writes(tmp_path, capsys):
    cli, lib = tmp_path / "cli", tmp_path / "lib"
    assert main(["synth", str(cli), "--num", "3", "--size", "24", "32", "--seed", "4", "--split", "0.34",
                 "--focus", "0.7", "1.5", "--quiet"]) == 0
    res = synthesize_dataset(SynthConfig(out_dir=lib, num=3, size=(24, 32), seed=4, split=0.34, focus=(0.7, 1.5),
                                         progress=False))
    for sp in ("train", "val"):
        _same_tree(cli / sp, lib / sp)
    assert (cli / "synth.json").read_text() == (lib / "synth.json").read_text()
    assert res.num == 3 and len(res.written) == 3 and not res.skipped
    assert capsys.readouterr().out.strip().endswith(res.summary().split(": ", 1)[1])
    # resumed: nothing to write, the skipped samples named through ``log``
    lines = []
    again = synthesize_dataset(SynthConfig(out_dir=lib, num=3, size=(24, 32), seed=4, split=0.34,
                                           focus=(0.7, 1.5), progress=False), log=lines.append)
    assert not again.written and len(again.skipped) == 3 and lines[0].startswith("skipping 3 complete sample(s)")


def test_scene_seeds_and_one_line_errors(tmp_path):
    res = synthesize_dataset(SynthConfig(out_dir=tmp_path / "d", size=(16, 16), scene_seeds=[7, 1000000],
                                         progress=False))
    assert [d.name for d in list_samples(tmp_path / "d")] == ["procedural_0000007", "procedural_1000000"]
    assert res.num == 2
    with pytest.raises(ValueError, match="exclude each other"):
        SynthConfig(out_dir=tmp_path / "x", preset="procedural", camera_distribution="general")
    with pytest.raises(ValueError, match="--size applies to --source procedural"):
        synthesize_dataset(SynthConfig(out_dir=tmp_path / "x", source="folder", size=(8, 8)))
