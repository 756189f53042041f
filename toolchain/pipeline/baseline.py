"""The paper's Baseline: train the estimator on engine renders directly (no domain bridging).

Stages, each resumable: ``renders/`` (render.job) → ``dataset/`` (paired dataset of render + vector)
→ ``train/`` (estimator). The estimator it produces shows the domain gap when evaluated on photos.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..data.paired_dataset import PairedDatasetWriter
from ..estimator.train import TrainConfig, train
from ..provenance import render_folder_origin
from ..render.folder import RenderFolder
from ..render.job import DEFAULT_BATCH_SIZE, DEFAULT_ENGINE_TIMEOUT_S, DEFAULT_WORKERS, RenderConfig, render_folder


def renders_to_dataset(render_dir: str | Path, dataset_dir: str | Path, n: int, shard_size: int = 256,
                       progress: Callable[[int, int], None] | None = None) -> int:
    """Copy the first ``n`` renders of a render folder into a paired dataset (resuming). Returns its size."""
    folder = RenderFolder.open(render_dir)
    folder.require(n)
    vectors = folder.vectors[:n]
    meta = {"kind": "engine-renders", "engine": folder.engine_name, "sources": [str(folder.root.resolve())],
            "render_seed": folder.seed, "size": folder.size, "made_from": [render_folder_origin(folder.root, n)]}
    writer = PairedDatasetWriter(dataset_dir, folder.schema, meta=meta, shard_size=shard_size)
    start = len(writer)
    for i in range(start, len(vectors)):
        with Image.open(folder.image_path(i)) as im:
            img = np.asarray(im.convert("RGB"))
        writer.add(img, vectors[i], provenance={"render_index": i})
        if progress:
            progress(i + 1, len(vectors))
    writer.close()
    return len(writer)


def run_baseline(engine: str, n: int, out_dir: str | Path, cfg: TrainConfig, seed: int = 0, render_size: int = 256,
                 workers: int = DEFAULT_WORKERS, backbone_weights: str | Path | None = None,
                 progress: Callable[..., None] | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 engine_timeout: float = DEFAULT_ENGINE_TIMEOUT_S) -> dict[str, Any]:
    """Render ``n`` vectors, pair them into a dataset, train. ``progress(phase, done, total, info=None)``.
    Engine restarts during rendering are warned about as they happen and counted in the summary
    (``render_restarts``)."""
    out_dir = Path(out_dir)
    stage = (lambda name: (lambda done, total, *_: progress(name, done, total))) if progress else (lambda name: None)
    rendered = render_folder(RenderConfig(engine=engine, n=n, seed=seed, size=render_size, workers=workers, masks=False,
                                          batch_size=batch_size, timeout_s=engine_timeout),
                             out_dir / "renders", progress=stage("render"))
    renders_to_dataset(out_dir / "renders", out_dir / "dataset", n, progress=stage("dataset"))
    summary = train([out_dir / "dataset"], out_dir / "train", cfg, backbone_weights=backbone_weights, progress=progress)
    return {**summary, "render_restarts": len(rendered.restarts)}
