import subprocess
import sys

from focalstack.cli import main
from focalstack.optics import get_preset


def test_info_prints_coc_table(capsys):
    assert main(["info", "--preset", "nyuv2_dered", "--depths", "1.0", "2.0"]) == 0
    out = capsys.readouterr().out
    assert "| 1.000 | 0.00 |" in out  # in focus at 1 m
    c = get_preset("nyuv2_dered").lens.coc_px(2.0, 6.0).item()
    assert f"{c:.2f}" in out.splitlines()[-2]


def test_info_from_camera_json(tmp_path, capsys):
    get_preset("procedural").save(tmp_path / "camera.json")
    assert main(["info", "--camera", str(tmp_path)]) == 0
    assert "CoC diameter in pixels" in capsys.readouterr().out


def test_bad_camera_is_one_line_error(tmp_path):
    (tmp_path / "camera.json").write_text("[1, 2]")
    r = subprocess.run([sys.executable, "-m", "focalstack", "info", "--camera", str(tmp_path / "camera.json")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "camera.json: expected a JSON object" in r.stderr
    assert "Traceback" not in r.stderr


def test_every_command_is_registered():
    from focalstack.cli import COMMANDS, build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)
