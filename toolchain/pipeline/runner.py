"""Run build stages in order, like ``dvc repro``: a stage whose fingerprint (its config sections, the
fingerprints of the stages it reads, the engine's identity and the source of the code it runs) matches
a *complete* record in ``RUN/<stage>/stage.json`` is skipped; a stage recorded as *running* with the
same fingerprint (a crash, ``kill -9``) is called again and resumes from what it finished; a stage
whose fingerprint changed, or that ``--force`` names (and every stage after it), has its old outputs
moved to ``RUN/.stale/`` and runs afresh.

Under torchrun every rank runs this loop: rank 0 alone decides, moves folders and writes the records;
stages marked ``distributed`` (the GAN trainings, pairs, estimator training) run on every rank, the others
on rank 0 while the rest wait, and every rank gets rank 0's outputs so the next stage starts alike.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

from .. import distributed
from ..atomic_io import atomic_write_json
from ..errors import AvatarToolError
from .config import BuildConfig
from .fingerprint import code_version, engine_identity, fingerprint_of

STAGE_RECORD = "stage.json"
STAGE_LOG = "stage.log"
#: The project's own packages: a warning raised in their code is a finding about the run; one raised inside a
#: third-party library (TensorFlow's "tf.lite.Interpreter is deprecated", a torch exporter notice) is the
#: library talking about itself and goes to the stage's log.
_PROJECT_DIRS = tuple(str(Path(__file__).resolve().parents[2] / d) + os.sep
                      for d in ("toolchain", "converters", "sdk_python", "benchmarks"))
RUNNING, COMPLETE = "running", "complete"


class BuildUI(Protocol):
    """What the runner tells whoever shows progress (the CLI's rich display; tests pass a recorder)."""

    def stage_started(self, index: int, total: int, name: str, title: str, estimate_s: float | None) -> None: ...
    def stage_progress(self, done: float, total: float | None, detail: str = "") -> None: ...
    def stage_finished(self, name: str, status: str, seconds: float) -> None: ...
    def warn(self, message: str) -> None: ...


class QuietUI:
    def stage_started(self, index, total, name, title, estimate_s):  # noqa: D401, ANN001
        pass

    def stage_progress(self, done, total, detail=""):  # noqa: ANN001
        pass

    def stage_finished(self, name, status, seconds):  # noqa: ANN001
        pass

    def warn(self, message):  # noqa: ANN001
        pass


@dataclass
class StageContext:
    """What a stage's ``run`` gets: where to write, the config, what earlier stages produced."""
    name: str
    dir: Path
    run_dir: Path
    cfg: BuildConfig
    upstream: dict[str, dict[str, Any]]
    ui: BuildUI
    warnings: list[str] = field(default_factory=list)
    forced: bool = False                 # named in --force: machine-wide caches are not consulted

    def progress(self, done: float, total: float | None = None, detail: str = "") -> None:
        self.ui.stage_progress(done, total, detail)

    def warn(self, message: str) -> None:
        """A fallback or degradation the user must see: shown now, kept in stage.json and the report."""
        if message not in self.warnings:
            self.warnings.append(message)
            self.ui.warn(f"{self.name}: {message}")

    def output(self, stage: str) -> dict[str, Any]:
        return self.upstream[stage]

    @property
    def log_path(self) -> Path:
        """``RUN/<stage>/stage.log``: what libraries said during the stage (converter output, their own
        warnings), kept for debugging and out of the terminal and the report."""
        return self.dir / STAGE_LOG

    def library_said(self, text: str) -> None:
        """Append ``text`` (a library's message, not a finding about the run) to :attr:`log_path`."""
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(text.rstrip("\n") + "\n")


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    run: Callable[[StageContext], dict[str, Any]]
    reads: tuple[str, ...] = ()          # config sections in the fingerprint
    after: tuple[str, ...] = ()          # stages whose outputs it reads
    code: tuple[str, ...] = ()           # package paths (relative to the repo root) whose source it runs
    enabled: Callable[[BuildConfig], bool] = lambda cfg: True
    distributed: bool = False            # runs on every torchrun rank (else on rank 0 alone)


@dataclass
class StageResult:
    name: str
    status: str                          # "ran", "resumed", "skipped"
    seconds: float
    record: dict[str, Any]


class RunLock:
    """One build per run directory at a time: a second one is refused with the holder's pid."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AvatarToolError(f"{self.path.parent} is being built by another process (pid {holder}); wait for it "
                                  "or stop it before building into the same folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)   # the kernel drops the flock with the descriptor (also on kill -9)


def read_record(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / STAGE_RECORD
    if not path.is_file():
        return None
    try:
        return _located(json.loads(path.read_text()), stage_dir.parent)
    except json.JSONDecodeError:
        return None


def _write_record(stage_dir: Path, record: dict[str, Any]) -> None:
    atomic_write_json(stage_dir / STAGE_RECORD, _portable(record, stage_dir.parent))


def _outputs_present(stage_dir: Path, record: dict[str, Any]) -> bool:
    files = record.get("outputs", {}).get("files", [])
    return all((stage_dir / f).exists() if not os.path.isabs(f) else Path(f).exists() for f in files)


RUN_PREFIX = "$RUN/"


def _finished(record: dict[str, Any] | None, fingerprint: str, stage_dir: Path) -> bool:
    """A stage is done when its record is complete, for these settings, inputs and code, with its outputs there."""
    return bool(record and record.get("fingerprint") == fingerprint and record.get("status") == COMPLETE
                and _outputs_present(stage_dir, record))


def _forced_from(active: Sequence[Stage], force: Iterable[str]) -> int:
    """Index of the first forced stage: it and every later one rerun (``len(active)`` when none is forced)."""
    names = [s.name for s in active]
    return min((names.index(f) for f in force if f in names), default=len(active))


def finished_stages(stages: Sequence[Stage], cfg: BuildConfig, run_dir: str | Path,
                    force: Iterable[str] = ()) -> set[str]:
    """The stages a build of ``cfg`` into ``run_dir`` would skip as done (none for a new run folder), found
    as ``run_stages`` finds them, without running anything: the opening estimate leaves them out."""
    run_dir = Path(run_dir).resolve()
    active = [s for s in stages if s.enabled(cfg)]
    forced_from = _forced_from(active, force)
    fps: dict[str, str] = {}
    done: set[str] = set()
    for i, stage in enumerate(active):
        fps[stage.name], _ = stage_fingerprint(stage, cfg, {u: fps[u] for u in stage.after if u in fps})
        if i < forced_from and _finished(read_record(run_dir / stage.name), fps[stage.name], run_dir / stage.name):
            done.add(stage.name)
    return done


def _portable(value: Any, run_dir: Path) -> Any:
    """Paths inside the run directory are stored as ``$RUN/...`` so a run directory can be moved or copied."""
    root = str(run_dir.resolve()) + os.sep
    if isinstance(value, str) and value.startswith(root):
        return RUN_PREFIX + value[len(root):]
    if isinstance(value, dict):
        return {k: _portable(v, run_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v, run_dir) for v in value]
    return value


def _located(value: Any, run_dir: Path) -> Any:
    if isinstance(value, str) and value.startswith(RUN_PREFIX):
        return str(run_dir.resolve() / value[len(RUN_PREFIX):])
    if isinstance(value, dict):
        return {k: _located(v, run_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_located(v, run_dir) for v in value]
    return value


def _move_aside(run_dir: Path, stage_dir: Path) -> Path | None:
    if not stage_dir.exists():
        return None
    stale = run_dir / ".stale" / stage_dir.name
    if stale.exists():
        shutil.rmtree(stale)   # keep one stale copy per stage: enough to recover from a mistaken --force
    stale.parent.mkdir(parents=True, exist_ok=True)
    os.replace(stage_dir, stale)
    return stale


def is_project_code(filename: str) -> bool:
    """Whether ``filename`` (a warning's origin) is in the project's own packages."""
    try:
        return str(Path(filename).resolve()).startswith(_PROJECT_DIRS)
    except (OSError, ValueError):
        return False


def _route_warning(ctx: StageContext, message: Any, category: type, filename: str, lineno: int) -> None:
    """A project warning becomes the stage's finding; a third-party library's goes to the stage's log."""
    if not issubclass(category, UserWarning):
        return
    if is_project_code(filename):
        ctx.warn(str(message))
    else:
        ctx.library_said(f"{category.__name__} ({filename}:{lineno}): {' '.join(str(message).split())}")


def _module_path(fn: Callable[..., Any]) -> str:
    """The stage's own module (``toolchain/pipeline/stages/pairs.py``): editing it reruns the stage too."""
    return fn.__module__.replace(".", "/") + ".py"


def stage_fingerprint(stage: Stage, cfg: BuildConfig, upstream_fps: dict[str, str]) -> tuple[str, dict[str, Any]]:
    basis = {"stage": stage.name, "engine": engine_identity(cfg.engine),
             "config": {s: cfg.section(s) for s in stage.reads}, "device": cfg.device,
             "upstream": upstream_fps, "code": code_version((*stage.code, _module_path(stage.run)))}
    return fingerprint_of(basis), basis


def stages_after(stages: Sequence[Stage], name: str | None) -> set[str]:
    """The names of the stages after ``name`` (what ``--until name`` leaves out); none for None. An unknown name is
    refused."""
    if name is None:
        return set()
    order = [s.name for s in stages]
    if name not in order:
        raise AvatarToolError(f"--until {name}: no such stage (stages: {', '.join(order)})")
    return set(order[order.index(name) + 1:])


def run_stages(stages: Sequence[Stage], cfg: BuildConfig, run_dir: str | Path, ui: BuildUI | None = None,
               force: Iterable[str] = (), stop_before: str | None = None,
               estimates: dict[str, float] | None = None, stop_after: str | None = None) -> list[StageResult]:
    """Run (or skip, or resume) ``stages`` into ``run_dir``. ``force`` names stages to rerun with all later
    ones. ``stop_before`` ends the build before that stage (tests); ``stop_after`` after it (``--until``).
    Returns one result per stage run."""
    # absolute, so every path a stage returns is inside the run and stored as $RUN/... (a relative one
    # would be checked against the stage folder and never found: the stage would rerun every time)
    run_dir = Path(run_dir).resolve()
    ui = ui or QuietUI()
    active = [s for s in stages if s.enabled(cfg)]
    names = [s.name for s in active]
    force = set(force)
    unknown = force - {s.name for s in stages}
    if unknown:
        raise AvatarToolError(f"--force {', '.join(sorted(unknown))}: no such stage (stages: {', '.join(names)})")
    later = stages_after(stages, stop_after)
    forced_from = _forced_from(active, force)
    outputs: dict[str, dict[str, Any]] = {}
    fps: dict[str, str] = {}
    results: list[StageResult] = []
    main = distributed.info().is_main
    for i, stage in enumerate(active):
        if stop_before == stage.name:
            break
        if stage.name in later:
            if main and i >= forced_from:   # forced but not reached: a later build without --until must rerun it
                stale = _move_aside(run_dir, run_dir / stage.name)
                if stale:
                    ui.warn(f"{stage.name}: earlier outputs moved to {stale} (forced; not run, --until {stop_after})")
            continue
        stage_dir = run_dir / stage.name

        def prepare() -> tuple[str, str, dict[str, Any], dict[str, Any] | None, bool]:
            """Skip, or get the stage folder ready (rank 0): (action, fingerprint, basis, record, resuming)."""
            fp, basis = stage_fingerprint(stage, cfg, {u: fps[u] for u in stage.after if u in fps})
            record = read_record(stage_dir)
            forced = i >= forced_from
            if not forced and _finished(record, fp, stage_dir):
                return "skip", fp, basis, record, False
            resuming = bool(record and not forced and record.get("fingerprint") == fp and record.get("status") == RUNNING)
            if not resuming and stage_dir.exists():
                stale = _move_aside(run_dir, stage_dir)
                why = "forced" if forced else ("settings, inputs or code changed" if record else "unfinished")
                ui.warn(f"{stage.name}: earlier outputs moved to {stale} ({why})")
            stage_dir.mkdir(parents=True, exist_ok=True)
            return "run", fp, basis, record, resuming

        action, fp, basis, record, resuming = distributed.on_main(prepare)
        if action == "skip":
            fps[stage.name], outputs[stage.name] = fp, record["outputs"]
            ui.stage_started(i + 1, len(active), stage.name, stage.title, 0.0)
            ui.stage_finished(stage.name, "skipped", 0.0)
            results.append(StageResult(stage.name, "skipped", 0.0, record))
            continue
        started = time.time()
        prior_seconds = float(record.get("seconds", 0.0)) if resuming and record else 0.0
        running = {"stage": stage.name, "title": stage.title, "status": RUNNING, "fingerprint": fp, "basis": basis,
                   "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": prior_seconds,
                   "inputs": {u: {"fingerprint": fps[u], "dir": str((run_dir / u).resolve())} for u in stage.after if u in fps},
                   "resumed": resuming}
        if main:
            _write_record(stage_dir, running)
        ui.stage_started(i + 1, len(active), stage.name, stage.title, (estimates or {}).get(stage.name))
        ctx = StageContext(name=stage.name, dir=stage_dir, run_dir=run_dir, cfg=cfg, upstream=outputs, ui=ui,
                           forced=stage.name in force)
        t0 = time.perf_counter()

        def run_stage() -> dict[str, Any]:
            with warnings.catch_warnings():
                # a library's warning (no LPIPS weights, trunk from scratch...) becomes the stage's: shown
                # once, kept in stage.json and listed in the report
                warnings.simplefilter("always", UserWarning)
                warnings.showwarning = lambda message, category, filename, lineno, *a, **k: (
                    _route_warning(ctx, message, category, filename, lineno))
                return stage.run(ctx)
        try:
            if stage.distributed:
                out = distributed.broadcast_object(run_stage())   # every rank continues with rank 0's outputs
            else:
                out = distributed.on_main(run_stage)
        except BaseException:
            running["seconds"] = prior_seconds + time.perf_counter() - t0
            running["last_error"] = traceback.format_exc(limit=3)[-2000:]
            if main:
                _write_record(stage_dir, running)
            raise
        seconds = prior_seconds + time.perf_counter() - t0
        record = {**running, "status": COMPLETE, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "seconds": round(seconds, 2), "outputs": out, "warnings": ctx.warnings,
                  "wall_this_session": round(time.time() - started, 2)}
        if main:
            _write_record(stage_dir, record)
        distributed.barrier()   # the record is on disk before any rank moves on
        fps[stage.name], outputs[stage.name] = fp, out
        status = "resumed" if resuming else "ran"
        ui.stage_finished(stage.name, status, seconds)
        results.append(StageResult(stage.name, status, seconds, record))
    return results
