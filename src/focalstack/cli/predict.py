"""``focalstack predict INPUT --method dff|dfd|optimize|net -o OUT_DIR``: depth + AIF for one sample
folder (outputs straight into OUT_DIR) or a dataset folder (OUT_DIR/<sample name>/).

The method options are generated (:mod:`focalstack.cli.options`) from the fields of the methods'
options dataclasses (:mod:`focalstack.inference.options`), whose metadata holds each flag and its help;
the chosen method receives its own dataclass.
"""

from __future__ import annotations

import time
from pathlib import Path

from . import UserError
from .options import Options, fill_when_used


def _options() -> dict[str, Options]:
    """help group → the generated options in it: the classical ones dff and optimize share, optimize's
    own, net's."""
    from ..inference.options import ClassicalOptions, NetOptions, OptimizeOptions
    return {"classical (dff, optimize init)": Options(ClassicalOptions),
            "optimize": Options(OptimizeOptions, inherited=False),
            "net (trained model)": Options(NetOptions)}


def register(sub) -> None:
    p = sub.add_parser("predict", help="predict depth + all-in-focus for a sample or a dataset folder",
                       description="Writes depth.npy (metres), depth.png (uint16 mm), depth_color.png, aif.png, "
                                   "recon_error.json/.png and meta.json per sample (atomically); aif.tif (16-bit "
                                   "linear) for linear (RAW) samples; points.ply with --export ply. Photo-sized stacks "
                                   "(pixels x frames above 4e7, e.g. 5 frames of 8 MP) are streamed in memory O(H x W): "
                                   "DFF and the AIF at full resolution, dfd/optimize/net on a working-size copy (long "
                                   "side <= 1024 px, pixels x frames <= 8e6) whose depth is guided-upsampled "
                                   "(focalstack.inference.large).")
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
    p.set_defaults(func=run)
    fill_when_used(p, _add_options)   # generated on first use: the options classes import the inference package


def _add_options(p) -> None:
    for title, options in _options().items():
        options.add_to(p.add_argument_group(title))


def method_options(method: str, args, **fixed):
    """The options dataclass of ``method`` with what the command line gave and ``fixed`` (the rest:
    its defaults)."""
    from ..inference import METHOD_OPTIONS
    cls = METHOD_OPTIONS[method]
    return cls(**Options(cls).given(args), **fixed)


def run(args) -> int:
    from tqdm import tqdm

    from ..data.format import is_sample_dir, list_samples, load_camera, load_sample, open_sample_files
    from ..data.io import check_replaceable, claim_output_dir
    from ..inference import get_method, write_prediction
    from ..inference.large import is_photo_sized, predict_large
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
    if args.window is not None and (args.window < 1 or args.window % 2 == 0):
        raise UserError(f"--window must be a positive odd integer, got {args.window}")
    if args.iters_scale is not None and args.iters_scale <= 0:
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
    opts = method_options(args.method, args, progress=len(samples) == 1)
    bar = tqdm(samples, desc=f"predict ({args.method})", unit="sample", disable=True if len(samples) < 2 else None)
    for sd in bar:
        t0 = time.perf_counter()
        files = open_sample_files(sd, min_frames=2)   # checked, not decoded
        if is_photo_sized(files.num_frames, files.size_hw):   # streamed: the frames are never held
            sample = files
            pred = predict_large(sample, args.method, opts, progress=len(samples) == 1)
        else:
            sample = load_sample(sd, load_depth=False, load_aif=False, min_frames=2)
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
