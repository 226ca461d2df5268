"""Checkpoints of a run folder, all written atomically (temporary file + ``os.replace``)::

    RUN_DIR/
      config.json          the TrainConfig
      best.safetensors     model weights chosen by the lowest SELF-SUPERVISED validation loss
      best.json            sidecar: model name + cfg, cameras, depth range, step, metrics, versions,
                           the light the optics blurred (focalstack.render.light)
      last.safetensors     the latest weights (+ last.json)
      state.pt             everything for an exact resume: model, optimiser, scheduler, grad scaler,
                           python/numpy/torch(/CUDA) RNG streams, step, epoch, batches consumed
      metrics.jsonl        one line per validation
      tb/                  TensorBoard events

``load_model(path)`` accepts the run folder (→ best, else last), a ``.safetensors`` file or its
``.json`` sidecar.
"""

from __future__ import annotations

import io
import json
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from .data.io import atomic_write_file
from .render import light

__all__ = ["atomic_write_bytes", "atomic_write_json", "save_weights", "save_state", "load_state",
           "shipped_checkpoint", "shipped_path", "shipped_model_spec", "shipped_is_general", "resolve_init",
           "resolve_checkpoint", "load_model", "git_commit", "weights_digest", "FORMAT"]

FORMAT = "focalstack-checkpoint-v1"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write_file(path, data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o):
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    return str(o)


_GIT: list = []


def git_commit() -> str | None:
    """The git commit of the focalstack source tree, if it is a git checkout with commits."""
    if not _GIT:
        try:
            r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                               capture_output=True, text=True, timeout=5)
            _GIT.append(r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None)
        except (OSError, subprocess.SubprocessError):
            _GIT.append(None)
    return _GIT[0]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the model's state dict (names, dtypes, shapes, bytes) — equal iff bitwise equal."""
    import hashlib
    h = hashlib.sha256()
    for k, v in sorted(_unwrap(model).state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_weights(run_dir: str | Path, tag: str, model: torch.nn.Module, meta: dict) -> Path:
    """``{tag}.safetensors`` + ``{tag}.json`` in ``run_dir``; the sidecar is written last."""
    from safetensors.torch import save as st_save
    from . import __version__
    run_dir = Path(run_dir)
    sd = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    meta = dict(meta)
    meta.setdefault("format", FORMAT)
    meta.setdefault("focalstack_version", __version__)
    meta.setdefault("git_commit", git_commit())
    meta.setdefault("saved_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    meta.setdefault("physics_light", light.PHYSICS_LIGHT)
    meta["weights_sha256"] = weights_digest(model)
    path = run_dir / f"{tag}.safetensors"
    atomic_write_bytes(path, st_save(sd, metadata={"format": FORMAT, "model": json.dumps(meta.get("model", {}))}))
    atomic_write_json(run_dir / f"{tag}.json", meta)
    return path


def save_state(run_dir: str | Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(run_dir) / "state.pt", buf.getvalue())


def load_state(run_dir: str | Path, map_location="cpu") -> dict | None:
    p = Path(run_dir) / "state.pt"
    if not p.is_file():
        return None
    return torch.load(p, map_location=map_location, weights_only=False)


# Checkpoints shipped inside the package (src/focalstack/weights/README.md): "general" — the
# camera-aware DAIF-Net pretrained over the 'general' camera distribution, the default of
# `predict --method net` and of `train --init auto` — and "procedural", the paper-variant DAIF-Net
# trained for the procedural camera only (kept: the published benchmark tables were made with it).
SHIPPED = {"general": "daifnet_general.safetensors", "procedural": "daifnet_procedural.safetensors"}
DEFAULT_SHIPPED = "general"


def shipped_checkpoint(name: str = DEFAULT_SHIPPED) -> Path:
    """A checkpoint shipped inside the package by name (default: the general model)."""
    try:
        return Path(__file__).resolve().parent / "weights" / SHIPPED[name]
    except KeyError:
        raise KeyError(f"unknown shipped checkpoint {name!r}; known: {', '.join(SHIPPED)}") from None


def shipped_path(spec: str | Path | None) -> Path | None:
    """``shipped`` / ``shipped:NAME`` → that shipped checkpoint (KeyError naming the known ones for an
    unknown NAME); anything else → None (a path the caller resolves)."""
    spec = str(spec) if spec is not None else ""
    if spec == "shipped":
        return shipped_checkpoint()
    if spec.startswith("shipped:"):
        return shipped_checkpoint(spec.split(":", 1)[1])
    return None


def model_spec(meta: dict) -> dict:
    """{"name", "cfg"} of a checkpoint from its sidecar ``meta``, cfg holding every option of the
    model: those recorded, those it predates with the values that rebuild it
    (:meth:`ModelConfig.checkpoint_options`), the rest at their defaults; {} if it names no model."""
    spec = dict(meta.get("model") or {})
    if "name" in spec:
        from .models import MODELS, recorded_options
        cfg = dict(spec.get("cfg") or {})
        if spec["name"] in MODELS:
            spec["cfg"] = recorded_options(spec["name"], cfg)
    return spec


def shipped_model_spec() -> dict:
    """{"name", "cfg"} of the shipped checkpoint (from its sidecar)."""
    return model_spec(json.loads(shipped_checkpoint().with_suffix(".json").read_text()))


def shipped_is_general(spec: dict | None = None) -> bool:
    """True when the shipped checkpoint (``spec``: its model spec, read when None) is camera-general
    (the camera-aware DAIF-Net), i.e. a sensible starting point for training on any camera."""
    spec = shipped_model_spec() if spec is None else spec
    return spec.get("name") == "daifnet" and spec.get("cfg", {}).get("variant", "camera") == "camera"


def resolve_init(init: str | None, model: str | None = None, model_cfg: dict | None = None) -> Path | None:
    """``--init``: None / "none" → None (random weights), "shipped" → :func:`shipped_checkpoint`,
    "auto" (the default) → the shipped checkpoint when it is camera-general and ``model`` /
    ``model_cfg`` are its own, else None; otherwise a run folder / .safetensors / .json (must exist)."""
    if init in (None, "", "none"):
        return None
    if init == "auto":
        from .models import full_options
        spec = shipped_model_spec()
        if shipped_is_general(spec) and spec.get("name") == model and spec.get("cfg") == full_options(model, model_cfg):
            return shipped_checkpoint()
        return None
    shipped = shipped_path(init)
    if shipped is not None:
        return shipped
    p = Path(init)
    if not p.exists():
        raise FileNotFoundError(f"{p}: --init checkpoint not found (give none, shipped, a run folder or a .safetensors)")
    return p


def resolve_checkpoint(path: str | Path, tag: str | None = None) -> tuple[Path, Path]:
    """(weights .safetensors, sidecar .json) for a run folder / weights file / sidecar."""
    p = Path(path)
    if p.is_dir():
        tags = [tag] if tag else ["best", "last"]
        for t in tags:
            w = p / f"{t}.safetensors"
            if w.is_file() and (p / f"{t}.json").is_file():
                return w, p / f"{t}.json"
        raise FileNotFoundError(f"{p}: no {' or '.join(t + '.safetensors' for t in tags)} with its .json sidecar")
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint not found")
    side = p.with_suffix(".json")
    if not side.is_file():
        raise FileNotFoundError(f"{side}: the checkpoint's JSON sidecar is missing")
    return p, side


def load_model(path: str | Path, device: str | torch.device = "cpu", tag: str | None = None):
    """Rebuild a trained model. ``path``: run folder (best, else last), ``.safetensors`` or ``.json``.

    Returns (model in eval mode on ``device``, meta dict: "model" {"name","cfg"}, "depth_range_m"
    (the fixed training range or None = per camera), "cameras" (camera dicts seen in training),
    "step", "metrics", "config", "focalstack_version", "git_commit")."""
    from safetensors.torch import load_file
    from .models import build_model
    weights, side = resolve_checkpoint(path, tag)
    meta = json.loads(side.read_text())
    spec = model_spec(meta)
    if "name" not in spec:
        raise ValueError(f"{side}: no model name in the sidecar")
    meta["model"] = spec
    model = build_model(spec["name"], **spec["cfg"])
    sd = load_file(str(weights), device="cpu")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: weights do not match model {spec['name']} {spec.get('cfg')}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    made_in = light.made_in(meta)
    if made_in != light.PHYSICS_LIGHT:   # usable (the optics differ at bright edges only), but not what it learned
        warnings.warn(f"{side}: trained with the optics blurring {made_in} light, this run blurs "
                      f"{light.PHYSICS_LIGHT} light (FOCALSTACK_PHYSICS_LIGHT={made_in} reproduces its training)",
                      stacklevel=2)
    model.to(device).eval()
    return model, meta
