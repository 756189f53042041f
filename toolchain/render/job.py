"""Render a set of sampled avatar vectors into a folder, in worker processes and batches, resumably.
The folder layout and its reader are in ``folder.py``.

Every file is written atomically, so an interrupted or failed run leaves only whole files, and a
rerun with the same options renders only what is missing. Images and masks are renamed into place
without an fsync each (that cost more than many engines take to draw); a rerun checks that each
PNG ends with its end chunk, so one cut short by a power cut is rendered again.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..atomic_io import atomic_write_json, atomic_write_jsonl, check_or_write_manifest, png_complete, read_jsonl
from ..contact_sheet import write_contact_sheet
from ..engines.base import Engine, FileBatch, FileBatchResult
from ..engines.registry import EXTERNAL_PREFIX, EngineSpec
from ..errors import AvatarToolError, EngineError
from ..procguard import FolderLock, start_parent_watchdog
from ..schema import AvatarVector
from .folder import MANIFEST, VECTORS, image_path, mask_path

RENDER_FORMAT_VERSION = 1
ProgressFn = Callable[[int, int], None]

# The defaults of every command that renders (CLI option group, build config): one place.
DEFAULT_WORKERS = 1
DEFAULT_BATCH_SIZE = 8
DEFAULT_ENGINE_TIMEOUT_S = 60.0


class EngineRestartWarning(UserWarning):
    """An engine process was lost mid-run and restarted (the run went on)."""


@dataclass
class RenderConfig:
    engine: str
    n: int
    seed: int = 0
    size: int = 256
    workers: int = DEFAULT_WORKERS
    batch_size: int = DEFAULT_BATCH_SIZE
    masks: bool = True
    timeout_s: float = DEFAULT_ENGINE_TIMEOUT_S
    sheet_count: int = 64


@dataclass(frozen=True)
class EngineOptions:
    """How a command drives its engine when it renders: the options every rendering command shares."""
    workers: int = DEFAULT_WORKERS
    batch_size: int = DEFAULT_BATCH_SIZE
    timeout_s: float = DEFAULT_ENGINE_TIMEOUT_S

    def config(self, engine: str, n: int, **kw: Any) -> RenderConfig:
        return RenderConfig(engine=engine, n=n, workers=self.workers, batch_size=self.batch_size,
                            timeout_s=self.timeout_s, **kw)


@dataclass
class RenderSummary:
    out_dir: Path
    n: int
    rendered: int
    skipped: int
    has_masks: bool
    failures: list[EngineError] = field(default_factory=list)
    restarts: list[dict[str, Any]] = field(default_factory=list)  # engine processes lost and restarted


# ----- worker side -----------------------------------------------------------------------------
_worker_engine: Engine | None = None
_worker_lock_fd: int | None = None  # held for the worker's lifetime: the folder stays locked while it lives


def _init_worker(spec: EngineSpec, parent_pid: int, lock_path: str) -> None:
    global _worker_engine, _worker_lock_fd
    start_parent_watchdog(parent_pid)  # a worker never outlives the run that started it
    _worker_lock_fd = FolderLock.join(lock_path)
    _worker_engine = spec.create()


def _file_batch(out_dir: Path, indices: list[int], vectors: list[AvatarVector]) -> FileBatch:
    return FileBatch(vectors, [image_path(out_dir, i) for i in indices], [mask_path(out_dir, i) for i in indices])


def _render_chunk(engine: Engine, out_dir: Path, chunk: list[list[int]], vectors: list[list[AvatarVector]], size: int,
                  masks: bool) -> Iterator[FileBatchResult]:
    """Render and write a run of batches where the engine lives (file work is spread over the workers
    too, and an engine may overlap it with drawing the next batch). Failures come back as results,
    never raised, so that the engine restarts seen on the way travel with them."""
    batches = (_file_batch(out_dir, idx, vecs) for idx, vecs in zip(chunk, vectors))
    return engine.render_batches_to_files(batches, size, masks)


def _render_in_worker(out_dir: Path, chunk: list[list[int]], vectors: list[list[AvatarVector]], size: int,
                      masks: bool) -> list[FileBatchResult]:
    assert _worker_engine is not None
    return list(_render_chunk(_worker_engine, out_dir, chunk, vectors, size, masks))


# ----- main side -------------------------------------------------------------------------------
def describe_restart(r: dict[str, Any]) -> str:
    """One line for a recorded engine restart."""
    indices = r.get("indices") or []
    where = (f"vector #{indices[0]}" if len(indices) == 1 else
             f"one of vectors #{indices[0]}..#{indices[-1]}" if indices else "start-up")
    tail = " | ".join(r.get("stderr_tail") or []) or "(nothing on stderr)"
    return (f"engine '{r.get('engine')}' was restarted after {r.get('reason')} while rendering {where}; "
            f"last stderr: {tail}")


def _check_or_write_manifest(out_dir: Path, cfg: RenderConfig, engine: Engine) -> None:
    schema = engine.schema  # first: an external engine names itself in its hello, which this starts
    manifest = {
        "format_version": RENDER_FORMAT_VERSION,
        "engine": cfg.engine,
        "engine_name": engine.name,
        "seed": cfg.seed,
        "size": cfg.size,
        "masks": cfg.masks and engine.supports_masks,
        "schema": schema.to_json(),
        # An external command may name files relative to where it was started: eval re-opens it there.
        "engine_cwd": os.getcwd() if cfg.engine.strip().startswith(EXTERNAL_PREFIX) else None,
        "engine_restarts": _recorded_restarts(out_dir),
    }
    check_or_write_manifest(out_dir / MANIFEST, manifest, ("engine", "seed", "size", "masks", "schema"),
                            noun="render", hidden=("schema",))


def _recorded_restarts(out_dir: Path) -> list[dict[str, Any]]:
    try:
        old = json.loads((out_dir / MANIFEST).read_text())
        return list(old.get("engine_restarts") or []) if isinstance(old, dict) else []
    except (OSError, ValueError):
        return []


def _record_restarts(out_dir: Path, restarts: list[dict[str, Any]]) -> None:
    """Append this run's engine restarts to ``render.json`` (earlier runs' stay)."""
    if not restarts:
        return
    manifest = json.loads((out_dir / MANIFEST).read_text())
    manifest["engine_restarts"] = list(manifest.get("engine_restarts") or []) + restarts
    atomic_write_json(out_dir / MANIFEST, manifest)


def _write_vectors(out_dir: Path, engine: Engine, cfg: RenderConfig) -> list[AvatarVector]:
    path = out_dir / VECTORS
    existing = len(read_jsonl(path)) if path.exists() else 0
    # Prefix-stable sampling: the first n of a longer stream are the same vectors, so keeping the
    # longer list never contradicts images already on disk.
    vectors = engine.sample(max(cfg.n, existing), cfg.seed)
    atomic_write_jsonl(path, ({"index": i, "vector": v} for i, v in enumerate(vectors)))
    return vectors[: cfg.n]


def _is_done(out_dir: Path, i: int, masks: bool) -> bool:
    """Image (and mask) on disk and whole: renders are not fsynced one by one (see ``commit_files``), so a
    file cut short by a power cut counts as missing and is rendered again."""
    return png_complete(image_path(out_dir, i)) and (not masks or png_complete(mask_path(out_dir, i)))


def _clear_leftovers(out_dir: Path) -> None:
    """Scratch folders and temporaries of a run that was killed (we hold the folder's lock, so nothing
    else is writing them)."""
    for sub in ("images", "masks"):
        d = out_dir / sub
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if p.name.startswith(".engine-") and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file():
                p.unlink(missing_ok=True)


def _as_indexed_error(exc: BaseException, engine_name: str, index: int, vector: AvatarVector) -> EngineError:
    detail = exc.detail if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
    name = exc.engine if isinstance(exc, EngineError) and exc.engine else engine_name
    return EngineError(detail, engine=name, index=index, vector=vector)


def render_folder(cfg: RenderConfig, out_dir: str | Path, progress: ProgressFn | None = None,
                  on_restart: Callable[[dict[str, Any]], None] | None = None,
                  share: tuple[int, int] | None = None) -> RenderSummary:
    """Render ``cfg.n`` vectors sampled with ``cfg.seed`` into ``out_dir``, skipping finished ones.

    A batch that fails is retried one vector at a time so that every good vector is still saved and
    the bad one is named. Every engine restart is passed to ``on_restart`` as it happens (default: an
    :class:`EngineRestartWarning`), counted in the summary and appended to ``render.json``
    (``engine_restarts``). Raises :class:`EngineError` for
    the first failing vector after everything else has been rendered, and :class:`AvatarToolError` if
    another live process is writing the folder.

    ``share=(rank, world)``: render only that rank's contiguous slice of the indices (several processes
    filling one folder under a shared lock; every one writes the same manifest and vectors) and leave the
    scratch clean-up and the contact sheet to a final call without ``share``.
    """
    out_dir = Path(out_dir)
    if cfg.n < 1:
        raise AvatarToolError(f"-n must be at least 1, got {cfg.n}")
    if cfg.workers < 0 or cfg.batch_size < 1:
        raise AvatarToolError("--workers must be >= 0 and --batch-size >= 1")
    lock = FolderLock(out_dir).acquire(shared=share is not None)
    spec = EngineSpec(cfg.engine, timeout_s=cfg.timeout_s)
    restarts: list[dict[str, Any]] = []
    try:
        engine = spec.create()
    except BaseException:
        lock.release()
        raise
    try:
        _check_or_write_manifest(out_dir, cfg, engine)
        if share is None:   # ranks filling the folder together must not clear each other's scratch
            _clear_leftovers(out_dir)
        masks = cfg.masks and engine.supports_masks
        vectors = _write_vectors(out_dir, engine, cfg)
        indices = range(cfg.n)
        if share is not None:
            from ..distributed import rank_share
            indices = indices[rank_share(cfg.n, share[1], share[0])]
        todo = [i for i in indices if not _is_done(out_dir, i, masks)]
        done = cfg.n - len(todo)
        if progress:
            progress(done, cfg.n)
        batches = [todo[k:k + cfg.batch_size] for k in range(0, len(todo), cfg.batch_size)]
        got_masks = [masks]
        failures: list[EngineError] = []

        def book_restarts(indices: list[int], lost: list[dict[str, Any]]) -> None:
            for r in lost:
                r = {**r, "indices": indices, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                restarts.append(r)
                if on_restart:
                    on_restart(r)
                else:
                    warnings.warn(describe_restart(r), EngineRestartWarning, stacklevel=2)

        def on_result(indices: list[int], result: FileBatchResult, single: bool) -> bool:
            """Book one batch's result; returns False when the batch must be retried vector by vector."""
            nonlocal done
            book_restarts(indices, result.restarts or [])
            if result.error is not None:
                # A batch is retried vector by vector, which names the culprit; a lone vector only if the
                # engine died on it (a crash or hang may not repeat), not after a reasoned refusal.
                if single or (len(indices) == 1 and not result.restarts):
                    failures.append(_as_indexed_error(result.error, engine.name, indices[0], vectors[indices[0]]))
                    return True
                return False
            if not result.wrote_masks:
                got_masks[0] = False
            done += len(indices)
            if progress:
                progress(done, cfg.n)
            return True

        book_restarts([], engine.pop_restarts())  # the main engine's start-up
        if cfg.workers == 0:
            retry: list[list[int]] = []
            results = _render_chunk(engine, out_dir, batches, [[vectors[i] for i in b] for b in batches], cfg.size,
                                    masks)
            for b, result in zip(batches, results):
                if not on_result(b, result, False):
                    retry += [[i] for i in b]  # retried singly below, which names the culprit
            results = _render_chunk(engine, out_dir, retry, [[vectors[i] for i in b] for b in retry], cfg.size, masks)
            for b, result in zip(retry, results):
                on_result(b, result, True)
        else:
            engine.close()  # each worker starts its own; this one has told us the schema and name
            lock.share_with_workers()
            _render_in_pool(spec, cfg, out_dir, vectors, batches, masks, on_result, engine.name, str(lock.path))
            if share is None:  # the workers' request folders (they end without closing their engines)
                _clear_leftovers(out_dir)
        failures.sort(key=lambda e: e.index if e.index is not None else -1)
        if not got_masks[0]:
            masks = False
        _record_restarts(out_dir, restarts)
        if share is None:
            write_contact_sheet(out_dir / "contact_sheet.png",
                                [(i, image_path(out_dir, i)) for i in range(min(cfg.n, cfg.sheet_count))])
        summary = RenderSummary(out_dir, cfg.n, rendered=done - (cfg.n - len(todo)), skipped=cfg.n - len(todo),
                                has_masks=masks, failures=failures, restarts=restarts)
        if failures:
            first = failures[0]
            raise EngineError(f"{first.detail} — {len(failures)} vector(s) failed; the {done} rendered images are saved "
                              f"in {out_dir}, rerun the same command to render only what is missing",
                              engine=first.engine, index=first.index, vector=first.vector)
        return summary
    finally:
        try:
            engine.close()
        finally:
            lock.release()


def _chunks(batches: list[list[int]], workers: int) -> list[list[list[int]]]:
    """Runs of consecutive batches, one worker task each: long enough for an engine to overlap file work
    with drawing, short enough for steady progress and a fair share between workers."""
    size = max(1, min(8, len(batches) // (4 * workers)))
    return [batches[k:k + size] for k in range(0, len(batches), size)]


def _render_in_pool(spec: EngineSpec, cfg: RenderConfig, out_dir: Path, vectors: list[AvatarVector],
                    batches: list[list[int]], masks: bool,
                    on_result: Callable[[list[int], FileBatchResult, bool], bool], engine_name: str,
                    lock_path: str) -> None:
    ctx = multiprocessing.get_context("spawn")  # skia and engine subprocesses do not survive fork well
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(spec, os.getpid(), lock_path)) as pool:
        pending: dict[Future, tuple[list[list[int]], bool]] = {}

        def submit(chunk: list[list[int]], single: bool) -> None:
            fut = pool.submit(_render_in_worker, out_dir, chunk, [[vectors[i] for i in b] for b in chunk], cfg.size,
                              masks)
            pending[fut] = (chunk, single)

        for chunk in _chunks(batches, cfg.workers):
            submit(chunk, single=False)
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in finished:
                chunk, single = pending.pop(fut)
                try:
                    results = fut.result()
                except BrokenProcessPool:
                    first, last = chunk[0][0], chunk[-1][-1]
                    raise EngineError(f"a worker process died while rendering vectors #{first}..#{last} "
                                      "(crash inside the engine?); finished images are saved, rerun to resume",
                                      engine=engine_name) from None
                except Exception as exc:  # noqa: BLE001 - e.g. the results could not be sent back
                    results = [FileBatchResult(error=exc) for _ in chunk]
                for indices, result in zip(chunk, results):
                    if not on_result(indices, result, single):
                        submit([[i] for i in indices], single=True)
