"""``focalstack import-dataset NAME PATH -o OUT``: a standard benchmark, as downloaded, → the
sample format (``focalstack.data.benchmarks``: one reader per dataset, each documenting its files,
camera and evaluation protocols).

    focalstack import-dataset nyuv2 nyu_depth_v2_labeled.mat -o data/nyu --splits splits.mat
    focalstack import-dataset ddff12 ddff-dataset-trainval.h5 -o data/ddff
    focalstack import-dataset fod500 fs_6/ -o data/fod500
    focalstack import-dataset mobiledepth depth_from_focus_data/ -o data/mobile
    focalstack import-dataset hci4d full_data/ -o data/hci

OUT receives one sample folder per stack (``OUT/<split>/<name>`` where the dataset has splits),
each written atomically; OUT must be new, empty, or an earlier import of the same dataset with the
same settings (recorded in OUT/import_dataset.json), which is then resumed: finished samples are
skipped unless ``--overwrite``.
"""

from __future__ import annotations

from pathlib import Path

from . import UserError

SETTINGS_FILE = "import_dataset.json"
# command-line option → reader option name (each reader lists those it takes in its OPTIONS)
_OPTIONS = {"--splits": "splits", "--recipe": "recipe", "--seed": "seed", "--unit-scale": "unit_scale",
            "--align": "align", "--disparities": "disparities", "--frames": "frames"}


def register(sub) -> None:
    from ..data.benchmarks import BENCHMARKS

    p = sub.add_parser("import-dataset", help="import a standard benchmark (NYUv2, DDFF-12, FoD500, Mobile Depth, "
                                              "HCI 4D) as downloaded into the sample format",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("name", metavar="NAME", choices=list(BENCHMARKS), help=" | ".join(BENCHMARKS))
    p.add_argument("path", metavar="PATH",
                   help="the downloaded file or folder (nyuv2: the labelled .mat; ddff12: an .h5; fod500: fs_6/; "
                        "mobiledepth, hci4d: a scene or the root)")
    p.add_argument("-o", "--out", required=True, help="dataset folder to write (new, empty, or an earlier import)")
    p.add_argument("--limit", type=int, help="at most this many samples per split (a quick look)")
    g = p.add_argument_group("nyuv2")
    g.add_argument("--splits", metavar="SPLITS_MAT", help="the official splits.mat (trainNdxs / testNdxs, 1-based): "
                                                          "OUT/train (795) and OUT/test (654); default every image")
    g.add_argument("--recipe", help="how stacks are rendered: dered (default: the core paper's camera and "
                                    "protocol), dered_even, native, or a camera preset name")
    g.add_argument("--seed", type=int, help="noise seed of recipes with sensor noise (default 0)")
    g = p.add_argument_group("mobiledepth")
    g.add_argument("--unit-scale", type=float, help="metres per calibrated.txt unit (default 1/39.37, DFV/DEReD)")
    g.add_argument("--align", action="store_true", default=None,
                   help="re-align the authors' aligned aNN.jpg with ECC too (unaligned scenes always are)")
    g = p.add_argument_group("hci4d")
    g.add_argument("--disparities", type=float, nargs=2, metavar=("FIRST", "LAST"),
                   help="refocus disparities in px, evenly spaced (default 2.5 -2.5, AiFDepthNet's range)")
    g.add_argument("--frames", type=int, help="frames per stack (default 10)")
    p.add_argument("--overwrite", action="store_true", help="re-import samples that already exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from ..data.benchmarks import get_reader, save_loaded
    from ..data.io import claim_dataset_dir, claim_output_dir, read_marker

    reader = get_reader(args.name)
    src = Path(args.path)
    if not src.exists():
        raise UserError(f"{src}: no such file or folder ({args.name} data)")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be ≥ 1, got {args.limit}")
    opts = {}
    for flag, key in _OPTIONS.items():
        val = getattr(args, key)
        if val is None:
            continue
        if key not in reader.OPTIONS:
            raise UserError(f"{flag} does not apply to {args.name}")
        opts[key] = val
    if "splits" in opts:
        opts["splits"] = str(Path(opts["splits"]).resolve())
    out = Path(args.out)
    inputs = [src] + ([opts["splits"]] if "splits" in opts else [])
    claim_output_dir(out, "dataset", inputs, create=False)   # refuse before reading anything
    items = reader.items(src, limit=args.limit, **opts)
    if not items:
        raise UserError(f"{src}: no samples found for {args.name}")
    settings = {"dataset": args.name, "source": str(src.resolve()), "options": opts, "limit": args.limit,
                **reader.settings(**opts)}
    claim_dataset_dir(out, SETTINGS_FILE, settings, args.overwrite, inputs, may_differ=("limit",))
    for split in sorted({it.split for it in items if it.split}):
        for i, part in enumerate(Path(split).parts):   # nested splits (hci4d categories) are datasets too
            claim_output_dir(out.joinpath(*Path(split).parts[:i + 1]), "dataset", inputs)
    todo, skipped = [], []
    for it in items:
        d = it.out_dir(out)
        if not args.overwrite and d.is_dir() and read_marker(d) == "sample":
            skipped.append(it)
        else:
            todo.append(it)
    if skipped:
        print(f"skipping {len(skipped)} sample(s) already imported in {out}")
    for it in tqdm(todo, desc=f"import {args.name}", unit="sample", disable=args.quiet or not todo):
        save_loaded(it.load(), it.out_dir(out), inputs)
    counts: dict[str, int] = {}
    for it in items:
        counts[it.split or "."] = counts.get(it.split or ".", 0) + 1
    per = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) if len(counts) > 1 or "." not in counts else ""
    print(f"{out}: {len(items)} sample(s){f' ({per})' if per else ''}: wrote {len(todo)}, skipped {len(skipped)}")
    return 0
