"""``avatartool predict``: run the reference SDK on image files and optionally render the avatars."""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from sdk_python import AvatarEstimator, AvatarEstimatorOptions, AvatarSDKError
from toolchain.errors import AvatarToolError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def expand_inputs(items: Sequence[str | Path]) -> list[Path]:
    """Files, folders (their images, sorted, not recursive) and glob patterns (``**`` recurses) -> files.

    A path that does not exist and is no pattern stays in the list (its entry reports "no such
    file"); a pattern or folder that holds no image is an error, since nothing would be estimated.

    Raises:
        AvatarToolError: a folder or pattern without images.
    """
    out: list[Path] = []
    for item in items:
        text = str(item)
        p = Path(text)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise AvatarToolError(f"{p}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out += found
        elif not p.exists() and glob.has_magic(text):
            found = sorted(Path(f) for f in glob.glob(text, recursive=True) if Path(f).is_file())
            if not found:
                raise AvatarToolError(f"{text}: no file matches this pattern")
            out += found
        else:
            out.append(p)
    return out


def predict_files(bundle: str | Path, images: Sequence[str | Path], backend: str = "auto", precision: str = "auto",
                  detection: str = "mediapipe", render_dir: Optional[str | Path] = None,
                  num_threads: int = 2, detector: str = "auto", faces: str = "largest",
                  **options: Any) -> list[dict[str, Any]]:
    """Estimate every image with one estimator (the models load once); one dict per image:
    ``{"image", "result" (JSON) | "error", "render"}``.

    Args:
        images: Files, folders or glob patterns (see :func:`expand_inputs`).
        detector: ``short``, ``full`` or ``auto`` (see ``sdk_python.DetectorMode``).
        faces: ``largest``, ``all`` or ``error`` (several faces raise, reported per image).
        options: More ``AvatarEstimatorOptions`` fields.

    Per-image SDK errors (no face, bad file...) are reported in the entry, not raised; errors creating
    the estimator (bundle, backend) are raised.
    """
    images = expand_inputs(images)
    opts = AvatarEstimatorOptions(bundle_path=bundle, backend=backend, precision=precision, detection=detection,
                                  num_threads=num_threads, detector=detector, multiple_faces=faces, **options)
    out: list[dict[str, Any]] = []
    engine = None
    with AvatarEstimator.create_from_options(opts) as est:
        for img in images:
            entry: dict[str, Any] = {"image": str(img)}
            try:
                res = est.estimate(img)
                entry["result"] = res.to_json()
                entry["backend"] = est.backend_name
                if render_dir is not None:
                    if engine is None:
                        from ..engines.registry import create_engine
                        engine = create_engine(est.schema["engine"])
                    entry["render"] = str(_render_side_by_side(engine, img, res.vector, Path(render_dir)))
            except AvatarSDKError as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["error_type"] = type(exc).__name__
                for attr in ("count", "size_px", "rejected"):
                    if hasattr(exc, attr):
                        entry[attr] = getattr(exc, attr)
            out.append(entry)
    if engine is not None and hasattr(engine, "close"):
        engine.close()
    return out


def _render_side_by_side(engine, image_path: str | Path, vector: dict, out_dir: Path) -> Path:
    from sdk_python import load_image
    rgb = load_image(image_path)
    size = 256
    avatar = engine.render([vector], size=size).images[0]
    h, w = rgb.shape[:2]
    photo = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * size / h)), size), Image.BILINEAR))
    canvas = np.full((size, photo.shape[1] + size, 3), 255, np.uint8)
    canvas[:, :photo.shape[1]] = photo
    canvas[:, photo.shape[1]:] = avatar
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{Path(image_path).stem}_avatar.png"
    Image.fromarray(canvas).save(path)
    return path
