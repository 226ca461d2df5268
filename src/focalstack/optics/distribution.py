"""Camera distributions for pretraining a camera-general model: one random focal-stack camera per
training stack, from phones to DSLRs.

A camera is drawn in the order a photographer's choices fall (``CameraDistribution.sample``):

1. scene depth range [near, far] — given by the scene (RGB-D data), or drawn: near log-uniform
   in ``near_m``, far/near log-uniform in ``depth_ratio``;
2. focal length f, log-uniform in ``focal_length_mm`` (4 mm phone lenses to 85 mm portrait
   lenses), and the horizontal field of view, uniform in ``fov_deg``: the sensor width is
   2·f·tan(fov/2), and the pixel pitch *of the images as rendered* is that width over the image
   width in pixels (a 24 MP photo downsampled to 256 px has 256-px pixels, not the sensor's);
3. the number of frames, uniform in ``frames``; their focus distances evenly spaced in inverse
   depth over a random share (``focus_spread``) of the scene's inverse-depth range, with jitter;
   sorted near → far or shuffled (models must not rely on the order). (Tried and reverted: sweeps
   over the camera's wider *stated* range, so that some start in front of the scene as a phone's
   does; 1000 pretraining steps on it scored worse on every validation camera looked at, phone δ1
   0.603 → 0.454, 50 mm 0.948 → 0.937. Also tried and reverted: with probability 0.3 a sweep
   over the near part only, leaving 30–70 % of the scene's inverse-depth range beyond the
   farthest focus plane, as a phone focused on the foreground leaves a room's 3–5 m; after 1000
   steps the phone's δ1 on its pixels 3–5 m deep was 0.00, against 0.36 after 1250 steps
   without it: more such pixels taught more of the pull toward the focus planes that the
   re-rendering loss has where σ differs by a fraction of a pixel, ``benchmarks/aif_bias.py``);
4. the f-number N is then *solved* so that the largest Gaussian σ any frame shows over the depth
   range equals a target drawn log-uniform in ``sigma_max_px``, and the draw is repeated when N
   falls outside ``f_number``. Blur is what a model sees, so the distribution controls it
   directly. The band starts at 0.4 px because that is where phones are: a phone's stack seen
   whole at a few hundred pixels blurs its scene by well under 1 px (the phone camera of
   ``benchmarks/general.py``: σ ≤ 0.72 px over 0.5–10 m) — weak evidence, not none, and a model
   never trained on it departs from its cost-volume prior there (1000–1250 pretraining steps
   with the band at 0.8–5 px: phone δ1 0.822 → 0.473; with 0.4–5 px: 0.603 — still a loss,
   README "Any camera"). Above ~5 px the evidence is mostly outside the
   training crops' windows and rendering slows down; cameras beyond that are brought into the
   band by resizing the images (which scales σ).
5. with probability ``two_aperture`` the stack is a two-aperture pair at one focus distance
   (the DSLR indoor set's f/2.8 + f/8 design) instead of a focus sweep;
6. the depth range the camera *states* (``depth_range_m``, what a model is told) is the scene's
   widened by factors log-uniform in ``range_slack`` at each end, near/a and far·b, drawn last (so
   every other choice of a seed is the same with or without slack). Why: the range a user writes
   in camera.json, or the default derived from the focus distances, is a loose bracket, never the
   scene's own 1st–99th percentile; a network trained on tight ranges learns to read the range ends
   as depth (where flat regions give no evidence, it puts them between the ends), and that fails
   on real metadata (1500 pretraining steps on tight ranges: δ1 0.943 → 0.818 on the 50 mm
   validation camera of ``benchmarks/general.py``, whose stated range is 0.5–10 m; with the slack,
   1250 steps: 0.934). The widest slack is also how far ``predict`` widens the depth span the
   stack's evidence supports when it narrows a looser stated range
   (:func:`focalstack.classical.dfd.evidence_depth_range`): the result is a bracket of the kind
   the network was trained to read.

Everything is a pure function of the seed. :data:`CAMERA_DISTRIBUTIONS` holds the named ones
(``general``: the pretraining distribution of the shipped model).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from .camera import FocalStackCamera
from .thin_lens import DEFAULT_PSF_SCALE, ThinLens

__all__ = ["CameraDistribution", "CAMERA_DISTRIBUTIONS", "get_camera_distribution"]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


@dataclass(frozen=True)
class CameraDistribution:
    """Ranges (inclusive) of a random focal-stack camera; see the module docstring for the order
    of the draws. Units: millimetres / degrees / metres / pixels as the field names say."""

    name: str = "general"
    focal_length_mm: tuple[float, float] = (4.0, 85.0)
    fov_deg: tuple[float, float] = (30.0, 75.0)
    f_number: tuple[float, float] = (1.2, 22.0)
    frames: tuple[int, int] = (2, 10)
    focus_spread: tuple[float, float] = (0.4, 1.0)
    sigma_max_px: tuple[float, float] = (0.4, 5.0)
    near_m: tuple[float, float] = (0.15, 2.0)
    depth_ratio: tuple[float, float] = (3.0, 20.0)
    two_aperture: float = 0.0
    range_slack: tuple[float, float] = (1.0, 3.0)
    psf_scale: float = DEFAULT_PSF_SCALE

    def __post_init__(self):
        for key in ("focal_length_mm", "fov_deg", "f_number", "focus_spread", "sigma_max_px", "near_m", "depth_ratio",
                    "range_slack"):
            lo, hi = getattr(self, key)
            if not (0 < lo <= hi):
                raise ValueError(f"CameraDistribution.{key} must satisfy 0 < min ≤ max, got {(lo, hi)}")
        if not (1 <= self.frames[0] <= self.frames[1]):
            raise ValueError(f"CameraDistribution.frames must satisfy 1 ≤ min ≤ max, got {self.frames}")
        if self.range_slack[0] < 1.0:
            raise ValueError(f"CameraDistribution.range_slack must be ≥ 1 (a stated range holds the scene), "
                             f"got {self.range_slack}")

    def to_dict(self) -> dict:
        """JSON-ready (ranges as lists, so a dict read back from JSON compares equal)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def sample_depth_range(self, rng: np.random.Generator) -> tuple[float, float]:
        near = _log_uniform(rng, *self.near_m)
        return near, near * _log_uniform(rng, *self.depth_ratio)

    def sample(self, seed: int | Sequence[int], width_px: int,
               depth_range_m: tuple[float, float] | None = None, max_tries: int = 200) -> FocalStackCamera:
        """One camera for images ``width_px`` wide whose scene spans ``depth_range_m`` (drawn when
        None); the camera's stated ``depth_range_m`` holds that range with ``range_slack`` around it
        (module doc, step 6). Deterministic in ``seed``. See :meth:`sample_scene`."""
        return self.sample_scene(seed, width_px, depth_range_m, max_tries)[0]

    def sample_scene(self, seed: int | Sequence[int], width_px: int,
                     depth_range_m: tuple[float, float] | None = None,
                     max_tries: int = 200) -> tuple[FocalStackCamera, tuple[float, float]]:
        """(camera, scene range in metres): the camera as :meth:`sample` and the depth range the
        scene must fill — ``depth_range_m`` if given, else the drawn one — for which the focus
        distances and the f-number were chosen (a procedural scene is drawn in it, not in the
        camera's wider stated range). A given range so shallow that no camera of the distribution
        blurs it enough is widened (×1.25 on both ends, up to 4 times)."""
        if depth_range_m is None:
            return self._sample(np.random.default_rng(seed), width_px, None, max_tries)
        near, far = (float(x) for x in depth_range_m)
        for k in range(5):
            try:
                return self._sample(np.random.default_rng(seed), width_px, (near, far), max_tries)
            except ValueError:
                if k == 4:
                    raise
                near, far = near / 1.25, far * 1.25

    def _sample(self, rng: np.random.Generator, width_px: int, depth_range_m,
                max_tries: int) -> tuple[FocalStackCamera, tuple[float, float]]:
        draw_range = depth_range_m is None
        if not draw_range:
            near, far = (float(x) for x in depth_range_m)
            if not (0 < near < far):
                raise ValueError(f"depth range must satisfy 0 < near < far, got {depth_range_m}")
        for _ in range(max_tries):
            if draw_range:   # a drawn scene that no lens of the distribution can blur enough is redrawn too
                near, far = self.sample_depth_range(rng)
            f = _log_uniform(rng, *self.focal_length_mm) * 1e-3
            fov = math.radians(rng.uniform(*self.fov_deg))
            pixel = 2.0 * f * math.tan(fov / 2) / width_px
            if near <= 1.5 * f:          # the lens cannot focus that close
                continue
            two = rng.uniform() < self.two_aperture
            if two:
                fd = (1.0 / rng.uniform(1.0 / far, 1.0 / near),) * 2
            else:
                n = int(rng.integers(self.frames[0], self.frames[1] + 1))
                inv_n, inv_f = 1.0 / near, 1.0 / far
                spread = rng.uniform(*self.focus_spread) * (inv_n - inv_f)
                lo = inv_f + rng.uniform(0, (inv_n - inv_f) - spread)
                pos = np.linspace(lo, lo + spread, n) if n > 1 else np.array([lo + spread / 2])
                pos = pos + rng.uniform(-0.25, 0.25, n) * (spread / max(n - 1, 1))
                pos = np.clip(pos, inv_f, inv_n)
                fd = tuple(float(1.0 / p) for p in pos)
                if rng.uniform() < 0.5:
                    fd = tuple(sorted(fd))
                else:
                    fd = tuple(fd[i] for i in rng.permutation(n))
            if min(fd) <= 1.5 * f:
                continue
            target = _log_uniform(rng, *self.sigma_max_px)
            # σ at f/1 over the range ends, then N solves max σ = target (σ ∝ 1/N)
            probe = FocalStackCamera(ThinLens(f, 1.0, pixel, self.psf_scale), fd,
                                     f_numbers=(1.0, 1.0) if two else None, depth_range_m=(near, far))
            s1 = probe.max_sigma_px()
            if two:   # the wide aperture sets the blur; the narrow one is 2–4 stops smaller
                n_wide = s1 / target
                n_narrow = n_wide * 2.0 ** rng.uniform(1.0, 2.0)
                nums = (n_wide, n_narrow)
            else:
                nums = (s1 / target,)
            if not all(self.f_number[0] <= x <= self.f_number[1] for x in nums):
                continue
            # the stated range: the scene's with slack (never closer than the lens can focus)
            stated = (max(near / _log_uniform(rng, *self.range_slack), 1.5 * f),
                      far * _log_uniform(rng, *self.range_slack))
            camera = FocalStackCamera(ThinLens(f, nums[0], pixel, self.psf_scale), fd,
                                      f_numbers=nums if two else None, depth_range_m=stated,
                                      source=f"camera distribution {self.name!r}")
            return camera, (near, far)
        raise ValueError(f"camera distribution {self.name!r}: no camera in {max_tries} draws fits the depth range "
                         f"{near:g}–{far:g} m at {width_px} px")


CAMERA_DISTRIBUTIONS: dict[str, CameraDistribution] = {
    "general": CameraDistribution(),
    # the same with a share of two-aperture pairs (the DSLR indoor set's design)
    "general_two_aperture": CameraDistribution(name="general_two_aperture", two_aperture=0.15),
}


def get_camera_distribution(name: str) -> CameraDistribution:
    try:
        return CAMERA_DISTRIBUTIONS[name]
    except KeyError:
        raise KeyError(f"unknown camera distribution {name!r}; known: {', '.join(sorted(CAMERA_DISTRIBUTIONS))}") \
            from None
