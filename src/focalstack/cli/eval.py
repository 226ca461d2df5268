"""``focalstack eval PRED_DIR GT_DATASET``: the metrics table (JSON + Markdown)."""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluate import ALIGNMENTS, evaluate
from ..metrics import format_table

MAIN_KEYS = ["delta1", "delta2", "delta3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "mae", "sc_inv", "bumpiness"]
DISPARITY_KEYS = ["mse", "rmse", "mae", "badpix", "bumpiness", "abs_rel", "sq_rel", "rmse_log", "delta1", "delta2", "delta3"]


def register(sub) -> None:
    p = sub.add_parser("eval", help="score predictions (from `focalstack predict`) against ground-truth depth")
    p.add_argument("pred_dir")
    p.add_argument("gt_dataset")
    p.add_argument("--out", help="folder for metrics.json / metrics.md (default: PRED_DIR); new, empty, or "
                                 "written by focalstack")
    p.add_argument("--align", choices=ALIGNMENTS, default="none",
                   help="none (metric depth), median scaling, or an affine fit in inverse depth (relative outputs)")
    p.add_argument("--min-depth", type=float)
    p.add_argument("--max-depth", type=float, help="only pixels with gt < this (e.g. 0.5 for the '< 0.5 m' subset)")
    p.add_argument("--name", default=None, help="row label in the table (default: PRED_DIR's name)")
    p.add_argument("--target", choices=["depth", "disparity"], default="depth",
                   help="depth (metres, default) or disparity: the predicted depth converted to the pixels of the "
                        "ground truth's disparity.npy (import-dataset ddff12 / hci4d), as those benchmarks score")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data.io import OutputError, atomic_write_file, check_output_path, claim_output_dir, read_marker

    out = Path(args.out or args.pred_dir)
    names = ("metrics.json", "metrics.md")
    accept = ("eval", "predictions", "prediction")
    if args.out:  # a new, empty or earlier eval folder (or focalstack's predictions)
        inputs = [args.gt_dataset, args.pred_dir]
        claim_output_dir(out, "eval", inputs, accept=accept, create=False)
    else:  # beside the predictions, which another tool may have written: never over a file it did not write
        inputs = [args.gt_dataset]
        check_output_path(out, inputs)
        theirs = [out / n for n in names if read_marker(out) not in accept and (out / n).exists()]
        if theirs:
            raise OutputError(f"{theirs[0]}: exists and focalstack did not write it; not replacing it "
                              "(give --out NEW_FOLDER)")
    res = evaluate(args.pred_dir, args.gt_dataset, args.align, args.min_depth, args.max_depth, target=args.target)
    if args.out:
        claim_output_dir(out, "eval", inputs, accept=accept)
    label = args.name or Path(args.pred_dir).resolve().name
    main = DISPARITY_KEYS if args.target == "disparity" else MAIN_KEYS
    keys = [k for k in main if k in res.mean] + [k for k in res.mean if k.startswith("aif_")]
    table = format_table({label: res.mean}, keys)
    payload = {"n_samples": res.n_samples, "target": args.target, "align": args.align, "min_depth": args.min_depth,
               "max_depth": args.max_depth, "mean": res.mean, "per_sample": res.per_sample}
    atomic_write_file(out / "metrics.json", json.dumps(payload, indent=2) + "\n")
    what = ", target=disparity (px)" if args.target == "disparity" else ""
    atomic_write_file(out / "metrics.md", f"{res.n_samples} samples, align={args.align}{what}\n\n{table}\n")
    print(table)
    print(f"wrote {out / 'metrics.json'} and {out / 'metrics.md'}")
    return 0
