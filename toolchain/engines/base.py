"""The engine interface every avatar engine implements (built-in, plug-in or external command)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..schema import AvatarSchema, AvatarVector

DEFAULT_RENDER_SIZE = 256


@dataclass
class RenderBatch:
    """Rendered images ``uint8 [n, size, size, 3]`` (RGB) and optional part masks ``uint8 [n, size, size]``.

    Mask value ``k`` means ``schema.parts[k]``.
    """

    images: np.ndarray
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class FileBatch:
    """One render request whose results go to files: vector ``k`` to ``image_files[k]`` (and
    ``mask_files[k]``)."""

    vectors: Sequence[Mapping]
    image_files: Sequence[Path]
    mask_files: Sequence[Path]


@dataclass
class FileBatchResult:
    """How one :class:`FileBatch` went: masks written, or the error; and engine restarts on the way."""

    wrote_masks: bool = False
    error: BaseException | None = None
    restarts: list[dict[str, Any]] | None = None


class Engine(ABC):
    """An avatar engine: a parameter schema and a renderer.

    Subclasses provide :attr:`schema` and :meth:`render_valid`; :meth:`render` validates first so a bad
    vector is reported by name instead of crashing deep inside drawing code.
    """

    name: str = "engine"
    supports_masks: bool = False

    @property
    @abstractmethod
    def schema(self) -> AvatarSchema: ...

    def sample(self, n: int, seed: int) -> list[AvatarVector]:
        """``n`` vectors drawn from the schema's priors; the same seed always gives the same vectors."""
        return self.schema.sample(n, seed)

    def _checked(self, vectors: Sequence[Mapping], size: int) -> list[AvatarVector]:
        if not isinstance(size, int) or not 16 <= size <= 4096:
            raise ValueError(f"render size must be an integer between 16 and 4096 pixels, got {size!r}")
        return self.schema.validate_many(vectors)

    def render(self, vectors: Sequence[Mapping], size: int = DEFAULT_RENDER_SIZE, masks: bool = False) -> RenderBatch:
        canonical = self._checked(vectors, size)
        batch = self.render_valid(canonical, size, masks and self.supports_masks)
        if batch.images.shape != (len(canonical), size, size, 3) or batch.images.dtype != np.uint8:
            raise ValueError(f"engine '{self.name}' returned images of shape {batch.images.shape} / {batch.images.dtype}; "
                             f"expected ({len(canonical)}, {size}, {size}, 3) uint8")
        return batch

    def render_to_files(self, vectors: Sequence[Mapping], size: int, masks: bool, image_files: Sequence[Path],
                        mask_files: Sequence[Path]) -> bool:
        """Render ``vectors`` and write image ``k`` to ``image_files[k]`` (and its mask to ``mask_files[k]``
        when ``masks`` and the engine draws them) as PNGs, each atomically (``atomic_io.commit_files``);
        masks land before their images. Returns whether masks were written. Engines whose
        renders arrive as files (external commands) override this to move them instead of re-encoding."""
        from ..atomic_io import save_pngs_atomic
        batch = self.render(vectors, size=size, masks=masks)
        items = list(zip(mask_files, batch.masks)) if batch.masks is not None else []
        save_pngs_atomic(items + list(zip(image_files, batch.images)))
        return batch.masks is not None

    def render_batches_to_files(self, batches: Iterable[FileBatch], size: int,
                                masks: bool) -> Iterator[FileBatchResult]:
        """:meth:`render_to_files` for a stream of batches, one result per batch in order; a failing batch
        does not stop the stream. Engines may overlap writing one batch with rendering the next."""
        for b in batches:
            result = FileBatchResult()
            try:
                result.wrote_masks = self.render_to_files(b.vectors, size, masks, b.image_files, b.mask_files)
            except Exception as exc:  # noqa: BLE001 - the caller reports it per vector
                result.error = exc
            result.restarts = self.pop_restarts()
            yield result

    def pop_restarts(self) -> list[dict[str, Any]]:
        """Engine processes lost (and restarted on the next request) since the last call: dicts with
        ``engine``, ``reason``, ``exit_code`` and ``stderr_tail``. In-process engines have none."""
        return []

    @abstractmethod
    def render_valid(self, vectors: list[AvatarVector], size: int, masks: bool) -> RenderBatch:
        """Render already-validated vectors."""

    def close(self) -> None:
        """Release resources (processes, files). Safe to call twice."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
