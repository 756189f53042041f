"""Images for int8 calibration and parity: from a paired dataset, an evaluation set, a render folder or
any folder of pictures, resized to the model's input size exactly as the SDK resizes (bilinear)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from toolchain.errors import AvatarToolError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


def _resize(img: np.ndarray | Image.Image, size: int) -> np.ndarray:
    im = img if isinstance(img, Image.Image) else Image.fromarray(img)
    im = im.convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, np.uint8)


def pick_subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    """The fixed random subset (sorted indices) of ``n`` items that ``limit`` keeps."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 0xCA11B]).choice(n, size=limit, replace=False))


def load_images(source: str | Path, size: int, limit: int | None = None, seed: int = 0) -> tuple[np.ndarray, str]:
    """uint8 ``[N, size, size, 3]`` images from ``source`` (at most ``limit``, a fixed random subset) and a
    description of where they came from.

    Raises:
        AvatarToolError: the folder holds no images.
    """
    root = Path(source)
    if not root.is_dir():
        raise AvatarToolError(f"{root}: no such folder (give a paired dataset, an evaluation set or an image folder)")
    if (root / "index.json").is_file():
        from toolchain.data.paired_dataset import PairedDataset
        ds = PairedDataset.open(root)
        imgs = ds.images
        idx = pick_subset(len(imgs), limit, seed)
        return np.stack([_resize(imgs[i], size) for i in idx]) if len(idx) else np.zeros((0, size, size, 3), np.uint8), \
            f"paired dataset {root} ({len(idx)} of {len(imgs)})"
    if (root / "set.json").is_file() or (root / "render.json").is_file():
        try:
            from toolchain.evaluation.evaluate import load_labelled_set
            paths = [p for p, _ in load_labelled_set(root).items]
        except AvatarToolError:
            paths = sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        kind = "evaluation set"
    else:
        base = root / "images" if (root / "images").is_dir() else root
        paths = sorted(p for p in base.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        kind = "image folder"
    if not paths:
        raise AvatarToolError(f"{root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    idx = pick_subset(len(paths), limit, seed)
    out = np.empty((len(idx), size, size, 3), np.uint8)
    for j, i in enumerate(idx):
        with Image.open(paths[i]) as im:
            out[j] = _resize(im, size)
    return out, f"{kind} {root} ({len(idx)} of {len(paths)})"


def labelled_vectors(source: str | Path, limit: int | None = None, seed: int = 0) -> list[dict] | None:
    """The labels of the images :func:`load_images` returns for the same arguments, in the same order; ``None``
    when ``source`` is not a labelled set (a paired dataset or a plain image folder)."""
    root = Path(source)
    if not ((root / "set.json").is_file() or (root / "render.json").is_file()):
        return None
    from toolchain.evaluation.evaluate import load_labelled_set
    try:
        items = load_labelled_set(root).items
    except AvatarToolError:
        return None
    return [dict(items[i][1]) for i in pick_subset(len(items), limit, seed)]


def normalise(images_uint8: np.ndarray, mean, std) -> np.ndarray:
    """uint8 NHWC → normalised float32 NCHW, the estimator's input."""
    x = images_uint8.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
