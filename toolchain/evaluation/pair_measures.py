"""What the pairs carry: the two measures that judge the realistic half of each (avatar vector, face) pair
apart from the estimator trained on them.

* **Face-likeness** (:mod:`.face_likeness`): the share of G_real samples, and of the pairs' realistic
  images, in which the SDK's face finder finds a face, between the floor (noise) and the ceiling (held-out
  photos of the domain G_real learned, at G_real's size).
* **Label consistency**: an estimator trained on *labelled* proxy photos (the oracle) reads the pairs'
  realistic images; its agreement with each pair's vector, per parameter, beside its accuracy on the
  held-out photos (the ceiling). A face that shows its avatar's glasses, hair and skin is read as that
  vector; a blur is read as the majority options.

Also the pictures that go with them: the generators' sample grids over training steps (one row per
checkpoint).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..schema import AvatarSchema
from .face_likeness import FaceCounter, at_size, folder_images, noise_images
from .part_census import generator_parts

N_FACE_SAMPLES = 200


def generator_samples(generator_path: str | Path, n: int = N_FACE_SAMPLES, seed: int = 5) -> list[np.ndarray]:
    """``n`` uint8 RGB samples of a generator (truncation 1: its whole distribution, fixed noise)."""
    return list(generator_parts(generator_path, n, seed)[0])


def pair_images(dataset_dir: str | Path, n: int = N_FACE_SAMPLES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(indices, images): up to ``n`` of a paired dataset's realistic images, spread over the whole set."""
    from ..data.paired_dataset import PairedDataset
    ds = PairedDataset.open(dataset_dir)
    idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    return idx, ds.images[idx]


def face_likeness(generator_path: str | Path, dataset_dir: str | Path | None, ceiling_photos: Sequence[np.ndarray],
                  size: int, n: int = N_FACE_SAMPLES, model_for: Callable[[str], Path] | None = None) -> dict[str, Any]:
    """Face shares of G_real's samples, the pairs' faces (unless ``dataset_dir`` is None: no pairs yet), the
    ceiling photos (at ``size``) and noise."""
    with FaceCounter(model_for) as fc:
        g = fc.count(generator_samples(generator_path, n))
        pairs = fc.count(at_size(pair_images(dataset_dir, n)[1], size)) if dataset_dir is not None else None
        ceiling = fc.count(at_size(ceiling_photos[:n], size))
        floor = fc.count(noise_images(n, size))
    out = {"g_real": g.to_json(), "ceiling": ceiling.to_json(), "floor": floor.to_json(), "size": size,
           "upscaled_to": fc.upscale_px, "g_real_vs_ceiling": g.rate / ceiling.rate if ceiling.rate else None}
    if pairs is not None:
        out["pairs"] = pairs.to_json()
        out["pairs_vs_ceiling"] = pairs.rate / ceiling.rate if ceiling.rate else None
    return out


def _agreement(schema: AvatarSchema, pred_c: np.ndarray, pred_d: np.ndarray, cont: np.ndarray, disc: np.ndarray
               ) -> dict[str, Any]:
    """Per discrete parameter the share of equal options; per continuous one the MAE over its range."""
    acc = {p.name: float((pred_d[:, i] == disc[:, i]).mean()) for i, p in enumerate(schema.discrete)}
    nmae = {p.name: float(np.abs(pred_c[:, i] - cont[:, i]).mean()) for i, p in enumerate(schema.continuous)}
    out: dict[str, Any] = {"accuracy": acc, "normalised_mae": nmae}
    if acc:
        out["mean_accuracy"] = float(np.mean(list(acc.values())))
    if nmae:
        out["mean_normalised_mae"] = float(np.mean(list(nmae.values())))
    return out


def label_consistency(oracle_model: str | Path, dataset_dir: str | Path, heldout_dir: str | Path,
                      n: int = 600) -> dict[str, Any]:
    """The oracle's agreement with up to ``n`` pairs' vectors, and its accuracy on the held-out photos."""
    from ..data.paired_dataset import PairedDataset
    from ..estimator.io import load_estimator
    from ..estimator.predict import predict_arrays
    from .evaluate import _load_images, load_labelled_set
    model, _ = load_estimator(oracle_model, "cpu")
    schema, size, dev = model.schema, model.config.input_size, torch.device("cpu")
    ds = PairedDataset.open(dataset_dir)
    idx = np.sort(np.random.default_rng(0).permutation(len(ds))[:n])
    pc, pd, _ = predict_arrays(model, ds.images[idx], size, dev)
    pairs = _agreement(schema, pc, pd, ds.continuous[idx], ds.discrete[idx])
    held = load_labelled_set(heldout_dir)
    images = _load_images([p for p, _ in held.items], size)
    hc, hd = schema.encode([schema.validate(v) for _, v in held.items])
    pc, pd, _ = predict_arrays(model, images, size, dev)
    ceiling = _agreement(schema, pc, pd, hc, hd)
    # the majority option per discrete parameter over the pairs: what a reader of blurs would answer
    majority = {p.name: float(np.bincount(ds.discrete[idx, i], minlength=len(p.options)).max() / len(idx))
                for i, p in enumerate(schema.discrete)}
    out = {"pairs": pairs, "heldout": ceiling, "majority_rate": majority, "n_pairs": int(len(idx)),
           "n_heldout": len(held)}
    if "mean_accuracy" in pairs and ceiling.get("mean_accuracy"):
        out["ratio"] = pairs["mean_accuracy"] / ceiling["mean_accuracy"]
    return out


def steps_strip(samples_dir: str | Path, size: int, per_row: int = 8, max_rows: int = 8) -> np.ndarray | None:
    """One row per saved sample grid (``step_NNNNNN.png``): the first ``per_row`` images, labelled with the
    step; at most ``max_rows`` rows, evenly spread over training, the last always kept."""
    files = sorted(Path(samples_dir).glob("step_*.png"))
    if not files:
        return None
    if len(files) > max_rows:
        keep = np.unique(np.linspace(0, len(files) - 1, max_rows).round().astype(int))
        files = [files[i] for i in keep]
    scale, pad, label_w = max(1, 128 // size), 2, 90
    cell = size * scale
    rows = []
    for f in files:
        grid = np.asarray(Image.open(f).convert("RGB"))
        cw = cell + pad
        strip = grid[pad:pad + cell, :pad + per_row * cw]
        canvas = Image.new("RGB", (label_w + strip.shape[1], cell), (255, 255, 255))
        canvas.paste(Image.fromarray(strip), (label_w, 0))
        step = int(re.search(r"(\d+)", f.stem).group(1))
        ImageDraw.Draw(canvas).text((6, cell // 2 - 6), f"step {step}", fill=(0, 0, 0))
        rows.append(np.asarray(canvas))
    return np.concatenate(rows, 0)
