"""``focalstack predict INPUT --method dff|dfd|optimize|net -o OUT_DIR``: depth + AIF for one sample
folder (outputs straight into OUT_DIR) or a dataset folder (OUT_DIR/<sample name>/)."""

from __future__ import annotations

import time
from pathlib import Path

from . import UserError


def register(sub) -> None:
    p = sub.add_parser("predict", help="predict depth + all-in-focus for a sample or a dataset folder",
                       description="Writes depth.npy (metres), depth.png (uint16 mm), depth_color.png, aif.png, "
                                   "recon_error.json/.png and meta.json per sample (atomically); aif.tif (16-bit "
                                   "linear) for linear (RAW) samples; points.ply with --export ply.")
    p.add_argument("input", help="a sample folder (holding camera.json) or a folder of sample folders")
    p.add_argument("-o", "--out", required=True,
                   help="output folder: new, empty, or one focalstack predict wrote before (never the input "
                        "or a folder holding other files)")
    p.add_argument("--no-strict", dest="strict", action="store_false",
                   help="skip (with a warning) dataset sub-folders that hold frames but no camera.json "
                        "instead of stopping")
    p.add_argument("--export", action="append", default=[], choices=["ply"],
                   help="extra output: ply = points.ply, a coloured point cloud (binary PLY, metres, camera frame "
                        "x right / y down / z forward) from the metric depth, the AIF and the camera's focal length "
                        "and pixel size; refused for stacks of unknown focus (relative depth has no metric scale)")
    p.add_argument("--method", default=None,
                   help="dff | dfd | optimize | net (default: net when --checkpoint or --refine is given, else dff); "
                        "dfd: camera-aware depth from defocus (relative blur over depth hypotheses)")
    g = p.add_argument_group("classical (dff, optimize init)")
    g.add_argument("--measure", default="lapm", help="focus measure (see focalstack.classical.FOCUS_MEASURES)")
    g.add_argument("--window", type=int, default=9, help="focus-measure window, odd px (default 9)")
    g.add_argument("--no-guided-filter", action="store_true",
                   help="skip the guided-filter smoothing of the DFF depth (not to be confused with --refine)")
    g.add_argument("--iters-scale", type=float, default=1.0, help="optimize: × the default iteration counts")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    n = p.add_argument_group("net (trained model)")
    n.add_argument("--checkpoint", default=None,
                   help="run folder, .safetensors, or shipped[:general|procedural] (--method net without it: the "
                        "shipped general model)")
    n.add_argument("--refine", dest="refine_steps", type=int, default=0, metavar="STEPS",
                   help="test-time optimisation steps after the network")
    n.add_argument("--tile", type=int, default=None, help="tile size for large images")
    n.add_argument("--scale", type=float, default=None, help="resize factor before the network")
    n.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from ..data.format import is_sample_dir, list_samples, load_camera, load_sample
    from ..data.io import check_replaceable, claim_output_dir
    from ..inference import PredictOptions, get_method, write_prediction
    from ..inference.writer import check_export

    if args.method is None:  # a checkpoint or refinement steps imply the network
        args.method = "net" if args.checkpoint or args.refine_steps else "dff"
    if args.method != "net" and (args.checkpoint or args.refine_steps):
        raise UserError(f"--checkpoint and --refine belong to --method net, not --method {args.method}")
    from ..checkpoint import shipped_path
    try:
        shipped = shipped_path(args.checkpoint) is not None
    except KeyError as e:
        raise UserError(str(e.args[0])) from None
    if not shipped and args.checkpoint and not Path(args.checkpoint).exists():
        raise UserError(f"{args.checkpoint}: checkpoint not found")
    fn = get_method(args.method)
    if args.window < 1 or args.window % 2 == 0:
        raise UserError(f"--window must be a positive odd integer, got {args.window}")
    if args.iters_scale <= 0:
        raise UserError(f"--iters-scale must be positive, got {args.iters_scale}")
    inp = Path(args.input)
    samples = list_samples(inp, strict=args.strict)
    single = is_sample_dir(inp)
    out_root = Path(args.out)
    inputs = [inp] + ([args.checkpoint] if args.checkpoint and not shipped else [])
    # every refusal (the input, a user's folder, a file, an export the data cannot give) comes before any work
    export = tuple(dict.fromkeys(args.export))
    if export:
        for sd in samples:
            check_export(export, load_camera(sd), sd.name)
    if single:
        check_replaceable(out_root, "prediction", inputs)
    else:
        claim_output_dir(out_root, "predictions", inputs, create=False)
        for sd in samples:
            check_replaceable(out_root / sd.name, "prediction", inputs)
    bar = tqdm(samples, desc=f"predict ({args.method})", unit="sample", disable=True if len(samples) < 2 else None)
    for sd in bar:
        sample = load_sample(sd, load_depth=False, load_aif=False, min_frames=2)
        opts = PredictOptions(measure=args.measure, window=args.window, refine=None if args.no_guided_filter else "guided",
                              iters_scale=args.iters_scale, threads=args.threads,
                              checkpoint=args.checkpoint, refine_steps=args.refine_steps,
                              tile=args.tile, scale=args.scale, device=args.device, progress=len(samples) == 1)
        t0 = time.perf_counter()
        pred = fn(sample, opts)
        seconds = time.perf_counter() - t0
        if single:
            out = out_root
        else:
            out = claim_output_dir(out_root, "predictions", inputs) / sample.name
        write_prediction(out, sample, pred, meta={"method": args.method, "seconds": seconds,
                                                  "input": str(sd)}, inputs=inputs, export=export)
        line = f"{sample.name}: {pred.depth_kind} depth, {seconds:.1f} s → {out}"
        if "recon_before" in pred.extras:
            line += (f" (recon loss {pred.extras['recon_before']['loss']:.4f} → "
                     f"{pred.extras['recon_after']['loss']:.4f})")
        bar.write(line) if len(samples) > 1 else print(line)
    return 0
