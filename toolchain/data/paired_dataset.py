"""The paired dataset: (avatar vector, image) pairs in append-only, atomically written shards.

Layout::

    index.json          format version, engine schema, metadata, the list of finished shards
    shard-000000.npz    images uint8 [n,H,W,3], continuous float32 [n,C], discrete int64 [n,D],
                        optional latents float32 [n,...]; loaded with allow_pickle=False

A shard becomes part of the dataset only when the index that lists it has been replaced atomically,
so an interrupted writer leaves at worst an unlisted shard file, which the next writer overwrites.
Per-sample provenance (where each pair came from: render index, augmentation, …) lives in the
index next to its shard. Readers need numpy only — no generator or engine code.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..atomic_io import atomic_write_bytes, atomic_write_json
from ..errors import AvatarToolError
from ..schema import AvatarSchema

DATASET_FORMAT_VERSION = 1
INDEX = "index.json"


class DatasetError(AvatarToolError):
    pass


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_shard(schema: AvatarSchema, images: Sequence[np.ndarray], vectors: Sequence[Mapping[str, Any]],
                 latents: Sequence[np.ndarray | None]) -> bytes:
    """One shard's npz bytes: the same arrays whichever process encodes them."""
    cont, disc = schema.encode([schema.validate(v) for v in vectors])
    arrays = {"images": np.stack(images), "continuous": cont, "discrete": disc}
    if any(l is not None for l in latents):
        if any(l is None for l in latents):
            raise DatasetError("within a shard either every sample has a latent or none has")
        arrays["latents"] = np.stack(latents).astype(np.float32)
    bio = io.BytesIO()
    np.savez(bio, **arrays)
    return bio.getvalue()


class PairedDatasetWriter:
    """Append pairs; every ``shard_size`` samples a shard is sealed. Reopening an existing folder
    continues after its last finished shard (``len(writer)`` says how many samples are there)."""

    def __init__(self, root: str | Path, schema: AvatarSchema, meta: Mapping[str, Any] | None = None,
                 shard_size: int = 256):
        self.root = Path(root)
        self.schema = schema
        self.shard_size = shard_size
        self.root.mkdir(parents=True, exist_ok=True)
        index_path = self.root / INDEX
        if index_path.exists():
            self.index = json.loads(index_path.read_text())
            if self.index.get("schema") != schema.to_json():
                raise DatasetError(f"{self.root} holds a dataset for another schema/engine "
                                   f"('{self.index.get('schema', {}).get('engine')}'); use another folder")
        else:
            self.index = {"format_version": DATASET_FORMAT_VERSION, "schema": schema.to_json(), "meta": dict(meta or {}),
                          "shards": []}
            atomic_write_json(index_path, self.index)
        self._buf: dict[str, list] = {"images": [], "vectors": [], "latents": [], "provenance": []}

    def __len__(self) -> int:
        return sum(s["count"] for s in self.index["shards"]) + len(self._buf["images"])

    def add(self, image: np.ndarray, vector: Mapping[str, Any], provenance: Mapping[str, Any] | None = None,
            latent: np.ndarray | None = None) -> None:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DatasetError(f"images must be uint8 HxWx3, got {image.dtype} {image.shape}")
        self._buf["images"].append(image)
        self._buf["vectors"].append(self.schema.validate(vector))
        self._buf["latents"].append(latent)
        self._buf["provenance"].append(dict(provenance or {}))
        if len(self._buf["images"]) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Seal the buffered samples as one shard (no-op when empty)."""
        n = len(self._buf["images"])
        if n == 0:
            return
        data = encode_shard(self.schema, self._buf["images"], self._buf["vectors"], self._buf["latents"])
        self.add_encoded_shard(data, n, self._buf["provenance"])
        self._buf = {"images": [], "vectors": [], "latents": [], "provenance": []}

    def add_encoded_shard(self, data: bytes, count: int, provenance: list[dict[str, Any]]) -> None:
        """Append a shard made by :func:`encode_shard` elsewhere (e.g. by another rank) and write the index."""
        name = f"shard-{len(self.index['shards']):06d}.npz"
        atomic_write_bytes(self.root / name, data)
        self.index["shards"].append({"file": name, "count": count, "sha256": _sha256(data), "provenance": provenance})
        self.save_index()

    def save_index(self) -> None:
        """Write the index atomically: after a shard, or after ``index["meta"]`` changed on its own."""
        atomic_write_json(self.root / INDEX, self.index)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "PairedDatasetWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.flush()


@dataclass
class PairedDataset:
    """Read side: all finished shards, concatenated in memory (tiny and small configs fit easily)."""

    root: Path
    schema: AvatarSchema
    meta: dict[str, Any]
    images: np.ndarray
    continuous: np.ndarray
    discrete: np.ndarray
    provenance: list[dict[str, Any]]
    latents: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def open(cls, root: str | Path, verify: bool = True) -> "PairedDataset":
        root = Path(root)
        index_path = root / INDEX
        if not index_path.is_file():
            raise DatasetError(f"{root} is not a paired dataset (no {INDEX}); build one with "
                               "`avatartool baseline` or `avatartool pairs`")
        index = json.loads(index_path.read_text())
        if index.get("format_version", 0) > DATASET_FORMAT_VERSION:
            raise DatasetError(f"{root} uses dataset format {index['format_version']}, newer than this avatartool "
                               f"({DATASET_FORMAT_VERSION}); upgrade avatartool")
        schema = AvatarSchema.from_json(index["schema"])
        if not index["shards"]:
            raise DatasetError(f"{root} has no finished shards yet")
        parts: dict[str, list[np.ndarray]] = {"images": [], "continuous": [], "discrete": [], "latents": []}
        provenance: list[dict[str, Any]] = []
        for shard in index["shards"]:
            data = (root / shard["file"]).read_bytes()
            if verify and _sha256(data) != shard["sha256"]:
                raise DatasetError(f"{root / shard['file']} does not match its checksum in {INDEX} (corrupt or "
                                   "modified); delete it and its index entry, then rerun the producing command")
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                for key in parts:
                    if key in z.files:
                        parts[key].append(z[key])
            provenance += shard.get("provenance", [{}] * shard["count"])
        latents = np.concatenate(parts["latents"]) if len(parts["latents"]) == len(index["shards"]) else None
        return cls(root=root, schema=schema, meta=index.get("meta", {}), images=np.concatenate(parts["images"]),
                   continuous=np.concatenate(parts["continuous"]), discrete=np.concatenate(parts["discrete"]),
                   provenance=provenance, latents=latents)

    def vectors(self, indices: Sequence[int] | None = None) -> list[dict]:
        idx = range(len(self)) if indices is None else indices
        return self.schema.decode(self.continuous[list(idx)], self.discrete[list(idx)])

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for i in range(len(self)):
            yield self.images[i], self.continuous[i], self.discrete[i]
