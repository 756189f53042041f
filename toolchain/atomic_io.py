"""Writes that never leave a half-written file behind: write to a temporary sibling, then rename."""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; finished outputs get the mode an ordinary open() would give them.
# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_FILE_MODE = 0o666 & ~_read_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=False) + "\n" for r in rows))


def save_png_atomic(path: str | Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def save_figure_atomic(path: str | Path, figure: Any, dpi: int = 90) -> Path:
    """A matplotlib figure written as a PNG atomically, then closed (its memory freed)."""
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=dpi)
    plt.close(figure)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk every complete PNG ends with


def png_complete(path: str | Path) -> bool:
    """Whether ``path`` is a file ending with the PNG end chunk: cheap proof that it was written whole
    (see ``commit_files``)."""
    try:
        with open(path, "rb") as f:
            f.seek(-len(PNG_END), os.SEEK_END)
            return f.read() == PNG_END
    except OSError:  # missing, or shorter than the chunk
        return False


def temp_sibling(path: str | Path) -> Path:
    """A new empty hidden file next to ``path`` (same filesystem, so it can be renamed onto it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    return Path(tmp)


def commit_files(moves: Sequence[tuple[Path, Path]]) -> None:
    """Move finished files (``(source, destination)``, same filesystem) into place, each atomically: a
    crashed process leaves each destination absent or whole. Not synced to disk: per-file fsyncs cost
    more than rendering (journal commits, measured in ``benchmarks/render_overhead.py``), so after a
    power cut a destination may be cut short instead — which is why these are PNGs, and readers that
    resume check their end chunk (``png_complete``). Sources are removed on failure."""
    try:
        for parent in {Path(dst).parent for _, dst in moves}:
            parent.mkdir(parents=True, exist_ok=True)
        for src, dst in moves:
            os.replace(src, dst)
    except BaseException:
        for src, _ in moves:
            Path(src).unlink(missing_ok=True)
        raise


def encode_png(path: str | Path, array: np.ndarray, compress_level: int = 6) -> None:
    """Write ``array`` as a PNG to ``path`` (no sync, no rename: for temporaries that ``commit_files``
    finishes)."""
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG", compress_level=compress_level)


def save_pngs_atomic(items: Sequence[tuple[Path, np.ndarray]], compress_level: int = 6) -> None:
    """Several PNGs, each written atomically (see ``commit_files``: not synced; check ``png_complete``)."""
    moves: list[tuple[Path, Path]] = []
    try:
        for path, array in items:
            tmp = temp_sibling(path)
            moves.append((tmp, Path(path)))
            encode_png(tmp, array, compress_level)
    except BaseException:
        for tmp, _ in moves:
            tmp.unlink(missing_ok=True)
        raise
    commit_files(moves)


def read_jsonl(path: str | Path) -> list[Any]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def check_or_write_manifest(path: str | Path, manifest: dict[str, Any], keys: Sequence[str], noun: str,
                            hidden: Sequence[str] = ()) -> None:
    """Resume guard for output folders: if ``path`` exists, every key in ``keys`` must match ``manifest``
    (values of ``hidden`` keys are too long to print), else refuse; then write ``manifest`` atomically."""
    from .errors import AvatarToolError
    path = Path(path)
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise AvatarToolError(f"{path} is unreadable ({exc}); remove it or choose another --out folder") from None
        for key in keys:
            was = old.get(key) if isinstance(old, dict) else None
            if not isinstance(old, dict) or was != manifest[key]:
                shown = "" if key in hidden else f" ({was!r}, now {manifest[key]!r})"
                raise AvatarToolError(f"{path.parent} already holds a {noun} with a different {key}{shown}; rerun with "
                                      "the same options to resume it, or choose another --out folder")
    atomic_write_json(path, manifest)
