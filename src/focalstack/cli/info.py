"""``focalstack info``: a camera's CoC table and depth of field."""

from __future__ import annotations

from ..optics import FocalStackCamera, PRESETS, format_coc_table, get_preset


def register(sub) -> None:
    p = sub.add_parser("info", help="print a camera's CoC table (pixels) and depth of field")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--camera", help="camera.json (or a sample folder holding one)")
    g.add_argument("--preset", help=f"named camera: {', '.join(PRESETS)}")
    p.add_argument("--depths", type=float, nargs="+", help="depths in metres for the table rows")
    p.set_defaults(func=run)


def load_camera_arg(camera: str | None, preset: str | None) -> FocalStackCamera:
    """A camera from --camera (file or sample folder) or --preset."""
    from pathlib import Path
    if camera:
        path = Path(camera)
        return FocalStackCamera.load(path / "camera.json" if path.is_dir() else path)
    return get_preset(preset or "procedural")


def run(args) -> int:
    cam = load_camera_arg(args.camera, args.preset)
    if not args.camera:
        print(f"preset {args.preset or 'procedural'}: {cam.source}")
    near, far = cam.effective_depth_range_m()
    print(f"frames: {cam.num_frames}, depth range {near:g}–{far:g} m"
          + ("" if cam.depth_range_m else " (default: derived from the focus distances)"))
    print(format_coc_table(cam, args.depths))
    return 0
