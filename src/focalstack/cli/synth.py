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

from ..data.synth_dataset import SOURCES, SynthConfig, split_of  # noqa: F401  (split_of: the split rule, re-exported)
from ..render.psf import PSFS

SOURCE_CHOICES = list(SOURCES)


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
    p.add_argument("--psf", choices=PSFS, default="gaussian")
    p.add_argument("--encoding", choices=["srgb", "linear"], default="srgb",
                   help="how the written frames encode light: srgb (default) or linear (16-bit linear light, "
                        "camera.json \"encoding\": \"linear\", like frames imported from RAW)")
    p.add_argument("--split", type=float, metavar="VAL_FRACTION",
                   help="write OUT_DIR/train and OUT_DIR/val, this fraction in val (deterministic by --seed)")
    p.add_argument("--split-seed", type=int, metavar="SEED",
                   help="seed of the split only (default: --seed): the same train/val scenes rendered again "
                        "under other camera draws and noise (--seed)")
    p.add_argument("--depth-scale", type=float, help="folder source: metres per unit of PNG depth (npy: multiplier)")
    p.add_argument("--overwrite", action="store_true", help="re-render samples that already exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def config_from_args(args) -> SynthConfig:
    """The parsed options as the library's :class:`~focalstack.data.SynthConfig`."""
    return SynthConfig(out_dir=args.out_dir, source=args.source, input=args.input, num=args.num, size=args.size,
                       camera=args.camera, camera_distribution=args.camera_distribution, preset=args.preset,
                       focus=args.focus, focus_setup=args.focus_setup, f_number=args.f_number, resize=args.resize,
                       seed=args.seed, noise=args.noise, bits=args.bits, occlusion_aware=args.occlusion_aware,
                       layers=args.layers, psf=args.psf, encoding=args.encoding, split=args.split, split_seed=args.split_seed,
                       depth_scale=args.depth_scale,
                       overwrite=args.overwrite, progress=not args.quiet)


def run(args) -> int:
    from ..data import synthesize_dataset
    print(synthesize_dataset(config_from_args(args), log=print).summary())
    return 0
