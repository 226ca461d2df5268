"""How good a distillation run's labels were, and where its network ended, on its own training stacks.

    .venv/bin/python benchmarks/teacher_labels.py RUN DATA [--init shipped:general] [--checkpoint FILE] [--num N]

``RUN``: a ``focalstack train --teacher …`` run folder (its label cache ``RUN/teacher/``, its
checkpoint); ``DATA``: the folder it trained on, whose stacks hold ``depth.npy``. Over those stacks
(ground truth read for this diagnosis only), prints δ1 / AbsRel of the cached labels, of the initial
network (``--init``, run as ``predict --method net`` runs it) and of the run's network (``trained``), on all
pixels and on the half each label trusts most (its ``weight``). Tells a fine-tune that lost
accuracy on validation scenes apart by cause: labels no better than the start, or a network that
moved away from labels that were better (issue 12's fine-tune target; README, "Any camera").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def _scores(depth_m: torch.Tensor, gt_m: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[float, float]:
    from focalstack.metrics import depth_metrics
    m = depth_metrics(depth_m, gt_m, mask=mask)
    return m["delta1"], m["abs_rel"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("data")
    ap.add_argument("--init", default="shipped:general", help="the network the run started from")
    ap.add_argument("--checkpoint", default=None, help="the run's network (default the run folder: best, else last)")
    ap.add_argument("--num", type=int, default=0, help="first N stacks (0 = all)")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    from focalstack.data import list_samples, load_sample
    from focalstack.inference.network import predict_net
    from focalstack.inference.options import NetOptions
    from focalstack.train.teacher import load_label

    run = Path(a.run)
    paths = list_samples(Path(a.data))[: a.num or None]
    rows = {k: [] for k in ("labels", "init", "trained", "labels_trusted", "init_trusted", "trained_trusted")}
    for p in paths:
        s = load_sample(p, load_aif=False)
        if s.depth_m is None:
            raise SystemExit(f"{p}: no depth.npy; this diagnosis needs the ground truth of the training stacks")
        lab_file = run / "teacher" / f"{Path(p).name}.safetensors"
        if not lab_file.is_file():
            raise SystemExit(f"{lab_file}: no label; is {run} a --teacher run over {a.data}?")
        lab = load_label(lab_file)
        gt = s.depth_m.float().view(*s.size_hw)
        w = lab["weight"].view(*s.size_hw)
        trusted = w > w.median()
        preds = {"labels": 1.0 / lab["inv_depth"].view(*s.size_hw),
                 "init": predict_net(s, NetOptions(checkpoint=a.init)).depth_m.view(*s.size_hw),
                 "trained": predict_net(s, NetOptions(checkpoint=a.checkpoint or str(run))).depth_m.view(*s.size_hw)}
        for k, d in preds.items():
            rows[k].append(_scores(d, gt))
            rows[f"{k}_trusted"].append(_scores(d, gt, trusted))
    out = {k: {"delta1": sum(r[0] for r in v) / len(v), "abs_rel": sum(r[1] for r in v) / len(v)}
           for k, v in rows.items()}
    print(json.dumps({"run": str(run), "checkpoint": a.checkpoint or str(run), "data": str(a.data), "stacks": len(paths),
                      **out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
