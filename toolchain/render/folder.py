"""A render folder on disk: its layout, and the one reader every stage uses (the writer is ``job.py``).

Layout::

    render.json          format version, engine spec, name (as the engine announces it) and working
                         folder (external commands), seed, size, masks, schema, engine restarts
    vectors.jsonl        {"index": i, "vector": {...}} per line, option indices for discrete values
    images/000000.png    RGB renders
    masks/000000.png     part label maps (value k = schema.parts[k]), when the engine draws masks
    contact_sheet.png    the first 64 renders
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic_io import read_jsonl
from ..errors import AvatarToolError
from ..schema import AvatarSchema, AvatarVector

if TYPE_CHECKING:
    from ..engines.base import Engine

MANIFEST = "render.json"
VECTORS = "vectors.jsonl"


def image_path(root: Path, i: int) -> Path:
    return Path(root) / "images" / f"{i:06d}.png"


def mask_path(root: Path, i: int) -> Path:
    return Path(root) / "masks" / f"{i:06d}.png"


def is_render_folder(root: str | Path) -> bool:
    return (Path(root) / MANIFEST).is_file()


@dataclass
class RenderFolder:
    """Read side of a render folder. ``vectors`` holds every sampled vector (the stream may be longer
    than what has been rendered so far); ``rendered(n)`` says whether the first ``n`` are on disk."""

    root: Path
    manifest: dict[str, Any]
    vectors: list[AvatarVector]

    @classmethod
    def open(cls, root: str | Path) -> "RenderFolder":
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise AvatarToolError(f"{root} is not a render folder (no {MANIFEST}); make one with `avatartool render`")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise AvatarToolError(f"{path} is not valid JSON ({exc}); delete the folder and render again") from None
        rows = read_jsonl(root / VECTORS) if (root / VECTORS).is_file() else []
        return cls(root=root, manifest=manifest, vectors=[r["vector"] for r in rows])

    @property
    def engine(self) -> str:
        """The engine spec that rendered it (what ``create_engine`` takes)."""
        return self.manifest["engine"]

    @property
    def engine_name(self) -> str:
        """The engine's own name (an external engine's hello), which models and sets are labelled with."""
        return self.manifest.get("engine_name", self.engine)

    @property
    def engine_cwd(self) -> str | None:
        """Where an external engine's command ran, so it can be started again from anywhere."""
        return self.manifest.get("engine_cwd")

    @property
    def engine_restarts(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("engine_restarts") or [])

    def open_engine(self, timeout_s: float = 60.0) -> "Engine":
        """The engine that rendered this folder, started the way it was (spec and working folder)."""
        from ..engines.registry import create_engine
        return create_engine(self.engine, timeout_s=timeout_s, cwd=self.engine_cwd)

    @property
    def seed(self) -> int:
        return int(self.manifest["seed"])

    @property
    def size(self) -> int:
        return int(self.manifest["size"])

    @property
    def has_masks(self) -> bool:
        return bool(self.manifest.get("masks"))

    @property
    def schema(self) -> AvatarSchema:
        return AvatarSchema.from_json(self.manifest["schema"])

    def image_path(self, i: int) -> Path:
        return image_path(self.root, i)

    def mask_path(self, i: int) -> Path | None:
        p = mask_path(self.root, i)
        return p if self.has_masks and p.is_file() else None

    def rendered(self, n: int) -> bool:
        """Whether the first ``n`` vectors and their images (and masks, if any) are all on disk."""
        return len(self.vectors) >= n and all(
            self.image_path(i).is_file() and (not self.has_masks or mask_path(self.root, i).is_file()) for i in range(n))

    def items(self, n: int | None = None) -> list[tuple[int, Path, AvatarVector]]:
        """``(index, image path, vector)`` for the rendered images among the first ``n`` vectors."""
        count = len(self.vectors) if n is None else min(n, len(self.vectors))
        return [(i, self.image_path(i), self.vectors[i]) for i in range(count) if self.image_path(i).is_file()]

    def require(self, n: int) -> None:
        if not self.rendered(n):
            raise AvatarToolError(f"{self.root} holds fewer than {n} complete renders; rerun `avatartool render` "
                                  "with the same options to finish it")
