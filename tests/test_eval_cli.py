import json

import numpy as np
import pytest
import torch

from focalstack.cli import main
from focalstack.data import read_depth
from focalstack.metrics import depth_metrics


def make_preds(gt_root, out, fn, meta=None):
    for s in sorted(gt_root.iterdir()):
        d = out / s.name
        d.mkdir(parents=True)
        gt = np.load(s / "depth.npy")
        np.save(d / "depth.npy", fn(gt).astype(np.float32))
        if meta:
            (d / "meta.json").write_text(json.dumps(meta))


def test_eval_matches_metrics_module(tiny_dataset, tmp_path, capsys):
    pred = tmp_path / "pred"
    make_preds(tiny_dataset, pred, lambda g: g * 1.3 + 0.05)
    assert main(["eval", str(pred), str(tiny_dataset)]) == 0
    res = json.loads((pred / "metrics.json").read_text())
    assert res["n_samples"] == 3
    per = [depth_metrics(read_depth(pred / n / "depth.npy"), read_depth(tiny_dataset / n / "depth.npy"))
           for n in ("s000", "s001", "s002")]
    for k in ("abs_rel", "rmse", "delta1"):
        assert res["mean"][k] == pytest.approx(np.mean([p[k] for p in per]), rel=1e-9)
    assert res["mean"]["delta1"] < 1.0
    assert "| pred |" in (pred / "metrics.md").read_text()


def test_relative_predictions_need_alignment(tiny_dataset, tmp_path, capsys):
    pred = tmp_path / "rel"
    make_preds(tiny_dataset, pred, lambda g: 3.0 / g + 0.2, meta={"depth_kind": "relative_inverse"})
    assert main(["eval", str(pred), str(tiny_dataset)]) == 2
    assert "--align affine_inverse" in capsys.readouterr().err
    assert main(["eval", str(pred), str(tiny_dataset), "--align", "affine_inverse"]) == 0
    res = json.loads((pred / "metrics.json").read_text())
    assert res["mean"]["abs_rel"] < 1e-5 and res["mean"]["delta1"] == 1.0


def test_missing_prediction_is_an_error(tiny_dataset, tmp_path, capsys):
    pred = tmp_path / "p"
    make_preds(tiny_dataset, pred, lambda g: g)
    import shutil
    shutil.rmtree(pred / "s001")
    assert main(["eval", str(pred), str(tiny_dataset)]) == 2
    assert "no prediction for 1 ground-truth sample(s), e.g. s001" in capsys.readouterr().err
