"""Distillation without ground truth (``focalstack train --teacher optimize|refine``).

Every training stack is labelled once and the network then learns from those pseudo-labels,
weighted per pixel by how much the label can be trusted, together with the re-rendering loss. No
ground truth is read anywhere. Two teachers, both minimising the re-rendering objective the
network trains with (:func:`focalstack.optimize.optimize_stack`):

* ``optimize``: the zero-shot optimiser from its DFF start (``predict --method optimize``);
* ``refine``: the network the run starts from (``--init``, by default the shipped model), refined
  per stack by the optimiser (``predict --refine N``): the package's most accurate path, distilled
  into the network so that it runs at network speed. Its labels start from the network's own
  depth and only move where the re-rendering error says so. With ``refine_steps=0`` the label is
  the initial network's own depth: an *anchor* for pretraining. Where a camera's frames barely
  differ (a phone beyond its farthest focus plane) the re-rendering loss changes by < 1 % over
  ±40 % of depth and its small biases (toward the focus planes with a blended AIF) move depth
  freely; the anchor holds the initialisation there, while the loss still wins where it has evidence.

Per-pixel weight w ∈ [0, 1]. For ``optimize``, *distinctness* × *evidence* × *fit* (the first two
are :func:`focalstack.classical.dfd.decisiveness` of the teacher's depth):

* distinctness: the relative-blur cost volume (:mod:`focalstack.classical.dfd`) at the teacher's
  depth versus its mean over all hypotheses, ``clamp((mean_j c_j − c(d_t)) / mean_j c_j, 0, 1)``:
  high where the defocus evidence singles out the teacher's depth, ~0 on flat, textureless
  surfaces where every depth re-renders the stack equally well (there the teacher's depth is its
  smoothness prior, and the network's own context should decide);
* evidence: the same margin in absolute grey levels, the mean re-blurring mismatch of all
  hypotheses minus the teacher's, ramped up to ``min_evidence`` (default one 8-bit code value,
  1/255): distinctness is a ratio, so on a camera whose blur barely changes with depth (a phone
  lens, σ < 1 px) a textured pixel looks decisive while its margin is below what an 8-bit frame can
  even record — there the optimiser's depth is noise, however distinct;
* fit: ``exp(−e / (2·median e))`` with e the teacher's local re-rendering error (mean over frames
  and channels, 7-px box): low at occlusion edges and wherever the thin-lens model fails.

For ``refine``, *fit* alone: on flat surfaces its label is the network's own context prior, refined
jointly with the textured pixels around it — exactly what the refinement improves there (README,
"Any camera": δ1 on the least textured pixels rises with the refinement) — whereas the optimiser's
label there is whatever its DFF start and smoothness left, which the other two factors exclude.

``trust`` chooses the weight: ``auto`` (the above per teacher), ``fit``, ``evidence`` (distinctness ×
evidence × fit) or ``weak-evidence``: fit × (1 − distinctness × evidence), trusted exactly where the
defocus evidence is weak. That is the anchor's natural trust: it holds the initial depth where the
re-rendering loss cannot tell depths apart and lets the loss alone decide where it can (a DSLR's
textured pixels), instead of pulling everywhere the initial network happens to re-render well.

Cache: ``RUN/teacher/<sample folder name>.safetensors`` holding ``inv_depth`` [H,W] (1/m) and
``weight`` [H,W], plus ``RUN/teacher/teacher.json`` with the settings. Each file is written
atomically as soon as its stack is done, so an interrupted labelling resumes where it stopped;
files of other settings are not reused (a settings change is an error naming the folder).
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..classical import dfd as _dfd
from .config import TEACHER_TRUSTS

__all__ = ["TeacherConfig", "label_weight", "label_stack", "label_dataset", "load_label", "TEACHERS", "TRUSTS",
           "MIN_EVIDENCE", "REFINE_STEPS"]

TEACHERS = ("optimize", "refine")
TRUSTS = TEACHER_TRUSTS
"""Per-pixel trust of a teacher's labels (module docstring); ``auto``: ``evidence`` for ``optimize``,
``fit`` for ``refine``."""
REFINE_STEPS = 100
"""Default refinement steps of the ``refine`` teacher (as ``predict --refine 100``)."""
MIN_EVIDENCE = _dfd.MIN_EVIDENCE
"""Default ``min_evidence`` (grey levels): one 8-bit code value (module docstring, *evidence*;
owned by :func:`focalstack.classical.dfd.decisiveness`)."""


@dataclass(frozen=True)
class TeacherConfig:
    """``iters_scale``: × the optimiser's default iteration counts (1 = ``predict --method optimize``);
    ``refine_steps``: the ``refine`` teacher's refinement steps; ``trust``: one of :data:`TRUSTS`;
    ``psf``: the PSF the teacher's optimiser renders with (the run's ``--psf``: labels made under one
    image-formation model are not the labels of another)."""

    kind: str = "optimize"
    iters_scale: float = 1.0
    hypotheses: int = 32
    min_evidence: float = MIN_EVIDENCE
    refine_steps: int = REFINE_STEPS
    trust: str = "auto"
    psf: str = "gaussian"

    def __post_init__(self):
        if self.trust not in TRUSTS:
            raise ValueError(f"unknown teacher trust {self.trust!r}; known: {', '.join(TRUSTS)}")

    @property
    def weight_trust(self) -> str:
        """The trust ``auto`` stands for with this teacher."""
        if self.trust != "auto":
            return self.trust
        return "fit" if self.kind == "refine" else "evidence"

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.kind != "refine":   # the optimiser's caches predate the refine teacher: same settings record
            d.pop("refine_steps")
        if self.trust == "auto":    # caches made before the option: the same record
            d.pop("trust")
        if self.psf == "gaussian":  # likewise
            d.pop("psf")
        return d


@torch.no_grad()
def label_weight(frames: torch.Tensor, camera, inv_depth: torch.Tensor, rendered: torch.Tensor,
                 hypotheses: int = 32, min_evidence: float = MIN_EVIDENCE, trust: str = "evidence",
                 depth_range_m: tuple[float, float] | None = None) -> torch.Tensor:
    """Per-pixel trust w ∈ [0,1] of a teacher depth (module docstring).

    frames, rendered: [F,3,H,W] in [0,1]; camera: FocalStackCamera; inv_depth: [H,W] 1/m;
    min_evidence: grey levels (0 = no evidence ramp); trust: ``evidence`` (distinctness × evidence ×
    fit), ``fit`` (the fit term alone) or ``weak-evidence`` (fit × (1 − distinctness × evidence));
    depth_range_m: the (near, far) metres whose hypotheses the distinctness compares (default the
    camera's effective range) → [H,W]."""
    from ..classical.dfd import decisiveness, has_defocus_evidence, relative_blur_cost
    from ..classical.focus_measures import local_mean
    from ..optics.camera import CameraBatch
    if trust == "auto" or trust not in TRUSTS:   # "auto" is resolved by TeacherConfig.weight_trust
        raise ValueError(f"unknown trust {trust!r}: fit, evidence or weak-evidence")
    h, w = inv_depth.shape
    rng = torch.tensor([tuple(depth_range_m) if depth_range_m is not None else camera.effective_depth_range_m()],
                       dtype=torch.float32)
    if trust == "fit":
        distinct = torch.ones(h, w)
    elif has_defocus_evidence(camera):
        vol = relative_blur_cost(frames.unsqueeze(0).float(), CameraBatch.from_cameras([camera]), rng, hypotheses)
        inv = vol.inv_depth[0]
        t = ((inv_depth - inv[0]) / (inv[1] - inv[0])).clamp(0, hypotheses - 1)     # fractional hypothesis index
        i0 = t.floor().long().clamp(max=hypotheses - 2)
        a = (t - i0).unsqueeze(0)
        c = vol.cost[0]
        c_at = c.gather(0, i0.unsqueeze(0)) * (1 - a) + c.gather(0, (i0 + 1).unsqueeze(0)) * a   # the label's cost
        distinct = decisiveness(vol, c_at.unsqueeze(0), min_evidence)[0, 0]
    else:   # identical frames: no defocus evidence anywhere
        distinct = torch.zeros(h, w)
    err = local_mean((rendered.float() - frames.float()).abs().mean(dim=(0, 1))[None, None], 7, "box")[0, 0]
    fit = torch.exp(-err / (2.0 * err.median().clamp_min(1e-6)))
    if trust == "weak-evidence":
        distinct = 1.0 - distinct
    return (distinct * fit).clamp(0, 1)


def label_stack(frames: torch.Tensor, camera, cfg: TeacherConfig = TeacherConfig(), model=None,
                depth_range_m: tuple[float, float] | None = None, view=None) -> dict[str, torch.Tensor]:
    """{"inv_depth": [H,W] 1/m, "weight": [H,W]} for one stack [F,3,H,W] with a known camera. The
    ``refine`` teacher needs ``model`` (the network to refine) and the (near, far) metres it predicts
    in (default the camera's effective range). ``view``: the run's :class:`focalstack.train.views.StackView`
    of the stack: the network then reads it as ``predict`` does (that range, at that working scale,
    back to full size), the optimiser searches that range (as ``predict --method optimize``), and the
    trust compares hypotheses over it."""
    from ..optimize import OptimizeConfig, optimize_stack
    if view is not None:
        depth_range_m = view.depth_range_m
    if cfg.kind == "refine":
        if model is None:
            raise ValueError("the refine teacher needs the network it refines")
        from ..inference.network import run_network_at
        from ..inference.scale import working_stack
        rng = tuple(depth_range_m) if depth_range_m is not None else camera.effective_depth_range_m()
        ws = working_stack(frames.float(), camera, rng, view.scale if view is not None else 1.0, read_evidence=False)
        # refine_steps 0: the network itself, an anchor (module docstring); else predict --refine N
        depth, aif, res = run_network_at(model, ws, frames.float(), camera, refine_steps=cfg.refine_steps, psf=cfg.psf)
        if res is not None and ws.scale == 1.0:
            rendered = res.rendered
        else:
            from ..render import render_stack
            rendered = render_stack(aif[None].float(), depth[None, None].float(), camera, psf=cfg.psf)[0]
        r = SimpleNamespace(depth_m=depth, rendered=rendered)
    else:
        ocfg = OptimizeConfig(psf=cfg.psf)
        if cfg.iters_scale != 1.0:
            ocfg = ocfg.scaled(cfg.iters_scale)
        if view is not None:   # as predict --method optimize: inside the range the stack's evidence supports
            from dataclasses import replace
            camera = replace(camera, depth_range_m=tuple(view.depth_range_m))
        r = optimize_stack(frames.float(), camera, ocfg)
    inv = (1.0 / r.depth_m.view(frames.shape[-2:])).float()
    weight = label_weight(frames, camera, inv, r.rendered, cfg.hypotheses, cfg.min_evidence, cfg.weight_trust,
                          depth_range_m)
    return {"inv_depth": inv.contiguous(), "weight": weight.float().contiguous()}


def load_label(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return load_file(str(path))


def label_dataset(sample_dirs: Sequence[Path], out_dir: str | Path, cfg: TeacherConfig = TeacherConfig(),
                  progress: bool = True, model=None, depth_range_m: tuple[float, float] | None = None,
                  views: Sequence | None = None) -> Path:
    """Label every sample once into ``out_dir`` (resumable; module docstring). Returns ``out_dir``.
    ``model``, ``depth_range_m``: the ``refine`` teacher's network and its fixed range (None: each
    stack's camera range), as :func:`label_stack`; ``views``: the run's view of each sample
    (:mod:`focalstack.train.views`, in ``sample_dirs`` order), read as :func:`label_stack` reads one."""
    from safetensors.torch import save

    from ..data import load_sample
    from ..data.io import atomic_write_file
    if cfg.kind not in TEACHERS:
        raise ValueError(f"unknown teacher {cfg.kind!r}; known: {', '.join(TEACHERS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "teacher.json"
    from ..render import light
    want = {**cfg.to_dict(), "physics_light": light.PHYSICS_LIGHT}   # labels made in another light differ
    if views is not None:   # labels read at the run's views (caches from before them: no key, stated ranges)
        want["evidence_view"] = True
        if cfg.kind == "optimize":   # its range too (caches from before: the stated range at the view's size)
            want["optimize_view_range"] = True
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        old["physics_light"] = light.made_in(old)
        if old != want:
            raise ValueError(f"{out}: labelled with other teacher settings {old}; use another --out or the same "
                             "settings")
    else:
        atomic_write_file(meta_path, json.dumps(want, indent=2) + "\n")
    names = [Path(p).name for p in sample_dirs]
    if len(set(names)) != len(names):
        raise ValueError("teacher labels are keyed by sample folder name, and two training samples share one")
    view_of = dict(zip(names, views)) if views is not None else {}
    todo = [p for p in sample_dirs if not (out / f"{Path(p).name}.safetensors").is_file()]
    bar = None
    if progress and todo:
        from tqdm import tqdm
        bar = tqdm(total=len(sample_dirs), initial=len(sample_dirs) - len(todo), desc=f"teacher ({cfg.kind})",
                   unit="stack", file=sys.stderr, dynamic_ncols=True)
    for p in todo:
        s = load_sample(p, load_depth=False, load_aif=False)
        if not (s.camera.focus_known and s.camera.lens_known):
            raise ValueError(f"{p}: the {cfg.kind} teacher needs a known lens and focus distances (camera.json has "
                             "placeholders)")
        lab = label_stack(s.frames, s.camera, cfg, model, depth_range_m, view_of.get(Path(p).name))
        atomic_write_file(out / f"{Path(p).name}.safetensors", save(lab))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out
