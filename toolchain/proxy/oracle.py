"""The oracle's training set: *labelled* photo-proxy faces, what no user has.

An estimator trained on them bounds from above what the method can reach on the photo proxy (the
ablation's "oracle" row), and, reading the pairs' realistic faces, tells how well each face carries its
avatar vector (the pair measures' label consistency). Its photos come from a seed stream of their own
(role ``"oracle"``; :data:`ORACLE_SEED_OFFSET` away from the held-out set's seed), so they never share a
vector with the held-out set.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

ORACLE_SEED_OFFSET = 7_919   # the oracle's photos never share a seed with the held-out set's


def oracle_dataset(engine: str, root: str | Path, n: int, seed: int, size: int,
                   progress: Optional[Callable[[int, int], None]] = None) -> int:
    """Draw ``n`` labelled proxy photos into ``root/photos`` and write them as a paired dataset in
    ``root/dataset`` (both resumable); returns the dataset's size."""
    from ..data.paired_dataset import PairedDatasetWriter
    from ..engines.registry import create_engine
    from .eval_set import load_eval_set, write_proxy_set
    root = Path(root)
    write_proxy_set(engine, root / "photos", n=n, seed=seed, size=size, role="oracle", progress=progress)
    photos = load_eval_set(root / "photos", roles=("oracle",))
    with create_engine(engine) as eng:
        schema = eng.schema
    # no "sources": the training loop refuses labelled photo folders as sources (rightly, for users); the
    # oracle is the one deliberate exception, so it is named under its own key
    writer = PairedDatasetWriter(root / "dataset", schema, meta={"kind": "oracle-photo-proxy",
                                                                   "oracle_photos": str((root / "photos").resolve())})
    for i in range(len(writer), len(photos.items)):
        path, vector = photos.items[i]
        with Image.open(path) as im:
            writer.add(np.asarray(im.convert("RGB")), vector, provenance={"oracle_photo": path.name})
    writer.close()
    return len(writer)
