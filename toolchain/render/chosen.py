"""Render vectors someone chose — a designer's vector, the SDK's predictions, a sweep of one parameter — rather
than sampled ones (``avatartool render --vectors FILE|- [--sweep PARAM]``).

Accepted input, one record per line (JSON lines) or one JSON document (an array, or a single object):

* a plain vector ``{"hair": "bob", "scale": 0.7}`` (discrete values as option labels or indices);
* a render folder's ``vectors.jsonl`` line ``{"index": 3, "vector": {...}}``;
* ``avatartool predict --json`` output as it is (an array of ``{"image", "result": {"avatars": [{"vector"}]}}``;
  an image whose prediction failed is skipped and said so), or one SDK result (``{"avatars": [...]}``).

Every vector is checked against the engine's schema first; all bad records are named by line number and field
in one error, and nothing is drawn. The output folder (not a render folder: it has no seed stream, so training
refuses it)::

    chosen.json          engine spec, size, source, and per image its label and source line
    vectors.jsonl        {"index", "label", "line", "vector"} (canonical: option indices)
    images/000000.png    the renders
    contact_sheet.png    all of them, captioned with their labels
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..atomic_io import atomic_write_json, atomic_write_jsonl, save_png_atomic, save_pngs_atomic
from ..contact_sheet import contact_sheet
from ..errors import AvatarToolError
from ..schema import AvatarSchema, AvatarVector, ContinuousParam, VectorError
from .folder import image_path

MAX_ERRORS_SHOWN = 10
DEFAULT_SWEEP_STEPS = 7


@dataclass
class ChosenVector:
    label: str              # caption: the record's index, the image it was predicted from, or a sweep value
    line: int               # where it starts in the input (1-based)
    vector: AvatarVector    # canonical (option indices)


# ----- reading -------------------------------------------------------------------------------------------------
def _documents(text: str, name: str) -> list[tuple[int, Any]]:
    """(line, record) for every record in ``text``: a whole JSON document (an array gives one record per element),
    else one JSON value per non-empty line."""
    stripped = text.strip()
    if not stripped:
        raise AvatarToolError(f"{name}: no vectors (the input is empty)")
    try:
        whole = json.loads(stripped)
    except json.JSONDecodeError:
        whole = None
    else:
        if not isinstance(whole, list):
            return [(text[:len(text) - len(text.lstrip())].count("\n") + 1, whole)]
        return _array_elements(text, name)
    out, bad = [], []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((i, json.loads(line)))
        except json.JSONDecodeError as exc:
            bad.append(f"line {i}: not JSON ({exc.msg} at column {exc.colno})")
    if bad:
        raise _refusal(name, bad)
    return out


def _array_elements(text: str, name: str) -> list[tuple[int, Any]]:
    """The elements of a JSON array in ``text`` with the line each starts on (for error messages)."""
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    out = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return out
        value, end = dec.raw_decode(text, pos)
        out.append((text.count("\n", 0, pos) + 1, value))
        pos = end


def _vectors_of(record: Any, line: int, notes: list[str]) -> list[tuple[str, Any]]:
    """(label, raw vector) pairs a record holds (see the module docstring for the shapes)."""
    if isinstance(record, dict) and "result" in record and isinstance(record["result"], dict):
        record = {**record["result"], "image": record.get("image")}
    elif isinstance(record, dict) and "error" in record and "image" in record:
        notes.append(f"line {line}: skipped {record['image']} (its prediction failed: {record['error']})")
        return []
    if isinstance(record, dict) and isinstance(record.get("avatars"), list):
        stem = Path(str(record.get("image") or f"line {line}")).name
        faces = record["avatars"]
        return [((stem if len(faces) == 1 else f"{stem} face {k + 1}"),
                 a.get("vector") if isinstance(a, dict) else a) for k, a in enumerate(faces)]
    if isinstance(record, dict) and isinstance(record.get("vector"), dict):
        return [(f"#{record['index']}" if "index" in record else f"line {line}", record["vector"])]
    return [(f"line {line}", record)]


def read_vectors(source: str | Path, schema: AvatarSchema, stdin=None,
                 notes: list[str] | None = None) -> list[ChosenVector]:
    """Read and check the vectors in ``source`` (a file, or ``-`` for ``stdin``).

    Args:
        notes: Receives a line per record that was skipped on purpose (a failed prediction).
    Raises:
        AvatarToolError: unreadable input, no vectors, or records that are not valid vectors for ``schema``
            (every bad one named by line and field, up to :data:`MAX_ERRORS_SHOWN`).
    """
    notes = notes if notes is not None else []
    if str(source) == "-":
        name, text = "stdin", (stdin or sys.stdin).read()
    else:
        path = Path(source)
        if not path.is_file():
            raise AvatarToolError(f"--vectors {source}: no such file (give a JSON-lines file, or '-' for stdin)")
        name, text = str(path), path.read_text()
    out, bad = [], []
    for line, record in _documents(text, name):
        for label, raw in _vectors_of(record, line, notes):
            try:
                out.append(ChosenVector(label, line, schema.validate(raw)))
            except VectorError as exc:
                field = f" (field '{exc.param}')" if exc.param else ""
                bad.append(f"line {line}{field}: {exc}")
    if bad:
        raise _refusal(name, bad, schema)
    if not out:
        raise AvatarToolError(f"{name}: no vectors to render" + (f" ({'; '.join(notes)})" if notes else ""))
    return out


def _refusal(name: str, bad: list[str], schema: AvatarSchema | None = None) -> AvatarToolError:
    shown = "; ".join(bad[:MAX_ERRORS_SHOWN]) + (f"; and {len(bad) - MAX_ERRORS_SHOWN} more" if len(bad) > MAX_ERRORS_SHOWN else "")
    fix = (f" (`avatartool engines show {schema.engine}` lists its parameters)" if schema is not None else "")
    return AvatarToolError(f"{name}: {len(bad)} record(s) refused, nothing rendered — {shown}. Fix those lines{fix}")


# ----- sweeps ----------------------------------------------------------------------------------------------------
def sweep(schema: AvatarSchema, base: AvatarVector, param: str, steps: int = DEFAULT_SWEEP_STEPS,
          base_label: str = "") -> list[ChosenVector]:
    """``base`` with ``param`` set to each of its options (discrete) or to ``steps`` evenly spaced values over its
    range (continuous); every other parameter stays as in ``base``."""
    try:
        p = schema.param(param)
    except KeyError as exc:
        raise AvatarToolError(f"--sweep {param}: {exc.args[0]}") from None
    if isinstance(p, ContinuousParam):
        if steps < 2:
            raise AvatarToolError(f"--steps {steps}: a sweep of a continuous parameter needs at least 2 steps")
        values: Sequence[Any] = [float(v) for v in np.linspace(p.low, p.high, steps)]
        labels = [f"{param}={v:.3g}" for v in values]
    else:
        values, labels = list(range(len(p.options))), [f"{param}={o}" for o in p.options]
    suffix = f" {base_label}" if base_label else ""   # the swept value first: captions are clipped at the end
    return [ChosenVector(lab + suffix, 0, schema.validate({**base, param: v})) for v, lab in zip(values, labels)]


# ----- drawing -----------------------------------------------------------------------------------------------------
def render_chosen(engine, items: Sequence[ChosenVector], out_dir: str | Path, size: int = 256, batch_size: int = 8,
                  source: str = "", columns: int = 8, progress: Callable[[int, int], None] | None = None) -> Path:
    """Render ``items`` with ``engine`` into ``out_dir`` (layout in the module docstring); returns the contact
    sheet's path."""
    out = Path(out_dir)
    if (out / "render.json").exists():
        raise AvatarToolError(f"{out} is a render folder of sampled vectors: give --out another folder for chosen vectors")
    (out / "images").mkdir(parents=True, exist_ok=True)
    if (out / "chosen.json").exists():   # our own earlier output: drop renders this run does not replace
        for old in (out / "images").glob("*.png"):
            if old.stem.isdigit() and int(old.stem) >= len(items):
                old.unlink()
    images = []
    for k in range(0, len(items), batch_size):
        chunk = items[k:k + batch_size]
        batch = engine.render([c.vector for c in chunk], size=size)
        save_pngs_atomic([(image_path(out, k + j), img) for j, img in enumerate(batch.images)])
        images += list(batch.images)
        if progress:
            progress(len(images), len(items))
    atomic_write_jsonl(out / "vectors.jsonl", ({"index": i, "label": c.label, "line": c.line, "vector": c.vector}
                                               for i, c in enumerate(items)))
    atomic_write_json(out / "chosen.json", {"engine": engine.name, "size": size, "source": source, "n": len(items)})
    sheet = out / "contact_sheet.png"
    save_png_atomic(sheet, np.asarray(contact_sheet(images, labels=[c.label for c in items], columns=columns)))
    return sheet
