"""``TrainConfig``: every setting of a training run, typed, JSON round-trippable."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..losses import SUPERVISION_MODES, LossConfig

AMP_MODES = ("auto", "off", "bf16", "fp16")
CROP_CONTEXTS = ("view", "crop")
"""``--crop-context``: where a crop's whole-image prior is read (:class:`focalstack.models.CropView`)."""
TEACHER_TRUSTS = ("auto", "fit", "evidence", "weak-evidence")
"""``--teacher-trust``: per-pixel trust of the teacher's labels (:mod:`focalstack.train.teacher`)."""


@dataclass
class TrainConfig:
    """A training run.

    Data: ``data_dir`` (folder of sample folders), ``val_dir`` (None = validate on the first
    ``val_max_samples`` training samples at full size — self-supervised, no ground truth needed),
    ``out_dir`` (the run folder: checkpoints, TensorBoard, config.json, metrics.jsonl).

    Optimisation defaults are the authors' (AdamW, lr 5e-4, weight decay 5e-4, cosine decay to 0)
    plus a short linear warm-up (``warmup_steps``), which stabilises the first steps of the
    normalisation-free net.

    ``max_minutes``: a time budget (training wall time, summed over resumes). After the first
    ``PLAN_AFTER_STEPS`` + 1 steps the trainer measures its speed and ends the cosine schedule at
    the step the budget allows (85 % of the remaining time, at most ``max_steps``; warm-up
    shortened to ≤ 1/10 of that), so the learning rate has decayed when the time is up — instead
    of stopping a schedule planned for ``max_steps`` at its peak. The plan is saved with the
    scheduler (exact resume); the run also stops when the budget is spent.

    ``kernel_size`` (renderer window): None = the smallest odd window holding ±3σ of the largest
    Gaussian σ any training camera produces over its depth range (σ is largest at near or far),
    capped at ``max_kernel_size`` (21: the reference renderer costs O(k²); wider blur is truncated,
    as the authors' fixed 7×7 window did).

    ``depth_range``: (near, far) metres for every sample; None = each camera's ``depth_range_m``,
    else ``FocalStackCamera.default_depth_range_m()``, read as ``predict`` reads the stack when
    ``evidence_view`` (default): narrowed to the stack's defocus evidence and at its working scale
    (:mod:`focalstack.train.views`).

    ``scale_aug``: (min, max) — DDFS scale augmentation (Fujimura et al. 2024, §4.3): every training
    sample gets a factor s from {min, min + ``scale_aug_step``, …, max} (the paper: 1.0, 1.5, …, 9.0);
    focal length, focus distances, pixel size and GT depth are multiplied by s, which leaves every
    CoC in pixels — hence the frames — unchanged (``FocalStackCamera.scaled``). The depth range does
    *not* scale, so the scene moves through the model's fixed range: it requires ``depth_range``.
    s is drawn from (seed, step): resumable. Validation is not augmented.

    ``teacher``: "optimize" (the zero-shot optimiser) or "refine" (the initial network refined per
    stack, ``teacher_refine_steps`` steps; 0 = its own prediction) labels every training stack once before the first step
    (cached in ``out_dir/teacher``, resumable; :mod:`focalstack.train.teacher`) and adds the
    trust-weighted pseudo-label term (``loss.teacher``) to the self-supervised loss; no ground truth
    is used. ``teacher_iters_scale`` scales the optimiser's iterations (speed); ``teacher_trust``
    chooses the labels' per-pixel trust (:data:`TEACHER_TRUSTS`).

    ``amp``: "auto" (bf16 autocast on CUDA when supported, else fp16 with a GradScaler; off on CPU),
    "off", "bf16" or "fp16". Rendering and losses always run in float32.
    """

    # metadata: the `focalstack train` option of a field (focalstack.cli.options): "flag", "help", "choices",
    # "metavar", "required"; "negate" for a bool switched off by its flag ("also": other fields it sets)
    data_dir: str = field(default="", metadata={"flag": "data_dir",
                                                 "help": "folder of sample folders (camera.json + frame_NN.png each)"})
    out_dir: str = field(default="runs/daifnet", metadata={
        "flag": "--out", "required": True,
        "help": "run folder (checkpoints, TensorBoard, config): new, empty, or an earlier focalstack run (resumed)"})
    val_dir: str | None = field(default=None, metadata={
        "flag": "--val", "help": "validation folder (default: the first training samples)"})
    model: str = field(default="daifnet", metadata={
        "flag": "--model", "help": "model name: daifnet (default), aifdepthnet, ddfs, gurwolf"})
    model_cfg: dict = field(default_factory=lambda: {"width": 16, "levels": 4})   # the model's options (models.*Config)
    supervision: str = field(default="self", metadata={
        "flag": "--supervision", "choices": SUPERVISION_MODES,
        "help": "self (default, no ground truth), depth (needs depth.npy), aif (needs aif.png)"})
    loss: LossConfig = field(default_factory=LossConfig)
    batch_size: int = field(default=4, metadata={"flag": "--batch-size"})
    crop_size: tuple[int, int] | None = field(default=(128, 128), metadata={
        "flag": "--crop", "metavar": ("H", "W"), "help": "random crop (0 0 = full frames)"})
    # the cost prior of a crop read over its whole stack: a crop then sees what predict shows its pixels
    crop_context: str = field(default="view", metadata={
        "flag": "--crop-context", "choices": CROP_CONTEXTS,
        "help": "view (default): DAIF-Net's cost volume is aggregated over each crop's whole stack, as predict reads "
                "it, then cropped (not with --scale-aug); crop: over the crop alone (other evidence than predict's)"})
    crop_cache_gb: float = field(default=4.0, metadata={
        "flag": "--crop-cache-gb",
        "help": "memory (GB) that keeps each training stack's whole-stack cost prior (--crop-context view) once "
                "computed; stacks beyond it are recomputed every step (default 4; 0: none)"})
    num_frames: int | None = field(default=None, metadata={
        "flag": "--frames", "help": "use a random subset of K frames per stack"})
    hflip: bool = field(default=True, metadata={"flag": "--no-flip", "negate": True, "also": ("vflip",),
                                                 "help": "no random flips"})
    vflip: bool = True
    permute: bool = field(default=True, metadata={"flag": "--no-permute", "negate": True,
                                                   "help": "keep the stack order"})
    lr: float = field(default=5e-4, metadata={"flag": "--lr"})
    weight_decay: float = field(default=5e-4, metadata={"flag": "--weight-decay"})
    warmup_steps: int = field(default=100, metadata={"flag": "--warmup"})
    min_lr_ratio: float = 0.0
    grad_clip: float | None = field(default=1.0, metadata={"flag": "--grad-clip"})
    max_steps: int = field(default=20000, metadata={"flag": "--max-steps"})
    max_minutes: float | None = field(default=None, metadata={
        "flag": "--max-minutes",
        "help": "time budget (training wall time, summed over resumes): the cosine schedule is fitted to it from "
                "the speed of the first steps, and the run stops with a checkpoint when it is spent"})
    val_interval: int = field(default=500, metadata={"flag": "--val-interval"})
    ckpt_interval: int = field(default=500, metadata={"flag": "--ckpt-interval"})
    log_interval: int = field(default=20, metadata={"flag": "--log-interval"})
    val_max_samples: int = field(default=16, metadata={"flag": "--val-samples"})
    seed: int = field(default=0, metadata={"flag": "--seed"})
    kernel_size: int | None = field(default=None, metadata={
        "flag": "--kernel-size", "help": "renderer window (default: from the largest blur, capped)"})
    max_kernel_size: int = field(default=21, metadata={"flag": "--max-kernel-size"})
    depth_range: tuple[float, float] | None = field(default=None, metadata={
        "flag": "--depth-range", "metavar": ("NEAR", "FAR"),
        "help": "metres (default: the camera's depth_range_m, else derived from its focus distances)"})
    # each stack read as predict reads it (its evidence range, its working scale): trained on what it will be given
    evidence_view: bool = field(default=True, metadata={
        "flag": "--stated-range", "negate": True,
        "help": "train over each camera's stated depth range at the stack's own size (default: the range the stack's "
                "defocus evidence supports and the working scale, as predict reads it; kept in RUN/views.json)"})
    scale_aug: tuple[float, float] | None = field(default=None, metadata={
        "flag": "--scale-aug", "metavar": ("MIN", "MAX"),
        "help": "DDFS scale augmentation: scene + camera × s, s in {MIN, MIN+step, …, MAX} (needs --depth-range)"})
    scale_aug_step: float = field(default=0.5, metadata={
        "flag": "--scale-aug-step", "help": "step of the --scale-aug grid (default 0.5)"})
    num_workers: int = field(default=2, metadata={"flag": "--workers"})
    amp: str = field(default="auto", metadata={"flag": "--amp", "choices": AMP_MODES})
    device: str = field(default="auto", metadata={"flag": "--device", "help": "auto (default), cpu, cuda, cuda:1 ..."})
    progress: bool = field(default=True, metadata={"flag": "--no-progress", "negate": True})
    tensorboard: bool = field(default=True, metadata={"flag": "--no-tensorboard", "negate": True})
    # a sample folder with frames but no camera.json is an error (False: skipped, warned)
    strict: bool = field(default=True, metadata={
        "flag": "--no-strict", "negate": True,
        "help": "skip (with a warning) sub-folders that hold frames but no camera.json instead of stopping"})
    # initial weights of a fresh run: "auto" (the shipped general model when this run's model and settings are
    # its own, else random), "none", "shipped", or a checkpoint
    init: str | None = field(default="auto", metadata={
        "flag": "--init",
        "help": "initial weights of a fresh run: auto (default: the shipped model when it is the camera-general one "
                "and the model options are its own), none (random), shipped (the package's checkpoint), or a run "
                "folder / .safetensors; the model and its settings are taken from that checkpoint unless given"})
    # "optimize": distil the zero-shot optimiser's pseudo-labels (cached in RUN/teacher)
    teacher: str | None = field(default=None, metadata={
        "flag": "--teacher", "choices": ("optimize", "refine", "none"),
        "help": "label every training stack once (cached in RUN/teacher, resumable) and distil those pseudo-labels, "
                "weighted by their per-pixel trust, with the re-rendering loss; no ground truth is used. optimize: "
                "the zero-shot optimiser; refine: the initial network + --refine (predict --refine N)"})
    teacher_iters_scale: float = field(default=1.0, metadata={
        "flag": "--teacher-iters-scale", "help": "× the optimiser's iterations for the labels (default 1)"})
    teacher_refine_steps: int = field(default=100, metadata={
        "flag": "--teacher-refine-steps",
        "help": "refinement steps of --teacher refine (default 100; 0: the initial network's own depth, an anchor "
                "that keeps it where the re-rendering loss cannot tell depths apart)"})
    teacher_trust: str = field(default="auto", metadata={
        "flag": "--teacher-trust", "choices": TEACHER_TRUSTS,
        "help": "per-pixel trust of the labels: auto (evidence for optimize, fit for refine), fit (how well the "
                "teacher re-renders the stack), evidence (× how clearly the defocus singles out its depth), "
                "weak-evidence (fit × the opposite: an anchor that holds only where the defocus cannot decide)"})

    def __post_init__(self):
        if isinstance(self.loss, dict):
            self.loss = LossConfig.from_dict(self.loss)
        if self.supervision not in SUPERVISION_MODES:
            raise ValueError(f"supervision must be one of {', '.join(SUPERVISION_MODES)}, got {self.supervision!r}")
        if self.crop_size is not None:
            self.crop_size = tuple(int(x) for x in self.crop_size)
        if self.depth_range is not None:
            near, far = (float(x) for x in self.depth_range)
            if not 0 < near < far:
                raise ValueError(f"depth range must satisfy 0 < near < far, got {near} {far}")
            self.depth_range = (near, far)
        if self.scale_aug is not None:
            lo, hi = (float(x) for x in self.scale_aug)
            if not 0 < lo <= hi or not self.scale_aug_step > 0:
                raise ValueError(f"scale_aug must be 0 < min ≤ max with a positive step, got {lo} {hi} "
                                 f"step {self.scale_aug_step}")
            if self.depth_range is None:
                raise ValueError("scale augmentation needs a fixed depth range (--depth-range NEAR FAR) covering "
                                 "the scaled scenes: the model's range must not scale with them")
            self.scale_aug = (lo, hi)
        if not self.crop_cache_gb >= 0:
            raise ValueError(f"crop_cache_gb must be ≥ 0, got {self.crop_cache_gb}")
        if self.crop_context not in CROP_CONTEXTS:
            raise ValueError(f"crop_context must be one of {', '.join(CROP_CONTEXTS)}, got {self.crop_context!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be auto|off|bf16|fp16, got {self.amp!r}")
        if self.batch_size < 1 or self.max_steps < 0:
            raise ValueError("batch_size must be ≥ 1 and max_steps ≥ 0")
        if self.teacher in ("none", ""):
            self.teacher = None
        if self.teacher is not None:
            if self.teacher not in ("optimize", "refine"):
                raise ValueError(f"teacher must be 'optimize', 'refine' or none, got {self.teacher!r}")
            if self.teacher == "refine" and self.teacher_refine_steps < 0:
                raise ValueError(f"teacher_refine_steps must be ≥ 0, got {self.teacher_refine_steps}")
            if self.supervision != "self":
                raise ValueError("--teacher distils into the self-supervised loss: it needs --supervision self")
            if self.scale_aug is not None:
                raise ValueError("--teacher and --scale-aug cannot be combined (the pseudo-labels do not scale)")
            if not self.teacher_iters_scale > 0:
                raise ValueError(f"teacher_iters_scale must be positive, got {self.teacher_iters_scale}")
            if self.teacher_trust not in TEACHER_TRUSTS:
                raise ValueError(f"teacher_trust must be one of {', '.join(TEACHER_TRUSTS)}, got {self.teacher_trust!r}")
        if self.kernel_size is not None and (self.kernel_size < 1 or self.kernel_size % 2 == 0):
            raise ValueError(f"kernel_size must be a positive odd integer, got {self.kernel_size}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["loss"] = self.loss.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
