"""``focalstack synth``: write a dataset of synthetic focal stacks (procedural or from RGB-D).

Examples::

    focalstack synth data/proc --num 200 --size 256 256 --split 0.1
    focalstack synth data/dslr --source dslr_indoor --resize 0.5 --occlusion-aware
    focalstack synth data/mine --source folder --input rgbd/ --depth-scale 0.001 --preset nyuv2_dered

OUT_DIR receives one sample folder per scene (each written atomically), or OUT_DIR/train and
OUT_DIR/val with ``--split``. Re-running the same command resumes: complete samples are skipped.
The settings are recorded in OUT_DIR/synth.json; a resumed run with different settings is refused
(use ``--overwrite`` to re-render every sample instead). ``--num`` may change between runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import UserError

SOURCE_CHOICES = ["procedural", "dslr_indoor", "middlebury", "nyuv2", "folder"]
SETTINGS_FILE = "synth.json"


def register(sub) -> None:
    p = sub.add_parser("synth", help="synthesise a focal-stack dataset (procedural scenes or RGB-D → stacks)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", metavar="OUT_DIR", help="dataset folder to write (created; resumed if it exists)")
    p.add_argument("--source", choices=SOURCE_CHOICES, default="procedural",
                   help="procedural scenes (default) or an RGB-D set rendered into focal stacks")
    p.add_argument("--input", help="RGB-D folder (default for dslr_indoor/middlebury/nyuv2: the copy under "
                                   "../shared/data or $FOCALSTACK_DATA; required for folder)")
    p.add_argument("--num", type=int, help="number of samples (procedural default 100; RGB-D default all)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="procedural image size (default 256 256)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--camera", help="camera.json (or a sample folder holding one), used as given: its pixel "
                                    "size must match the output resolution")
    g.add_argument("--camera-distribution", metavar="NAME",
                   help="a new random camera per stack from a named distribution (focalstack.optics.distribution; "
                        "'general': phones to DSLRs, 2-10 frames), for pretraining a camera-general model")
    g.add_argument("--preset", help="named camera, used as given (default: the source's own camera, resized "
                                    "with --resize; see `focalstack info`)")
    fg = p.add_mutually_exclusive_group()
    fg.add_argument("--focus", type=float, nargs="+", metavar="M", help="override the focus distances (metres)")
    fg.add_argument("--focus-setup", choices=["F1", "F2", "F6", "F10"],
                    help="Gur & Wolf's training focus sequence: the first 1/2/6/10 of [0.2, 0.8, 0.1, 0.9, 0.3, "
                         "0.7, 0.4, 0.6, 0.5, 0.35] × the camera's far depth (its depth_range_m, else derived)")
    p.add_argument("--f-number", type=float, help="override the f-number (all frames)")
    p.add_argument("--resize", type=float, default=1.0,
                   help="RGB-D sources: resize images by this factor (pixel size scales by 1/factor)")
    p.add_argument("--seed", type=int, default=0, help="random seed (scenes, noise, split); default 0")
    p.add_argument("--noise", type=float, default=0.01, help="Gaussian sensor noise std in [0,1] units (0 = none)")
    p.add_argument("--bits", type=int, choices=[0, 8, 16], default=8,
                   help="quantise frames/AIF to this many bits (0 = no rounding; files are 8-bit unless 16)")
    p.add_argument("--occlusion-aware", action="store_true", help="layered near-over-far rendering")
    p.add_argument("--layers", type=int, default=16, help="depth layers of --occlusion-aware (default 16)")
    p.add_argument("--psf", choices=["gaussian", "disk"], default="gaussian")
    p.add_argument("--split", type=float, metavar="VAL_FRACTION",
                   help="write OUT_DIR/train and OUT_DIR/val, this fraction in val (deterministic by --seed)")
    p.add_argument("--depth-scale", type=float, help="folder source: metres per unit of PNG depth (npy: multiplier)")
    p.add_argument("--overwrite", action="store_true", help="re-render samples that already exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# ---- helpers -------------------------------------------------------------------------------------
def _camera(args, default):
    from dataclasses import replace

    from ..optics import get_preset
    from .info import load_camera_arg

    if args.camera:
        cam = load_camera_arg(args.camera, None)
    elif args.preset:
        cam = get_preset(args.preset)
    else:
        cam = default
    focus = args.focus
    if getattr(args, "focus_setup", None):
        from ..models.gurwolf import focus_sequence
        focus = focus_sequence(args.focus_setup, cam.effective_depth_range_m()[1])
        if cam.depth_range_m is None:  # keep the range the sequence was derived from
            cam = replace(cam, depth_range_m=cam.effective_depth_range_m())
    if focus:
        keep = cam.f_numbers is not None and len(cam.f_numbers) == len(focus)
        cam = replace(cam, focus_distances_m=tuple(focus), f_numbers=cam.f_numbers if keep else None)
    if args.f_number:
        cam = replace(cam, lens=cam.lens.with_f_number(args.f_number), f_numbers=None)
    return cam


def split_of(n: int, val_fraction: float | None, seed: int) -> list[str]:
    """"train"/"val" per item index, deterministic in (n, fraction, seed); None → all ""."""
    if val_fraction is None:
        return [""] * n
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"--split must be in [0, 1), got {val_fraction}")
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n_val == 0 and n > 1:
        n_val = 1
    order = np.random.default_rng([seed, 0x5B117]).permutation(n)
    val = set(order[:n_val].tolist())
    return ["val" if i in val else "train" for i in range(n)]


def _is_complete(sample_dir: Path, num_frames: int | None) -> bool:
    """A finished sample: its frames (``num_frames``, default: as many as its camera.json lists) and depth.npy."""
    from ..data.format import frame_paths, is_sample_dir, load_camera

    if not is_sample_dir(sample_dir):
        return False
    try:
        if num_frames is None:
            num_frames = load_camera(sample_dir).num_frames
        return len(frame_paths(sample_dir)) == num_frames and (sample_dir / "depth.npy").is_file()
    except Exception:
        return False


def _check_settings(out: Path, settings: dict, overwrite: bool, inputs=()) -> None:
    from ..data.io import atomic_write_file, claim_output_dir

    claim_output_dir(out, "dataset", inputs, create=False)  # never into a folder focalstack did not write
    path = out / SETTINGS_FILE
    if path.is_file() and not overwrite:
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{path}: unreadable settings of an earlier run; use --overwrite or a new OUT_DIR") from None
        diff = sorted(k for k in set(old) | set(settings) if k != "num" and old.get(k) != settings.get(k))
        if diff:
            raise UserError(f"{out}: was written with different settings ({', '.join(diff)}); "
                            "use the same options, a new OUT_DIR, or --overwrite")
    claim_output_dir(out, "dataset", inputs)
    atomic_write_file(path, json.dumps(settings, indent=2) + "\n")


def _warn_slow(camera, depth, psf: str) -> None:
    """One note when the plain renderer's window gets large (its cost grows with k²)."""
    import sys

    from ..data.synthesis import auto_kernel_size, fill_invalid_depth

    d = fill_invalid_depth(depth)
    k = auto_kernel_size(camera.sigma_px(d.view(1, 1, *d.shape)), psf)
    if k > 25:
        print(f"note: blur up to σ ≈ {k // 6} px ({k}×{k} render window) makes plain rendering slow; "
              "--occlusion-aware (separable) or --resize < 1 is much faster", file=sys.stderr)


def _scene_depth_range(depth) -> tuple[float, float]:
    """(near, far) metres around an RGB-D depth map's valid depths (1st / 99th percentile, 10 % margin)."""
    import torch
    v = depth[torch.isfinite(depth) & (depth > 0)]
    if v.numel() == 0:
        raise UserError("a depth map has no valid depth (finite, > 0): cannot choose a camera for it")
    q = torch.quantile(v.double()[:: max(1, v.numel() // 100000)], torch.tensor([0.01, 0.99], dtype=torch.float64))
    return 0.9 * float(q[0]), 1.1 * float(q[1])


# ---- the command ---------------------------------------------------------------------------------
def run(args) -> int:
    from tqdm import tqdm

    from ..data.format import save_sample
    from ..data.procedural import make_procedural_sample
    from ..data.synthesis import make_sample, resize_rgbd
    from ..optics import get_preset

    if args.noise < 0:
        raise UserError(f"--noise must be ≥ 0, got {args.noise}")
    if args.num is not None and args.num < 1:
        raise UserError(f"--num must be ≥ 1, got {args.num}")
    if args.layers < 1:
        raise UserError(f"--layers must be ≥ 1, got {args.layers}")
    if not (args.resize > 0):
        raise UserError(f"--resize must be positive, got {args.resize}")
    out = Path(args.out_dir)

    procedural = args.source == "procedural"
    if procedural:
        for opt, val in (("--input", args.input), ("--depth-scale", args.depth_scale)):
            if val is not None:
                raise UserError(f"{opt} does not apply to --source procedural")
        if args.resize != 1.0:
            raise UserError("--resize applies to RGB-D sources; use --size for procedural scenes")
        size = tuple(args.size or (256, 256))
        if min(size) < 8:
            raise UserError(f"--size must be at least 8 8, got {size[0]} {size[1]}")
        camera = None if args.camera_distribution else _camera(args, get_preset("procedural"))
        num = args.num or 100
        names = [f"procedural_{args.seed:04d}_{i:06d}" for i in range(num)]
        source = None
    else:
        if args.size is not None:
            raise UserError("--size applies to --source procedural; use --resize for RGB-D sources")
        from ..data.rgbd import get_source
        if args.input is not None and not Path(args.input).exists():
            raise UserError(f"{args.input}: no such folder (--input for --source {args.source})")
        source = get_source(args.source, args.input, depth_scale=args.depth_scale)
        base = source.default_camera.resized(args.resize) if args.resize != 1.0 else source.default_camera
        camera = None if args.camera_distribution else _camera(args, base)
        num = min(args.num or len(source), len(source))
        names = [r.name for r in source.records[:num]]
        size = None

    dist = None
    if args.camera_distribution:
        from ..optics.distribution import get_camera_distribution
        try:
            dist = get_camera_distribution(args.camera_distribution)
        except KeyError as e:
            raise UserError(str(e.args[0])) from None
        for opt, val in (("--focus", args.focus), ("--focus-setup", args.focus_setup), ("--f-number", args.f_number)):
            if val is not None:
                raise UserError(f"{opt} does not apply with --camera-distribution (every stack draws its own camera)")
    settings = {"source": args.source, "input": None if procedural else str(source.root.resolve()),
                "num": num, "size": list(size) if size else None,
                "camera": camera.to_dict() if camera is not None else {"distribution": dist.to_dict()},
                "seed": args.seed,
                "noise": args.noise, "bits": args.bits, "occlusion_aware": args.occlusion_aware,
                "layers": args.layers if args.occlusion_aware else None, "psf": args.psf, "split": args.split,
                "resize": args.resize, "depth_scale": args.depth_scale}
    splits = split_of(num, args.split, args.seed)
    inputs = [args.camera] + ([] if procedural else [source.root])
    _check_settings(out, settings, args.overwrite, inputs)
    if args.split is not None:
        from ..data.io import claim_output_dir
        for sp in sorted(set(splits)):
            claim_output_dir(out / sp, "dataset", inputs)

    def camera_of(i: int, depth=None, width_px: int = 0):
        """The stack's camera: the fixed one, or the distribution's draw for (seed, i) (deterministic)."""
        if dist is None:
            return camera
        if procedural:
            return dist.sample([args.seed, i, 2], size[1])
        return dist.sample([args.seed, i, 2], width_px, depth_range_m=_scene_depth_range(depth))

    todo, skipped = [], []
    for i, (name, sp) in enumerate(zip(names, splits)):
        d = out / sp / name if sp else out / name
        if not args.overwrite and _is_complete(d, None if dist is not None else camera.num_frames):
            skipped.append(name)
        else:
            todo.append((i, name, d))
    if skipped:
        shown = ", ".join(skipped[:5]) + (f", … (+{len(skipped) - 5})" if len(skipped) > 5 else "")
        print(f"skipping {len(skipped)} complete sample(s) already in {out}: {shown}")
    bits = args.bits or None
    warned = False
    for i, name, d in tqdm(todo, desc=f"synth {args.source}", unit="sample", disable=args.quiet or not todo):
        if procedural:
            cam_i = camera_of(i)
            sample = make_procedural_sample([args.seed, i], cam_i, size, noise_std=args.noise, quantize_bits=bits,
                                            occlusion_aware=args.occlusion_aware, name=name, psf=args.psf,
                                            num_layers=args.layers)
        else:
            _, aif, depth = source.load(source.records[i])
            if args.resize != 1.0:
                aif, depth = resize_rgbd(aif, depth, args.resize)
            cam_i = camera_of(i, depth, aif.shape[-1])
            if not warned and not args.occlusion_aware:
                warned = True
                _warn_slow(cam_i, depth, args.psf)
            sample = make_sample(aif, depth, cam_i, name, occlusion_aware=args.occlusion_aware,
                                 noise_std=args.noise, quantize_bits=bits, seed=[args.seed, i, 1],
                                 psf=args.psf, num_layers=args.layers, source=str(source.records[i].rgb))
        save_sample(sample, d, bit_depth=16 if args.bits == 16 else 8, inputs=inputs)
    counts = ""
    if args.split is not None:
        counts = f" (train {splits.count('train')}, val {splits.count('val')})"
    if camera is None:
        desc = f"a camera per stack from the distribution {dist.name!r}"
    else:
        desc = (f"camera {camera.num_frames} frames, focus {', '.join(f'{x:g}' for x in camera.focus_distances_m)} m, "
                f"f/{camera.lens.f_number:g}")
    print(f"{out}: {num} sample(s){counts}: wrote {len(todo)}, skipped {len(skipped)}; {desc}")
    return 0
