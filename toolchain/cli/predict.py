"""``avatartool predict``: run the reference SDK on image files and optionally render the avatars."""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

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
                  engine: Optional[str] = None, trust_bundle_engine: bool = False,
                  say: Callable[[str], None] = lambda msg: None, **options: Any) -> list[dict[str, Any]]:
    """Estimate every image with one estimator (the models load once); one dict per image:
    ``{"image", "result" (JSON) | "error", "render"}``.

    Args:
        images: Files, folders or glob patterns (see :func:`expand_inputs`).
        detector: ``short``, ``full`` or ``auto`` (see ``sdk_python.DetectorMode``).
        faces: ``largest``, ``all`` or ``error`` (several faces raise, reported per image).
        engine: With ``render_dir``: the engine spec to render with, instead of the one the bundle records
            (:func:`toolchain.engines.bundle_engine.open_bundle_engine`).
        trust_bundle_engine: Run an external command recorded by a bundle made on another machine.
        say: Where to tell the user which engine command runs.
        options: More ``AvatarEstimatorOptions`` fields.

    Per-image SDK errors (no face, bad file...) are reported in the entry, not raised; errors creating
    the estimator (bundle, backend) are raised.
    """
    images = expand_inputs(images)
    opts = AvatarEstimatorOptions(bundle_path=bundle, backend=backend, precision=precision, detection=detection,
                                  num_threads=num_threads, detector=detector, multiple_faces=faces, **options)
    out: list[dict[str, Any]] = []
    renderer = None
    with AvatarEstimator.create_from_options(opts) as est:
        if render_dir is not None:   # before any image: a missing or untrusted engine is one error, not one per image
            from ..engines.bundle_engine import open_bundle_engine
            renderer = open_bundle_engine(_manifest(bundle, est.schema), engine, trust_bundle_engine, say)
        for img in images:
            entry: dict[str, Any] = {"image": str(img)}
            try:
                res = est.estimate(img)
                entry["result"] = res.to_json()
                entry["backend"] = est.backend_name
                if renderer is not None:
                    entry["render"] = str(_render_side_by_side(renderer, img, res.vector, Path(render_dir)))
            except AvatarSDKError as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["error_type"] = type(exc).__name__
                for attr in ("count", "size_px", "rejected"):
                    if hasattr(exc, attr):
                        entry[attr] = getattr(exc, attr)
            out.append(entry)
    if renderer is not None and hasattr(renderer, "close"):
        renderer.close()
    return out


def _manifest(bundle: str | Path, schema: dict[str, Any]) -> dict[str, Any]:
    """The bundle's manifest; for an exported model or export folder (no manifest), its engine and schema."""
    if Path(bundle).suffix in (".swiftavatar", ".zip"):
        from sdk_python.bundle import open_bundle
        with open_bundle(bundle) as b:
            return b.manifest
    return {"engine": schema["engine"], "schema": schema}


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
