"""Content fingerprints for build stages: the code a stage runs, the engine it drives, its settings."""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import shlex
from pathlib import Path
from typing import Any, Iterable

REPO_ROOT = Path(__file__).resolve().parents[2]


def fingerprint_of(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _tree_digest(rel: str) -> str:
    root = REPO_ROOT / rel
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    h = hashlib.sha256()
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(REPO_ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def code_version(paths: Iterable[str]) -> dict[str, str]:
    """A digest of the source under each path (``toolchain/render``…): editing it reruns the stage."""
    return {p: _tree_digest(p) for p in paths}


def engine_identity(spec: str) -> dict[str, Any]:
    """What identifies an engine's output beyond its name: the command and the digest of every file the
    command names (an external engine's script), or the source file of a ``module:Class`` engine.
    Built-in engines are covered by the code version of ``toolchain/engines``."""
    ident: dict[str, Any] = {"spec": spec}
    if spec.startswith("cmd:"):
        try:
            tokens = shlex.split(spec[4:])
        except ValueError:
            tokens = spec[4:].split()
        ident["files"] = {t: file_digest(t) for t in tokens if Path(t).is_file()}
    elif ":" in spec:
        module = spec.split(":", 1)[0]
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is not None and found.origin and Path(found.origin).is_file():
            ident["files"] = {found.origin: file_digest(found.origin)}
    return ident
