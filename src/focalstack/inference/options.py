"""The options of each prediction method, one typed dataclass per method: :class:`DFFOptions`,
:class:`DFDOptions`, :class:`OptimizeOptions`, :class:`NetOptions` (:data:`METHOD_OPTIONS`).

A field's ``metadata`` holds its ``focalstack predict`` flag and help (the options are generated
from them by :mod:`focalstack.cli.options`); fields without a flag are library-only.
:class:`PredictOptions` is every method's options at once, for callers that pass one object to
whichever method they run (it is an instance of each class).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..optimize import SCHEDULES

__all__ = ["MethodOptions", "ClassicalOptions", "DepthRangeOptions", "CostVolumeOptions", "DFFOptions", "DFDOptions", "OptimizeOptions",
           "NetOptions", "PredictOptions", "METHOD_OPTIONS", "SCHEDULES", "sample_focus_known"]



@dataclass
class MethodOptions:
    """What every method may read."""

    progress: bool = False              # a progress bar for long runs (the CLI: for a single sample)

    @classmethod
    def of(cls, opts=None):
        """``opts`` as this class: itself when it is one (a :class:`PredictOptions` is every method's),
        else its attributes named like this class's fields, those that are set (not None) — from any
        object, e.g. a ``SimpleNamespace``; None: the defaults."""
        if isinstance(opts, cls):
            return opts
        return cls(**{f.name: v for f in fields(cls) if (v := getattr(opts, f.name, None)) is not None})


@dataclass
class ClassicalOptions(MethodOptions):
    """Depth from focus: ``dff`` itself and the initialisation of ``optimize``."""

    measure: str = field(default="lapm", metadata={
        "flag": "--measure", "help": "focus measure (see focalstack.classical.FOCUS_MEASURES)"})
    window: int = field(default=9, metadata={"flag": "--window", "help": "focus-measure window, odd px (default 9)"})
    guided_filter: bool = field(default=True, metadata={
        "flag": "--no-guided-filter", "negate": True,
        "help": "skip the guided-filter smoothing of the DFF depth (not to be confused with --refine)"})
    focus_known: bool | None = None     # None: the sample camera's focus_known


@dataclass
class DFFOptions(ClassicalOptions):
    """``--method dff`` (:func:`focalstack.classical.depth_from_focus`)."""

    interp: str = "parabolic"
    fusion: str = "pyramid"


@dataclass
class DepthRangeOptions(MethodOptions):
    """What the metric methods that search a depth range share (``dfd``, ``net``, ``optimize``): whether
    that range is the part of the camera's stated one the stack's defocus evidence supports."""

    range_from_evidence: bool = field(default=True, metadata={
        "flag": "--stated-range", "negate": True,
        "help": "dfd, net and optimize: search depth over the camera's stated range as it is (default: the part "
                "of it the stack's defocus evidence supports, widened 3x at each end; focalstack.classical.dfd."
                "evidence_depth_range)"})


@dataclass
class CostVolumeOptions(DepthRangeOptions):
    """What the methods that read blur through the relative-blur cost volume share (``dfd``, ``net``):
    the depth range it spans and the size it is read at."""
    scale: float | None = field(default=None, metadata={
        "flag": "--scale",
        "help": "dfd and net: resize factor first (default: automatic — a stack whose largest blur over the scene "
                "exceeds 5 px, the most the camera-general model was trained on and the cost volume models, is "
                "downscaled until it is 5 px; for checkpoints trained on one camera: 1)"})


@dataclass
class DFDOptions(CostVolumeOptions):
    """``--method dfd`` (:func:`focalstack.classical.dfd.depth_from_defocus`)."""

    hypotheses: int = 32                # inverse-depth hypotheses of the cost volume


@dataclass
class OptimizeOptions(ClassicalOptions, DepthRangeOptions):
    """``--method optimize`` (:func:`focalstack.optimize.optimize_stack`)."""

    iters_scale: float = field(default=1.0, metadata={
        "flag": "--iters-scale", "help": "optimize: × the default iteration counts"})
    threads: int | None = field(default=None, metadata={"flag": "--threads", "help": "torch CPU threads"})
    schedule: str = field(default="fast", metadata={
        "flag": "--schedule", "choices": tuple(SCHEDULES),
        "help": "optimize: fast (default: a stage ends once its loss has converged) or reference (every stage "
                "runs all its iterations)"})


@dataclass
class NetOptions(CostVolumeOptions):
    """``--method net``: a trained model (:func:`focalstack.inference.predict_net`)."""

    checkpoint: str | None = field(default=None, metadata={
        "flag": "--checkpoint",
        "help": "run folder, .safetensors, or shipped[:general|procedural] (--method net without it: the "
                "shipped general model)"})
    refine_steps: int = field(default=0, metadata={
        "flag": "--refine", "metavar": "STEPS",
        "help": "test-time optimisation after the network: at most STEPS steps of the optimiser's default "
                "schedule (coarse to fine, stops on convergence)"})
    tile: int | None = field(default=None, metadata={"flag": "--tile", "help": "tile size for large images"})
    device: str = field(default="cpu", metadata={"flag": "--device"})


@dataclass
class PredictOptions(NetOptions, OptimizeOptions, DFFOptions, DFDOptions):
    """Every method's options in one object (each method reads its own fields)."""


METHOD_OPTIONS: dict[str, type[MethodOptions]] = {
    "dff": DFFOptions, "dfd": DFDOptions, "optimize": OptimizeOptions, "net": NetOptions}


def sample_focus_known(sample, opts) -> bool:
    """Whether the stack's focus distances are real: ``opts.focus_known`` when set, else the
    camera's ``focus_known``."""
    known = getattr(opts, "focus_known", None)
    return bool(known) if known is not None else sample.camera.focus_known
