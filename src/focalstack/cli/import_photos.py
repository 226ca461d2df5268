"""``focalstack import PHOTOS_DIR -o SAMPLE_DIR``: photos (JPEG/PNG/TIFF or camera RAW) of one focal
stack → a sample folder (EXIF, focus sidecar, near→far ordering, alignment, crop); see
focalstack.data.importer."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("import", help="import a folder of photos (one focal stack) as a sample folder",
                       description="Frames are written near → far (frame_00 = nearest focus). Focus distances come "
                                   "from --focus, focus.csv (file,focus_m) / focus.json in PHOTOS_DIR, or EXIF "
                                   "SubjectDistance; without any, placeholders are written with focus_known=false.")
    p.add_argument("photos", help="folder of JPEG/PNG/TIFF photos or of camera RAW files (DNG, CR2/CR3, NEF, ARW, ORF, "
                                  "RAF: decoded as linear light with the camera's white balance and written as "
                                  "16-bit linear frames, camera.json \"encoding\": \"linear\")")
    p.add_argument("-o", "--out", required=True, help="sample folder to write")
    p.add_argument("--focus", type=float, nargs="+", metavar="M", help="focus distances in metres, in file-name order")
    p.add_argument("--focal-length-mm", type=float, help="override EXIF FocalLength")
    p.add_argument("--f-number", type=float, help="override EXIF FNumber")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--pixel-size-um", "--pixel-size", dest="pixel_size_um", type=float,
                   help="pixel pitch in µm at the photos' resolution")
    g.add_argument("--sensor-width-mm", "--sensor-width", dest="sensor_width_mm", type=float,
                   help="sensor width (long side) in mm")
    p.add_argument("--max-size", type=int, help="downscale so the long side is at most this many pixels")
    p.add_argument("--motion", default="affine", help="alignment: affine (default), homography, euclidean, "
                                                      "translation, none")
    p.add_argument("--no-align", action="store_true", help="skip alignment")
    p.add_argument("--order", default="name", choices=["name", "reverse", "auto"],
                   help="frame order when the focus is unknown: name (first file = nearest focus, default), "
                        "reverse, or auto (from focus breathing; unreliable when the camera moves)")
    p.add_argument("--depth-range", type=float, nargs=2, metavar=("NEAR", "FAR"), help="depth range in metres")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data.importer import import_photos
    if args.max_size is not None and args.max_size < 16:
        raise ValueError(f"--max-size must be at least 16, got {args.max_size}")
    rep = import_photos(args.photos, args.out, focus=args.focus, focal_length_mm=args.focal_length_mm,
                        f_number=args.f_number, pixel_size_um=args.pixel_size_um,
                        sensor_width_mm=args.sensor_width_mm, max_size=args.max_size, motion=args.motion,
                        align=not args.no_align, order=args.order,
                        depth_range_m=tuple(args.depth_range) if args.depth_range else None)
    print(rep.summary())
    return 0
