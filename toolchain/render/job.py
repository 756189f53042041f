"""Render a set of sampled avatar vectors into a folder, in worker processes and batches, resumably.
The folder layout and its reader are in ``folder.py``.

Every file is written atomically, so an interrupted or failed run leaves only whole files, and a
rerun with the same options renders only what is missing.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


from ..atomic_io import atomic_write_jsonl, check_or_write_manifest, read_jsonl, save_png_atomic
from ..contact_sheet import write_contact_sheet
from ..engines.base import Engine, RenderBatch
from ..engines.registry import EngineSpec
from ..errors import AvatarToolError, EngineError
from ..schema import AvatarVector
from .folder import MANIFEST, VECTORS, image_path, mask_path

RENDER_FORMAT_VERSION = 1
ProgressFn = Callable[[int, int], None]


@dataclass
class RenderConfig:
    engine: str
    n: int
    seed: int = 0
    size: int = 256
    workers: int = 1
    batch_size: int = 8
    masks: bool = True
    timeout_s: float = 60.0
    sheet_count: int = 64


@dataclass
class RenderSummary:
    out_dir: Path
    n: int
    rendered: int
    skipped: int
    has_masks: bool
    failures: list[EngineError] = field(default_factory=list)


# ----- worker side -----------------------------------------------------------------------------
_worker_engine: Engine | None = None


def _init_worker(spec: EngineSpec) -> None:
    global _worker_engine
    _worker_engine = spec.create()


def _render_and_save(engine: Engine, out_dir: Path, indices: list[int], vectors: list[AvatarVector], size: int,
                     masks: bool) -> bool:
    """Render and write one batch; returns whether masks were written. Runs where the engine lives, so
    PNG encoding is spread over the workers too."""
    batch = engine.render(vectors, size=size, masks=masks)
    _save(out_dir, indices, batch)
    return batch.masks is not None


def _render_in_worker(out_dir: Path, indices: list[int], vectors: list[AvatarVector], size: int, masks: bool) -> bool:
    assert _worker_engine is not None
    return _render_and_save(_worker_engine, out_dir, indices, vectors, size, masks)


# ----- main side -------------------------------------------------------------------------------
def _check_or_write_manifest(out_dir: Path, cfg: RenderConfig, engine: Engine) -> None:
    manifest = {
        "format_version": RENDER_FORMAT_VERSION,
        "engine": cfg.engine,
        "engine_name": engine.name,
        "seed": cfg.seed,
        "size": cfg.size,
        "masks": cfg.masks and engine.supports_masks,
        "schema": engine.schema.to_json(),
    }
    check_or_write_manifest(out_dir / MANIFEST, manifest, ("engine", "seed", "size", "masks", "schema"),
                            noun="render", hidden=("schema",))


def _write_vectors(out_dir: Path, engine: Engine, cfg: RenderConfig) -> list[AvatarVector]:
    path = out_dir / VECTORS
    existing = len(read_jsonl(path)) if path.exists() else 0
    # Prefix-stable sampling: the first n of a longer stream are the same vectors, so keeping the
    # longer list never contradicts images already on disk.
    vectors = engine.sample(max(cfg.n, existing), cfg.seed)
    atomic_write_jsonl(path, ({"index": i, "vector": v} for i, v in enumerate(vectors)))
    return vectors[: cfg.n]


def _is_done(out_dir: Path, i: int, masks: bool) -> bool:
    return image_path(out_dir, i).exists() and (not masks or mask_path(out_dir, i).exists())


def _save(out_dir: Path, indices: list[int], batch: RenderBatch) -> None:
    for k, i in enumerate(indices):
        if batch.masks is not None:
            save_png_atomic(mask_path(out_dir, i), batch.masks[k])
        save_png_atomic(image_path(out_dir, i), batch.images[k])


def _as_indexed_error(exc: BaseException, engine_name: str, index: int, vector: AvatarVector) -> EngineError:
    detail = exc.detail if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
    name = exc.engine if isinstance(exc, EngineError) and exc.engine else engine_name
    return EngineError(detail, engine=name, index=index, vector=vector)


def render_folder(cfg: RenderConfig, out_dir: str | Path, progress: ProgressFn | None = None,
                  share: tuple[int, int] | None = None) -> RenderSummary:
    """Render ``cfg.n`` vectors sampled with ``cfg.seed`` into ``out_dir``, skipping finished ones.

    A batch that fails is retried one vector at a time so that every good vector is still saved and
    the bad one is named. Raises :class:`EngineError` for the first failing vector after everything
    else has been rendered.

    ``share=(rank, world)``: render only that rank's contiguous slice of the indices (several processes
    filling one folder; every one writes the same manifest and vectors) and leave the contact sheet to a
    final call without ``share``.
    """
    out_dir = Path(out_dir)
    if cfg.n < 1:
        raise AvatarToolError(f"-n must be at least 1, got {cfg.n}")
    if cfg.workers < 0 or cfg.batch_size < 1:
        raise AvatarToolError("--workers must be >= 0 and --batch-size >= 1")
    spec = EngineSpec(cfg.engine, timeout_s=cfg.timeout_s)
    engine = spec.create()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _check_or_write_manifest(out_dir, cfg, engine)
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
        failed_batches: list[list[int]] = []
        got_masks = [masks]

        def on_result(indices: list[int], wrote_masks: bool) -> None:
            nonlocal done
            if not wrote_masks:
                got_masks[0] = False
            done += len(indices)
            if progress:
                progress(done, cfg.n)

        failures: list[EngineError] = []
        if cfg.workers == 0:
            for b in batches:
                try:
                    on_result(b, _render_and_save(engine, out_dir, b, [vectors[i] for i in b], cfg.size, masks))
                except Exception:  # retried singly below, which names the culprit
                    failed_batches.append(b)
            for i in (i for b in failed_batches for i in b):
                try:
                    on_result([i], _render_and_save(engine, out_dir, [i], [vectors[i]], cfg.size, masks))
                except Exception as exc:
                    failures.append(_as_indexed_error(exc, engine.name, i, vectors[i]))
        else:
            failures = _render_in_pool(spec, cfg, out_dir, vectors, batches, masks, on_result, engine.name)
        if not got_masks[0]:
            masks = False
        if share is None:
            write_contact_sheet(out_dir / "contact_sheet.png",
                                [(i, image_path(out_dir, i)) for i in range(min(cfg.n, cfg.sheet_count))])
        summary = RenderSummary(out_dir, cfg.n, rendered=done - (cfg.n - len(todo)), skipped=cfg.n - len(todo),
                                has_masks=masks, failures=failures)
        if failures:
            first = failures[0]
            raise EngineError(f"{first.detail} — {len(failures)} vector(s) failed; the {done} rendered images are saved "
                              f"in {out_dir}, rerun the same command to render only what is missing",
                              engine=first.engine, index=first.index, vector=first.vector)
        return summary
    finally:
        engine.close()


def _render_in_pool(spec: EngineSpec, cfg: RenderConfig, out_dir: Path, vectors: list[AvatarVector],
                    batches: list[list[int]], masks: bool, on_result: Callable[[list[int], bool], None],
                    engine_name: str) -> list[EngineError]:
    failures: list[EngineError] = []
    ctx = multiprocessing.get_context("spawn")  # skia and engine subprocesses do not survive fork well
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=ctx, initializer=_init_worker, initargs=(spec,)) as pool:
        pending: dict[Future, tuple[list[int], bool]] = {}

        def submit(indices: list[int], single: bool) -> None:
            fut = pool.submit(_render_in_worker, out_dir, indices, [vectors[i] for i in indices], cfg.size, masks)
            pending[fut] = (indices, single)

        for b in batches:
            submit(b, single=False)
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in finished:
                indices, single = pending.pop(fut)
                try:
                    wrote_masks = fut.result()
                except BrokenProcessPool:
                    raise EngineError(f"a worker process died while rendering vectors #{indices[0]}..#{indices[-1]} "
                                      "(crash inside the engine?); finished images are saved, rerun to resume",
                                      engine=engine_name) from None
                except Exception as exc:
                    if single or len(indices) == 1:
                        failures.append(_as_indexed_error(exc, engine_name, indices[0], vectors[indices[0]]))
                    else:
                        for i in indices:
                            submit([i], single=True)
                    continue
                on_result(indices, wrote_masks)
    failures.sort(key=lambda e: e.index if e.index is not None else -1)
    return failures
