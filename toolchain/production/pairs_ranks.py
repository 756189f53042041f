"""Paired data production split over torchrun ranks.

The unit stays the chunk (``cfg.chunk`` sources, one shard). Every rank reads the same folder state
after a barrier and takes every ``world``-th of the chunks still to do; for each chunk it finishes it
writes a *part* under ``parts/``: ``chunk-NNNNNN.npz`` (the shard bytes, absent when every source was
dropped) and then ``chunk-NNNNNN.json`` (count, checksum, provenance, dropped sources), the JSON last
and atomically, so it marks a finished part. Rank 0 merges finished parts into the index in chunk order
(shard + progress record in one atomic index write, as one process does), stops at the first missing
chunk and deletes what it merged.

So a rank that dies loses only the chunk it was working on; rerunning the same command (on any number of
ranks) merges what is finished and computes exactly the missing chunks. As an inversion is bit-identical
whatever shares its batch, and the augmentation is seeded per source, the merged dataset is the one a
single process makes (same arrays, same provenance, same shard boundaries).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .. import distributed
from ..atomic_io import atomic_write_bytes, atomic_write_json
from ..data.paired_dataset import PairedDatasetWriter, encode_shard
from .inversion import InvertedSample, invert_stream

if TYPE_CHECKING:
    from .recolour import RenderColours

PARTS = "parts"


def part_paths(out: Path, chunk: int) -> tuple[Path, Path]:
    stem = out / PARTS / f"chunk-{chunk:06d}"
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def chunk_sources(cfg, chunk: int) -> list[int]:
    return list(range(chunk * cfg.chunk, min(cfg.n, (chunk + 1) * cfg.chunk)))


def merge_parts(cfg, out: Path, writer: PairedDatasetWriter) -> int:
    """Rank 0: append finished parts to the dataset in chunk order, from the first chunk not yet in the
    index up to the first missing one. Returns the number merged. Safe to repeat after a crash anywhere:
    a part whose chunk is already in the index is only deleted, and half-written temp files are removed.
    Call it only while no rank writes parts."""
    wmeta = writer.index["meta"]
    merged = 0
    while wmeta["progress"]["sources_done"] < cfg.n:
        chunk = wmeta["progress"]["sources_done"] // cfg.chunk
        npz, js = part_paths(out, chunk)
        if not js.is_file():
            break
        part = json.loads(js.read_text())
        prog = {"sources_done": chunk_sources(cfg, chunk)[-1] + 1, "dropped": wmeta["progress"]["dropped"] + part["dropped"]}
        wmeta["progress"] = prog
        if part["count"]:
            data = npz.read_bytes()
            if hashlib.sha256(data).hexdigest() != part["sha256"]:
                raise RuntimeError(f"{npz} does not match {js}; delete both and rerun the same command")
            writer.add_encoded_shard(data, part["count"], part["provenance"])  # writes the index with prog
        else:
            writer.save_index()
        npz.unlink(missing_ok=True)
        js.unlink()
        merged += 1
    # leftovers of chunks already in the index (a crash between the index write and the deletes)
    done_chunks = -(-wmeta["progress"]["sources_done"] // cfg.chunk)
    for js in sorted((out / PARTS).glob("chunk-*.json")) if (out / PARTS).is_dir() else []:
        if int(js.stem.split("-")[1]) < done_chunks:
            js.with_suffix(".npz").unlink(missing_ok=True)
            js.unlink()
    # temp files of part writes a killed rank left half done: every caller merges while no rank writes, so no
    # temp file here can still become a part
    for tmp in (out / PARTS).glob(".chunk-*.tmp") if (out / PARTS).is_dir() else []:
        tmp.unlink(missing_ok=True)
    return merged


def _write_part(out: Path, chunk: int, schema, samples: list[tuple], dropped: list[dict]) -> None:
    npz, js = part_paths(out, chunk)
    record: dict[str, Any] = {"chunk": chunk, "count": len(samples), "dropped": dropped,
                              "provenance": [s[2] for s in samples]}
    if samples:
        data = encode_shard(schema, [s[0] for s in samples], [s[1] for s in samples], [s[3] for s in samples])
        atomic_write_bytes(npz, data)
        record["sha256"] = hashlib.sha256(data).hexdigest()
    atomic_write_json(js, record)   # last: the part counts as finished from here on


def produce_on_ranks(cfg, out: Path, writer: PairedDatasetWriter, g_real, g_av, perceptual, init, folder,
                     vectors: list[dict], max_loss: float | None, auto_floor: float | None,
                     progress: Callable[[int, int, dict], None] | None, stop_after_chunks: int | None,
                     colours: RenderColours | None = None) -> None:
    from .pairs import chunk_samples, inversion_items
    dist = distributed.info()
    if dist.is_main:
        merge_parts(cfg, out, writer)   # what an interrupted run finished
    distributed.barrier()
    done = json.loads((out / "index.json").read_text())["meta"]["progress"]["sources_done"]
    n_chunks = -(-cfg.n // cfg.chunk)
    todo = [c for c in range(done // cfg.chunk, n_chunks) if not part_paths(out, c)[1].is_file()]
    mine = todo[dist.rank::dist.world_size]
    distributed.barrier()  # every rank has listed the work before any new part appears
    sources = [i for c in mine for i in chunk_sources(cfg, c)]
    items = inversion_items(cfg, folder, vectors, sources, init, g_av)
    finished: dict[int, InvertedSample] = {}
    pending = list(mine)
    sealed, kept, n_dropped = 0, 0, 0
    stream = invert_stream(g_av, perceptual, items, cfg.inversion)
    try:
        for n_inverted, (i, res) in enumerate(stream, 1):
            finished[i] = res
            if progress and dist.is_main:
                # this rank's share: sources inverted, kept and dropped, chunks sealed
                progress(n_inverted, len(sources), {"kept": kept, "dropped": n_dropped, "sealed": sealed})
            while pending and all(j in finished for j in chunk_sources(cfg, pending[0])):
                c = pending.pop(0)
                src = chunk_sources(cfg, c)
                samples, dropped = chunk_samples(cfg, g_real, src, [finished.pop(j) for j in src],
                                                 [vectors[j] for j in src], max_loss, auto_floor, colours)
                _write_part(out, c, folder.schema, samples, dropped)
                sealed, kept, n_dropped = sealed + 1, kept + len(src) - len(dropped), n_dropped + len(dropped)
            if stop_after_chunks is not None and sealed >= stop_after_chunks:
                break
    finally:
        stream.close()
    distributed.barrier()
    if dist.is_main:
        merge_parts(cfg, out, writer)
    distributed.barrier()
