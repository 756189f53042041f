"""Evaluation-set folders: photo-proxy sets written here, and users' own labelled photos.

Folder layout::

    set.json             {"format_version": 1, "engine": name, "kind": "photo-proxy" | "user",
                          "role": "eval" | "unlabelled", "seed", "n", "size", "set_id"}
    images/000000.jpg    the photos (user sets: any .png/.jpg/.jpeg/.webp file names)
    labels.jsonl         {"image": "images/000000.jpg", "vector": {...}} per line (role "eval" only);
                         discrete values as option indices (labels are accepted when reading)
    masks/000000.png     part label maps (photo-proxy sets; value k = schema.parts[k])
    contact_sheet.png    the first 64 images

``set_id`` is a stable hash of the labels (engine, image names and canonical vectors), so a reported
score names exactly the set it was measured on.

Label-leak guard: evaluation labels must never reach the training of the full method. Proxy vectors
come from their own stream (``proxy_vector``: the seed is domain-separated from every render /
training seed, and eval and unlabelled sets use different streams too), an unlabelled set holds no
labels file at all, and ``assert_not_eval_set`` refuses any folder that is, is inside or contains a
labelled evaluation set; training code calls it on every data source.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..atomic_io import atomic_write_bytes, atomic_write_jsonl, check_or_write_manifest, save_png_atomic
from ..contact_sheet import write_contact_sheet
from ..engines.painted import PaintedEngine
from ..engines.registry import create_engine
from ..errors import AvatarToolError, LabelLeakError
from ..schema import AvatarSchema, AvatarVector, VectorError
from .photo_style import render_photo_jpeg

SET_FORMAT_VERSION = 1
KINDS = ("photo-proxy", "user")
# "oracle": a labelled *training* set of proxy photos, for the ablation's upper bound (what no user has).
ROLES = ("eval", "unlabelled", "oracle")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
# Domain-separation tags: proxy vectors never share a stream with render/training vectors
# (``schema.sample_one(seed, i)``), and eval and unlabelled proxy sets never share one either.
_VECTOR_TAGS = {"eval": 0x5052_4F58, "unlabelled": 0x5052_4F55, "oracle": 0x5052_4F4F}  # "PROX", "PROU", "PROO"
_STYLE_TAG = 0x5354_594C  # "STYL": per-image style seeds

ProgressFn = Callable[[int, int], None]


def _derived_seed(*entropy: int) -> int:
    """A 63-bit seed derived from ``entropy`` (a different stream for every tuple)."""
    if any(int(e) < 0 for e in entropy):
        raise AvatarToolError(f"seeds must be >= 0, got {entropy[0]}")
    hi, lo = np.random.SeedSequence([int(e) for e in entropy]).generate_state(2, np.uint32)
    return (int(hi) << 31) ^ int(lo)


def proxy_vector(schema: AvatarSchema, seed: int, i: int, role: str = "eval") -> AvatarVector:
    """Vector ``i`` of the proxy stream for ``seed``: ``schema.sample_one`` on a seed derived from
    ``[seed, tag]``, so it never coincides with the render stream ``schema.sample(n, seed)``."""
    if role not in _VECTOR_TAGS:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return schema.sample_one(_derived_seed(seed, _VECTOR_TAGS[role]), i)


def style_seed(seed: int, i: int, role: str = "eval") -> int:
    """The ``render_photo`` seed of image ``i`` in a proxy set."""
    return _derived_seed(seed, _STYLE_TAG, _VECTOR_TAGS[role], i)


def image_name(i: int) -> str:
    return f"images/{i:06d}.jpg"


def mask_name(i: int) -> str:
    return f"masks/{i:06d}.png"


def compute_set_id(engine: str, items: list[tuple[str, AvatarVector]]) -> str:
    """Stable hash of a set's labels: engine name, image names and canonical vectors."""
    payload = json.dumps({"engine": engine, "items": [[img, {k: v[k] for k in sorted(v)}] for img, v in items]},
                         sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


# ----- writing ----------------------------------------------------------------------------------------
@dataclass
class ProxySetSummary:
    out_dir: Path
    n: int
    written: int
    skipped: int
    set_id: str
    role: str


def _check_or_write_set_json(out_dir: Path, meta: dict[str, Any]) -> None:
    if not (out_dir / "set.json").exists() and ((out_dir / "render.json").exists() or (out_dir / "labels.jsonl").exists()):
        raise AvatarToolError(f"{out_dir} already holds other data (render.json or labels.jsonl); choose another --out folder")
    check_or_write_manifest(out_dir / "set.json", meta, ("format_version", "engine", "kind", "role", "seed", "size"), noun="set")


def write_proxy_set(engine_spec: str, out_dir: str | Path, n: int, seed: int, size: int = 256, role: str = "eval",
                    progress: ProgressFn | None = None, sheet_count: int = 64) -> ProxySetSummary:
    """Write ``n`` photo-proxy images (and masks) into ``out_dir``; roles ``"eval"`` and ``"oracle"``
    (a labelled training set for the ablation's upper bound) also write ``labels.jsonl``, role
    ``"unlabelled"`` writes no labels at all.

    Resumable: every file is written atomically, finished images are skipped, and a folder whose
    ``set.json`` was written with other options is refused.
    """
    out_dir = Path(out_dir)
    if n < 1:
        raise AvatarToolError(f"-n must be at least 1, got {n}")
    if role not in ROLES:
        raise AvatarToolError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not isinstance(size, int) or not 32 <= size <= 2048:
        raise AvatarToolError(f"--size must be between 32 and 2048 pixels, got {size!r}")
    if seed < 0:
        raise AvatarToolError(f"--seed must be >= 0, got {seed}")
    engine = create_engine(engine_spec)
    try:
        if not isinstance(engine, PaintedEngine):
            raise AvatarToolError(f"engine '{engine_spec}' does not draw with the built-in face painter; photo-proxy sets "
                                  "exist only for the built-in engines (alter, morph)")
        vectors = [proxy_vector(engine.schema, seed, i, role) for i in range(n)]
        items = [(image_name(i), v) for i, v in enumerate(vectors)]
        set_id = compute_set_id(engine.name, items)
        out_dir.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": SET_FORMAT_VERSION, "engine": engine.name, "kind": "photo-proxy", "role": role,
                "seed": seed, "n": n, "size": size, "set_id": set_id}
        _check_or_write_set_json(out_dir, meta)
        todo = [i for i in range(n) if not ((out_dir / image_name(i)).exists() and (out_dir / mask_name(i)).exists())]
        done = n - len(todo)
        if progress:
            progress(done, n)
        for i in todo:
            jpeg, _, mask = render_photo_jpeg(engine, vectors[i], style_seed(seed, i, role), size)
            save_png_atomic(out_dir / mask_name(i), mask)
            atomic_write_bytes(out_dir / image_name(i), jpeg)
            done += 1
            if progress:
                progress(done, n)
        if role != "unlabelled":
            atomic_write_jsonl(out_dir / "labels.jsonl", ({"image": img, "vector": v} for img, v in items))
        write_contact_sheet(out_dir / "contact_sheet.png", [(i, out_dir / image_name(i)) for i in range(min(n, sheet_count))])
        return ProxySetSummary(out_dir, n, written=len(todo), skipped=n - len(todo), set_id=set_id, role=role)
    finally:
        engine.close()


# ----- reading ----------------------------------------------------------------------------------------
@dataclass
class EvalSet:
    """A labelled evaluation set: ``items`` are ``(image path, canonical vector)`` pairs."""

    root: Path
    engine: str
    set_id: str
    kind: str
    items: list[tuple[Path, AvatarVector]]
    masks: list[Path | None] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)


def _read_set_json(root: Path) -> dict[str, Any]:
    path = root / "set.json"
    if not path.is_file():
        raise AvatarToolError(f"{root} is not an evaluation set: {path.name} is missing (write one with "
                              "'avatartool proxy', or add set.json with engine, kind 'user' and role 'eval' next to your photos)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AvatarToolError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise AvatarToolError(f"{path} must hold a JSON object")
    fmt = meta.get("format_version", SET_FORMAT_VERSION)
    if not isinstance(fmt, int) or fmt > SET_FORMAT_VERSION:
        raise AvatarToolError(f"{path}: format_version {fmt!r} is not supported (this avatartool reads {SET_FORMAT_VERSION}); "
                              "upgrade avatartool")
    if not isinstance(meta.get("engine"), str) or not meta["engine"]:
        raise AvatarToolError(f"{path} must name the engine its vectors belong to (\"engine\": \"alter\")")
    if meta.get("kind", "user") not in KINDS:
        raise AvatarToolError(f"{path}: kind must be one of {', '.join(KINDS)}, got {meta.get('kind')!r}")
    return meta


def load_eval_set(path: str | Path, schema: AvatarSchema | None = None, roles: tuple[str, ...] = ("eval",)) -> EvalSet:
    """Read and check an evaluation set (or, with ``roles=("oracle",)``, a labelled proxy training set).
    ``schema`` defaults to the schema of the engine named in ``set.json``. Raises
    :class:`AvatarToolError` naming the file, line and parameter at fault."""
    root = Path(path)
    if not root.is_dir():
        raise AvatarToolError(f"evaluation set {root} is not a folder")
    meta = _read_set_json(root)
    role = meta.get("role", "eval")
    if role not in roles:
        what = "an unlabelled set" if role == "unlabelled" else f"a set of role {role!r}"
        raise AvatarToolError(f"{root} is {what}, expected role {' or '.join(map(repr, roles))}")
    labels_path = root / "labels.jsonl"
    if not labels_path.is_file():
        raise AvatarToolError(f"{root} has no labels.jsonl: an evaluation set needs one line "
                              '{"image": "images/000000.jpg", "vector": {...}} per photo')
    if schema is None:
        with create_engine(meta["engine"]) as engine:
            schema = engine.schema
    items: list[tuple[Path, AvatarVector]] = []
    names: list[tuple[str, AvatarVector]] = []
    masks: list[Path | None] = []
    with open(labels_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{labels_path} line {lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AvatarToolError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict) or not isinstance(row.get("image"), str) or "vector" not in row:
                raise AvatarToolError(f'{where}: expected {{"image": "<path>", "vector": {{...}}}}')
            image = root / row["image"]
            if image.suffix.lower() not in IMAGE_EXTENSIONS:
                raise AvatarToolError(f"{where}: image {row['image']!r} is not one of {', '.join(IMAGE_EXTENSIONS)}")
            if not image.is_file():
                raise AvatarToolError(f"{where}: image file {row['image']!r} is missing ({image})")
            try:
                vector = schema.validate(row["vector"])
            except VectorError as exc:
                param = f" (parameter '{exc.param}')" if exc.param else ""
                raise AvatarToolError(f"{where}: invalid vector for engine '{schema.engine}'{param}: {exc}") from None
            items.append((image, vector))
            names.append((row["image"], vector))
            mask = root / row["mask"] if isinstance(row.get("mask"), str) else root / "masks" / (Path(row["image"]).stem + ".png")
            masks.append(mask if mask.is_file() else None)
    if not items:
        raise AvatarToolError(f"{labels_path} holds no labelled images")
    set_id = compute_set_id(meta["engine"], names)
    if meta.get("set_id") not in (None, set_id):
        raise AvatarToolError(f"{root}: labels.jsonl does not match set.json's set_id ({meta['set_id']}, labels hash to "
                              f"{set_id}); restore the labels, or delete set_id from set.json if the change is intended")
    return EvalSet(root=root, engine=meta["engine"], set_id=set_id, kind=meta.get("kind", "user"), items=items,
                   masks=masks, meta=meta)


# ----- label-leak guard ---------------------------------------------------------------------------------
def _eval_reason(folder: Path, own_labels_count: bool) -> str | None:
    """Why ``folder`` is a labelled evaluation set, or None. A labels.jsonl counts on its own only
    where ``own_labels_count`` (the folder itself and its contents, not unrelated ancestors)."""
    set_json = folder / "set.json"
    has_labels = (folder / "labels.jsonl").is_file()
    if set_json.is_file():
        try:
            meta = json.loads(set_json.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return "its set.json is unreadable, so it is treated as labelled"
        if isinstance(meta, dict) and meta.get("role", "eval") == "eval":
            return "set.json says role 'eval'"
        if has_labels:
            return "it holds labels.jsonl"
        return None
    if has_labels and own_labels_count:
        return "it holds labels.jsonl"
    return None


def assert_not_eval_set(path: str | Path) -> None:
    """Raise :class:`LabelLeakError` if ``path`` is, is inside, or contains a labelled evaluation set.

    Training code calls this on every data source, so evaluation labels (and photos) can never be
    trained on by accident. Unlabelled proxy sets (role ``"unlabelled"``, no labels.jsonl) pass.
    """
    p = Path(path).resolve()
    start = p if p.is_dir() else p.parent
    hint = ("evaluation sets must never be used for training; use another data folder (an unlabelled proxy set "
            "comes from 'avatartool proxy --unlabelled')")
    for folder in (start, *start.parents):
        reason = _eval_reason(folder, own_labels_count=folder == start)
        if reason:
            where = "is" if folder == start else f"is inside {folder}, which is"
            raise LabelLeakError(f"{path} {where} a labelled evaluation set ({reason}); {hint}")
    if p.is_dir():
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(p, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
            if "set.json" in filenames or "labels.jsonl" in filenames:
                reason = _eval_reason(Path(dirpath), own_labels_count=True)
                if reason and Path(dirpath).resolve() != start:
                    raise LabelLeakError(f"{path} contains the labelled evaluation set {dirpath} ({reason}); {hint}")
