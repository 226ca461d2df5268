"""Writing a dataset of synthetic focal stacks: :func:`synthesize_dataset` (what ``focalstack synth``,
``focalstack demo`` and the benchmarks run) with its settings in :class:`SynthConfig`.

Sources: ``procedural`` scenes (:mod:`focalstack.data.procedural`) or an RGB-D set
(:mod:`focalstack.data.rgbd`: ``dslr_indoor``, ``middlebury``, ``nyuv2``, ``folder``) rendered
into focal stacks (:mod:`focalstack.data.synthesis`). The camera is the source's own, a preset,
a camera.json, or a new draw per stack from a camera distribution
(:mod:`focalstack.optics.distribution`).

``out_dir`` receives one sample folder per scene (each written atomically), or ``out_dir/train``
and ``out_dir/val`` with ``split``. Running again resumes: complete samples are skipped. The
settings are recorded in ``out_dir/synth.json``; a resumed run with different settings is refused
(``overwrite`` re-renders every sample instead). ``num`` may change between runs. Errors the
caller can fix are ValueError / FileNotFoundError / KeyError with a one-line message.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..optics import FocalStackCamera, get_preset

__all__ = ["SynthConfig", "SynthResult", "synthesize_dataset", "split_of", "SOURCES", "SETTINGS_FILE"]

SOURCES = ("procedural", "dslr_indoor", "middlebury", "nyuv2", "folder")
FOCUS_SETUPS = ("F1", "F2", "F6", "F10")
SETTINGS_FILE = "synth.json"


@dataclass
class SynthConfig:
    """The settings of one synthetic dataset (module doc); defaults are ``focalstack synth``'s."""

    out_dir: str | Path
    source: str = "procedural"                      # one of SOURCES
    input: str | Path | None = None                 # RGB-D folder (default: the source's shared copy)
    num: int | None = None                          # samples (procedural: 100; RGB-D: all)
    size: tuple[int, int] | None = None             # procedural (H, W), default (256, 256)
    camera: str | Path | FocalStackCamera | None = None   # camera.json / sample folder (or a camera), as given
    camera_distribution: str | None = None          # a new random camera per stack from this distribution
    preset: str | None = None                       # named camera, as given
    focus: Sequence[float] | None = None            # override the focus distances (metres)
    focus_setup: str | None = None                  # Gur & Wolf's F1/F2/F6/F10 focus sequence
    f_number: float | None = None                   # override the f-number (all frames)
    resize: float = 1.0                             # RGB-D sources: image resize factor
    seed: int = 0
    noise: float = 0.01                             # Gaussian sensor noise std in [0,1] units
    bits: int = 8                                   # 0 (no rounding), 8 or 16
    occlusion_aware: bool = False                   # layered near-over-far rendering
    layers: int = 16                                # depth layers of occlusion_aware
    psf: str = "gaussian"                           # or "disk", "gaussian_matched" (render.psf.PSFS)
    encoding: str = "srgb"                          # files: "srgb" (8/16-bit) or "linear" (16-bit linear light)
    split: float | None = None                      # fraction written to out_dir/val (rest: out_dir/train)
    # the split's own seed (default: seed), so the same train/val scenes can be rendered again under
    # other camera draws and noise (seed) without a validation scene entering a training set
    split_seed: int | None = None
    depth_scale: float | None = None                # folder source: metres per unit of PNG depth
    overwrite: bool = False                         # re-render samples that already exist
    progress: bool = True                           # a progress bar
    # procedural only: one stack per scene seed, named procedural_{seed:07d}, instead of the scenes
    # (seed, i) for i < num (the demo's held-out scenes)
    scene_seeds: Sequence[int] | None = field(default=None)

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        given = [n for n in ("camera", "camera_distribution", "preset") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)} exclude each other")
        if self.focus is not None and self.focus_setup is not None:
            raise ValueError("focus and focus_setup exclude each other")
        if self.focus_setup is not None and self.focus_setup not in FOCUS_SETUPS:
            raise ValueError(f"focus_setup must be one of {', '.join(FOCUS_SETUPS)}, got {self.focus_setup!r}")
        if self.bits not in (0, 8, 16):
            raise ValueError(f"bits must be 0, 8 or 16, got {self.bits}")
        from ..optics.camera import ENCODINGS
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        from ..render.psf import PSFS
        if self.psf not in PSFS:
            raise ValueError(f"psf must be one of {', '.join(PSFS)}, got {self.psf!r}")
        if self.noise < 0:
            raise ValueError(f"--noise must be ≥ 0, got {self.noise}")
        if self.num is not None and self.num < 1:
            raise ValueError(f"--num must be ≥ 1, got {self.num}")
        if self.layers < 1:
            raise ValueError(f"--layers must be ≥ 1, got {self.layers}")
        if not (self.resize > 0):
            raise ValueError(f"--resize must be positive, got {self.resize}")
        if self.scene_seeds is not None and self.source != "procedural":
            raise ValueError("scene_seeds applies to the procedural source")


@dataclass
class SynthResult:
    """What :func:`synthesize_dataset` did: the dataset size, the samples written and skipped, the
    split of every sample ("train"/"val", "" without a split), the fixed camera (None with a
    distribution)."""

    out_dir: Path
    num: int
    written: list[str]
    skipped: list[str]
    splits: list[str]
    camera: FocalStackCamera | None
    distribution: str | None

    def summary(self) -> str:
        counts = ""
        if any(self.splits):
            counts = f" (train {self.splits.count('train')}, val {self.splits.count('val')})"
        if self.camera is None:
            desc = f"a camera per stack from the distribution {self.distribution!r}"
        else:
            cam = self.camera
            desc = (f"camera {cam.num_frames} frames, focus {', '.join(f'{x:g}' for x in cam.focus_distances_m)} m, "
                    f"f/{cam.lens.f_number:g}")
        return (f"{self.out_dir}: {self.num} sample(s){counts}: wrote {len(self.written)}, "
                f"skipped {len(self.skipped)}; {desc}")


# ---- helpers -------------------------------------------------------------------------------------
def _camera(cfg: SynthConfig, default: FocalStackCamera) -> FocalStackCamera:
    """The fixed camera: camera.json / preset / the source's, with the focus and f-number overrides."""
    if isinstance(cfg.camera, FocalStackCamera):
        cam = cfg.camera
    elif cfg.camera is not None:
        path = Path(cfg.camera)
        cam = FocalStackCamera.load(path / "camera.json" if path.is_dir() else path)
    elif cfg.preset:
        cam = get_preset(cfg.preset)
    else:
        cam = default
    focus = cfg.focus
    if cfg.focus_setup:
        from ..models.gurwolf import focus_sequence
        focus = focus_sequence(cfg.focus_setup, cam.effective_depth_range_m()[1])
        if cam.depth_range_m is None:  # keep the range the sequence was derived from
            cam = replace(cam, depth_range_m=cam.effective_depth_range_m())
    if focus:
        keep = cam.f_numbers is not None and len(cam.f_numbers) == len(focus)
        cam = replace(cam, focus_distances_m=tuple(focus), f_numbers=cam.f_numbers if keep else None)
    if cfg.f_number:
        cam = replace(cam, lens=cam.lens.with_f_number(cfg.f_number), f_numbers=None)
    return cam


def split_of(n: int, val_fraction: float | None, seed: int) -> list[str]:
    """"train"/"val" per item index, deterministic in (n, fraction, seed); None → all ""."""
    if val_fraction is None:
        return [""] * n
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--split must be in [0, 1), got {val_fraction}")
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n_val == 0 and n > 1:
        n_val = 1
    order = np.random.default_rng([seed, 0x5B117]).permutation(n)
    val = set(order[:n_val].tolist())
    return ["val" if i in val else "train" for i in range(n)]


def _is_complete(sample_dir: Path, num_frames: int | None) -> bool:
    """A finished sample: its frames (``num_frames``, default: as many as its camera.json lists) and depth.npy."""
    from .format import frame_paths, is_sample_dir, load_camera

    if not is_sample_dir(sample_dir):
        return False
    try:
        if num_frames is None:
            num_frames = load_camera(sample_dir).num_frames
        return len(frame_paths(sample_dir)) == num_frames and (sample_dir / "depth.npy").is_file()
    except Exception:
        return False


def _warn_slow(camera, depth, psf: str) -> None:
    """One note when the plain renderer's window gets large (its cost grows with k²)."""
    from .synthesis import auto_kernel_size, fill_invalid_depth

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
        raise ValueError("a depth map has no valid depth (finite, > 0): cannot choose a camera for it")
    q = torch.quantile(v.double()[:: max(1, v.numel() // 100000)], torch.tensor([0.01, 0.99], dtype=torch.float64))
    return 0.9 * float(q[0]), 1.1 * float(q[1])


# ---- the dataset ---------------------------------------------------------------------------------
def synthesize_dataset(cfg: SynthConfig, log: Callable[[str], None] | None = None) -> SynthResult:
    """Write (or resume) the dataset ``cfg`` describes (module doc). ``log`` receives the one line
    naming the complete samples that are skipped (default: silent)."""
    from tqdm import tqdm

    from .format import save_sample
    from .io import claim_dataset_dir, claim_output_dir
    from .procedural import make_procedural_sample
    from .synthesis import make_sample, resize_rgbd

    out = Path(cfg.out_dir)
    procedural = cfg.source == "procedural"
    if procedural:
        for opt, val in (("--input", cfg.input), ("--depth-scale", cfg.depth_scale)):
            if val is not None:
                raise ValueError(f"{opt} does not apply to --source procedural")
        if cfg.resize != 1.0:
            raise ValueError("--resize applies to RGB-D sources; use --size for procedural scenes")
        size = tuple(cfg.size or (256, 256))
        if min(size) < 8:
            raise ValueError(f"--size must be at least 8 8, got {size[0]} {size[1]}")
        camera = None if cfg.camera_distribution else _camera(cfg, get_preset("procedural"))
        if cfg.scene_seeds is not None:
            scenes = [int(s) for s in cfg.scene_seeds]
            names = [f"procedural_{s:07d}" for s in scenes]
        else:
            scenes = [[cfg.seed, i] for i in range(cfg.num or 100)]
            names = [f"procedural_{cfg.seed:04d}_{i:06d}" for i in range(len(scenes))]
        num = len(names)
        source = None
    else:
        if cfg.size is not None:
            raise ValueError("--size applies to --source procedural; use --resize for RGB-D sources")
        from .rgbd import get_source
        if cfg.input is not None and not Path(cfg.input).exists():
            raise ValueError(f"{cfg.input}: no such folder (--input for --source {cfg.source})")
        source = get_source(cfg.source, cfg.input, depth_scale=cfg.depth_scale)
        base = source.default_camera.resized(cfg.resize) if cfg.resize != 1.0 else source.default_camera
        camera = None if cfg.camera_distribution else _camera(cfg, base)
        num = min(cfg.num or len(source), len(source))
        names = [r.name for r in source.records[:num]]
        size = None

    dist = None
    if cfg.camera_distribution:
        from ..optics.distribution import get_camera_distribution
        try:
            dist = get_camera_distribution(cfg.camera_distribution)
        except KeyError as e:
            raise ValueError(str(e.args[0])) from None
        for opt, val in (("--focus", cfg.focus), ("--focus-setup", cfg.focus_setup), ("--f-number", cfg.f_number)):
            if val is not None:
                raise ValueError(f"{opt} does not apply with --camera-distribution (every stack draws its own camera)")
    settings = {"source": cfg.source, "input": None if procedural else str(source.root.resolve()),
                "num": num, "size": list(size) if size else None,
                "camera": camera.to_dict() if camera is not None else {"distribution": dist.to_dict()},
                "seed": cfg.seed,
                "noise": cfg.noise, "bits": cfg.bits, "occlusion_aware": cfg.occlusion_aware,
                "layers": cfg.layers if cfg.occlusion_aware else None, "psf": cfg.psf, "split": cfg.split,
                "resize": cfg.resize, "depth_scale": cfg.depth_scale}
    if cfg.scene_seeds is not None:
        settings["scene_seeds"] = [int(s) for s in cfg.scene_seeds]
    if cfg.split_seed is not None and cfg.split_seed != cfg.seed:   # (absent = the seed)
        settings["split_seed"] = cfg.split_seed
    if cfg.encoding != "srgb":   # (absent = sRGB: datasets written before the option keep their settings)
        settings["encoding"] = cfg.encoding
    from ..render import light
    if light.PHYSICS_LIGHT != light.RECORDED_DEFAULT:   # frames blurred in another light are another dataset
        settings["physics_light"] = light.PHYSICS_LIGHT
    splits = split_of(num, cfg.split, cfg.seed if cfg.split_seed is None else cfg.split_seed)
    camera_input = None if isinstance(cfg.camera, FocalStackCamera) else cfg.camera
    inputs = [camera_input] + ([] if procedural else [source.root])
    # which scenes (num, scene_seeds) may change between runs; how they are rendered may not
    claim_dataset_dir(out, SETTINGS_FILE, settings, cfg.overwrite, inputs, may_differ=("num", "scene_seeds"))
    if cfg.split is not None:
        for sp in sorted(set(splits)):
            claim_output_dir(out / sp, "dataset", inputs)

    def camera_of(i: int, depth=None, width_px: int = 0):
        """(the stack's camera, the depth range its scene fills or None = the camera's): the fixed
        camera, or the distribution's draw for (seed, i) (deterministic). A procedural scene fills the
        range its camera was drawn for, narrower than the camera's stated range (optics.distribution
        step 6); an RGB-D scene brings its own depth."""
        if dist is None:
            return camera, None
        if procedural:
            return dist.sample_scene([cfg.seed, i, 2], size[1])
        return dist.sample([cfg.seed, i, 2], width_px, depth_range_m=_scene_depth_range(depth)), None

    todo, skipped = [], []
    for i, (name, sp) in enumerate(zip(names, splits)):
        d = out / sp / name if sp else out / name
        if not cfg.overwrite and _is_complete(d, None if dist is not None else camera.num_frames):
            skipped.append(name)
        else:
            todo.append((i, name, d))
    if skipped and log is not None:
        shown = ", ".join(skipped[:5]) + (f", … (+{len(skipped) - 5})" if len(skipped) > 5 else "")
        log(f"skipping {len(skipped)} complete sample(s) already in {out}: {shown}")
    bits = cfg.bits or None
    warned = False
    for i, name, d in tqdm(todo, desc=f"synth {cfg.source}", unit="sample", disable=not cfg.progress or not todo):
        if procedural:
            cam_i, scene_range = camera_of(i)
            sample = make_procedural_sample(scenes[i], cam_i, size, noise_std=cfg.noise, quantize_bits=bits,
                                            occlusion_aware=cfg.occlusion_aware, name=name, psf=cfg.psf,
                                            num_layers=cfg.layers, depth_range_m=scene_range)
        else:
            _, aif, depth = source.load(source.records[i])
            if cfg.resize != 1.0:
                aif, depth = resize_rgbd(aif, depth, cfg.resize)
            cam_i, _ = camera_of(i, depth, aif.shape[-1])
            if not warned and not cfg.occlusion_aware:
                warned = True
                _warn_slow(cam_i, depth, cfg.psf)
            sample = make_sample(aif, depth, cam_i, name, occlusion_aware=cfg.occlusion_aware,
                                 noise_std=cfg.noise, quantize_bits=bits, seed=[cfg.seed, i, 1],
                                 psf=cfg.psf, num_layers=cfg.layers, source=str(source.records[i].rgb))
        if cfg.encoding != sample.camera.encoding:
            # the files' encoding only: the tensors stay in the working encoding, save_sample converts
            # (noise and quantisation were applied to the sRGB values; linear files are 16-bit)
            sample = replace(sample, camera=replace(sample.camera, encoding=cfg.encoding))
        save_sample(sample, d, bit_depth=16 if cfg.bits == 16 else 8, inputs=inputs)
    return SynthResult(out, num, [name for _, name, _ in todo], skipped, splits, camera,
                       dist.name if dist is not None else None)
