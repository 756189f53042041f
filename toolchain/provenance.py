"""Provenance chains: what an artefact was made from, by content and by real path.

Every artefact carries an *origin* record (plain JSON, so it travels in ``index.json``, ``run.json``,
``estimator.pt`` and bundle manifests)::

    {"kind": "render-folder" | "proxy-set" | "user-set" | "paired-dataset" | "generator" | "estimator",
     "path": "/real/path",                 # Path.resolve() at the time it was recorded
     "id": "sha256:…" | None,              # content id (set id, shard digests), when there is one
     "streams": [{"engine", "stream", "seed", "start", "stop"}],   # vector streams it drew labels from
     "made_from": [origin, …]}             # the full chain, recursively

A vector stream is named by engine, stream kind (``render``: ``schema.sample_one(seed, i)``; ``proxy-eval``
etc.: ``proxy_vector``) and seed; ``[start, stop)`` is the index range used. Streams are prefix-stable,
so two artefacts share labels exactly when their ranges on the same stream overlap.

:func:`find_leak` compares a model's chain with an evaluation set's chain three ways: real-path
ancestry (``Path.is_relative_to`` on resolved paths, never a string prefix), content ids, and vector
streams. :func:`content_leak` catches what no record describes (labels copied out of the training
renders into a hand-made set) by regenerating the training streams and matching the set's vectors.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

Origin = dict[str, Any]

RENDER_STREAM = "render"
MAX_REGENERATED = 200_000   # content check: at most this many training vectors are re-sampled


def real(path: str | Path) -> str:
    return str(Path(path).resolve())


def stream(engine: str, kind: str, seed: int, start: int, stop: int) -> dict[str, Any]:
    return {"engine": engine, "stream": kind, "seed": int(seed), "start": int(start), "stop": int(stop)}


def origin(kind: str, path: str | Path, id: str | None = None, streams: Sequence[Mapping] = (),
           made_from: Sequence[Origin] = ()) -> Origin:
    return {"kind": kind, "path": real(path), "id": id, "streams": [dict(s) for s in streams],
            "made_from": [dict(m) for m in made_from]}


# ----- origins of the on-disk formats -------------------------------------------------------------
def render_folder_origin(root: str | Path, n: int | None = None) -> Origin:
    """A render folder's origin; ``n`` limits the stream range to the first ``n`` vectors (what a
    dataset took from it), else every vector the folder lists."""
    from .render.folder import RenderFolder
    folder = RenderFolder.open(root)
    stop = len(folder.vectors) if n is None else min(int(n), len(folder.vectors))
    name = folder.engine_name
    # no content id: a render folder's labels are its stream range, compared range by range
    return origin("render-folder", folder.root, streams=[stream(name, RENDER_STREAM, folder.seed, 0, stop)],
                  made_from=folder.manifest.get("made_from", []))


def set_origin(root: str | Path, meta: Mapping[str, Any], set_id: str | None, n: int) -> Origin:
    """An evaluation / proxy set (``set.json`` + labels). Photo-proxy sets name their vector stream;
    a user set may list what it was made from in ``set.json`` (``"made_from": [origin, …]``)."""
    streams = []
    if meta.get("kind") == "photo-proxy" and "seed" in meta:
        streams.append(stream(meta["engine"], f"proxy-{meta.get('role', 'eval')}", meta["seed"], 0, meta.get("n", n)))
    kind = "proxy-set" if meta.get("kind") == "photo-proxy" else "user-set"
    return origin(kind, root, id=set_id, streams=streams, made_from=_origins(meta.get("made_from", [])))


def dataset_origin(root: str | Path) -> Origin:
    """A paired dataset's origin: its shards' digests as content id, and what its index records it was
    made from (datasets written before provenance: rebuilt from the ``sources`` paths still on disk)."""
    index = json.loads((Path(root) / "index.json").read_text())
    meta = index.get("meta", {})
    digest = hashlib.sha256("".join(s.get("sha256", "") for s in index.get("shards", [])).encode()).hexdigest()[:16]
    made_from = meta.get("made_from")
    if made_from is None:   # legacy: paths only, plus the render seed when one was recorded
        made_from = [o for o in (path_origin(s) for s in meta.get("sources", [])) if o is not None]
    return origin("paired-dataset", root, id=f"sha256:{digest}", made_from=_origins(made_from))


def generator_origin(path: str | Path) -> Origin:
    """A generator file; what it was trained on comes from the ``run.json`` beside it, when there is one."""
    path = Path(path)
    run = path.parent / "run.json"
    made_from: list[Origin] = []
    if run.is_file():
        meta = json.loads(run.read_text())
        if isinstance(meta.get("made_from"), list):
            made_from = meta["made_from"]
        else:   # legacy run.json: the data folder's path, and the generator it was finetuned from
            made_from = [o for o in (path_origin(meta.get("data")), path_origin(meta.get("real_generator"))) if o]
    return origin("generator", path, made_from=_origins(made_from))


def path_origin(path: str | Path | None) -> Origin | None:
    """The origin of whatever artefact lives at ``path`` (None when there is nothing there)."""
    if not path:
        return None
    p = Path(path)
    if (p / "index.json").is_file():
        return dataset_origin(p)
    if (p / "set.json").is_file():
        meta = json.loads((p / "set.json").read_text(encoding="utf-8"))
        meta = meta if isinstance(meta, dict) else {}
        return set_origin(p, meta, meta.get("set_id"), int(meta.get("n", 0)))
    if (p / "render.json").is_file():
        return render_folder_origin(p)
    if p.is_file() and p.suffix in (".safetensors", ".pt", ".pth"):
        return generator_origin(p)
    return origin("folder" if p.is_dir() else "file", p) if p.exists() else None


def estimator_origin(model_path: str | Path, meta: Mapping[str, Any]) -> Origin:
    """A trained estimator's chain: the one ``train`` recorded, or (older files) rebuilt from ``sources``."""
    rec = meta.get("provenance")
    known = {o["path"] for o in walk([rec])} if isinstance(rec, dict) else set()
    extra = [o for o in (path_origin(s) for s in meta.get("sources", []) if real(s) not in known) if o is not None]
    if isinstance(rec, dict):
        return {**rec, "made_from": [*rec.get("made_from", []), *extra]}
    return origin("estimator", model_path, made_from=extra)


def _origins(items: Iterable[Any]) -> list[Origin]:
    return [dict(o) for o in items if isinstance(o, Mapping) and "path" in o]


# ----- comparing chains -----------------------------------------------------------------------------
def walk(roots: Iterable[Origin]) -> Iterator[Origin]:
    """Every origin in the chains under ``roots`` (each root first, then what it was made from)."""
    todo = list(roots)
    while todo:
        o = todo.pop(0)
        yield o
        todo.extend(o.get("made_from", []))


def _describe(o: Origin) -> str:
    return f"{o.get('kind', 'artefact')} {o.get('path')}"


def _path_relation(trained: Path, evaluated: Path) -> str | None:
    if evaluated == trained:
        return "is"
    if evaluated.is_relative_to(trained):
        return "is inside"
    if trained.is_relative_to(evaluated):
        return "contains"
    return None


def _overlap(a: Mapping, b: Mapping) -> tuple[int, int] | None:
    if (a["engine"], a["stream"], a["seed"]) != (b["engine"], b["stream"], b["seed"]):
        return None
    lo, hi = max(a["start"], b["start"]), min(a["stop"], b["stop"])
    return (lo, hi) if lo < hi else None


def find_leak(trained: Sequence[Origin], evaluated: Origin) -> str | None:
    """Why evaluating a model made from ``trained`` on ``evaluated`` would leak, or None.

    Every artefact in the model's chain is compared with every artefact in the set's chain (the set
    itself and what it was made from): same or nested real path, same content id, or an overlapping
    range of the same vector stream.
    """
    train_nodes = list(walk(trained))
    for e in walk([evaluated]):
        for t in train_nodes:
            rel = _path_relation(Path(t["path"]), Path(e["path"]))
            if rel:
                what = ("the evaluation set" if e is evaluated
                        else f"{_describe(e)}, which the evaluation set was made from,")
                return f"{what} {rel} {_describe(t)}, which the model was trained from"
            if t.get("id") and t.get("id") == e.get("id"):
                return (f"{_describe(e)} has the same content ({e['id']}) as {_describe(t)}, "
                        "which the model was trained from")
            for ts in t.get("streams", []):
                for es in e.get("streams", []):
                    ov = _overlap(ts, es)
                    if ov:
                        return (f"{_describe(e)} uses vectors {ov[0]}..{ov[1] - 1} of the {es['stream']} stream "
                                f"(engine {es['engine']}, seed {es['seed']}), "
                                f"which {_describe(t)} trained the model on")
    return None


def _key(vector: Mapping[str, Any]) -> str:
    return json.dumps({k: (round(v, 9) if isinstance(v, float) else v) for k, v in sorted(vector.items())},
                      separators=(",", ":"))


CONTROL_SEED = 0x434F_4E54_524F_4C   # "CONTROL": a stream no artefact uses, for the chance rate


def content_leak(trained: Sequence[Origin], schema, vectors: Sequence[Mapping[str, Any]],
                 min_fraction: float = 0.5) -> str | None:
    """Why ``vectors`` (an evaluation set's labels) look copied from the model's training streams, or None.

    Re-samples the render / proxy streams in the model's chain and counts the set's vectors found among
    them. Small all-discrete schemas match by chance, so the same count on a control sample from an
    unused stream gives the chance rate ``c``; the set leaks when its rate is at least
    ``min_fraction + (1 - min_fraction) * c`` (half-way from chance to all, by default) and at least
    0.25 above chance. When almost everything matches by chance the content cannot tell, and only the
    recorded chain (:func:`find_leak`) decides.
    """
    if not vectors:
        return None
    from .proxy.eval_set import proxy_vector
    seen: set[str] = set()
    budget = MAX_REGENERATED
    for t in walk(trained):
        for s in t.get("streams", []):
            stop = min(s["stop"], s["start"] + max(budget, 0))
            budget -= stop - s["start"]
            for i in range(s["start"], stop):
                if s["stream"] == RENDER_STREAM:
                    seen.add(_key(schema.sample_one(s["seed"], i)))
                elif s["stream"].startswith("proxy-"):
                    seen.add(_key(proxy_vector(schema, s["seed"], i, s["stream"].removeprefix("proxy-"))))
    if not seen:
        return None
    hits = sum(_key(v) in seen for v in vectors)
    rate = hits / len(vectors)
    control = schema.sample(max(200, len(vectors)), CONTROL_SEED)
    chance = sum(_key(v) in seen for v in control) / len(control)
    if rate >= min_fraction + (1 - min_fraction) * chance and rate - chance >= 0.25:
        return (f"{hits} of its {len(vectors)} labelled vectors are vectors the model was trained on "
                f"(by chance about {chance:.0%} would be)")
    return None
