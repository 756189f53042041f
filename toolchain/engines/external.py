"""Client for engines that run as an external command and speak the JSON-lines protocol
described in ``docs/engine-protocol.md`` (Unity, Unreal, Blender, a browser renderer...)."""
from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image

from ..atomic_io import commit_files, encode_png, png_complete
from ..errors import EngineError
from ..procguard import popen_guard
from ..schema import AvatarSchema, AvatarVector, SchemaError
from .base import Engine, FileBatch, FileBatchResult, RenderBatch

PROTOCOL_VERSION = 1
DEFAULT_TIMEOUT_S = 60.0


def _name_from_command(command: list[str]) -> str:
    """A provisional engine name: the first non-option argument (the script of ``python x.py``,
    ``node x.js``...), else the program itself; never a trailing option value."""
    for arg in command[1:]:
        if not arg.startswith("-"):
            return Path(arg).stem or arg
    return Path(command[0]).name


class ExternalEngine(Engine):
    """Runs ``command`` as a child process and talks to it over stdin/stdout.

    The process is started lazily and restarted after a failure, so one bad vector does not end a
    whole rendering run. Every lost process (crash, hang, protocol garbage) is recorded and handed out
    by :meth:`pop_restarts`, so callers can report it; on Linux the process is killed if ours dies.

    Args:
        command: the command line (a string is split like a shell would).
        timeout_s: how long one reply may take before the engine is declared hung and killed.
        cwd: the folder the command runs in (default: the current one).
    """

    def __init__(self, command: str | list[str], timeout_s: float = DEFAULT_TIMEOUT_S, cwd: str | None = None):
        self.command = shlex.split(command) if isinstance(command, str) else list(command)
        if not self.command:
            raise EngineError("empty external engine command")
        self.timeout_s = timeout_s
        self.cwd = cwd
        self.name = _name_from_command(self.command)  # until the engine's hello names itself
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self._schema: AvatarSchema | None = None
        self._request_id = 0
        self._engine_masks = False
        self._stderr_thread: threading.Thread | None = None
        self._lost: list[dict[str, Any]] = []
        self._scratch_free: list[Path] = []  # emptied request folders (render_to_files), reused
        self._scratch_lock = threading.Lock()  # the commit thread hands folders back

    @property
    def supports_masks(self) -> bool:  # type: ignore[override]
        """What the engine's hello announced (starts the engine if needed)."""
        self.schema  # noqa: B018
        return self._engine_masks

    # ----- process management ------------------------------------------------------------------
    def _start(self) -> None:
        try:
            self._proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, bufsize=1, cwd=self.cwd,
                                          preexec_fn=popen_guard())  # dies with us (Linux)
        except OSError as exc:
            where = f" in {self.cwd}" if self.cwd else ""
            raise EngineError(f"cannot start command {self.command}{where}: {exc}", engine=self.name) from None
        self._lines = queue.Queue()
        self._stderr_tail.clear()
        proc = self._proc
        threading.Thread(target=self._pump_stdout, args=(proc, self._lines), daemon=True).start()
        self._stderr_thread = threading.Thread(target=self._pump_stderr, args=(proc,), daemon=True)
        self._stderr_thread.start()
        hello = self._request({"type": "hello"}, expect="hello")
        self.name = str(hello.get("engine") or self.name)
        self._engine_masks = bool(hello.get("masks", False))

    @staticmethod
    def _pump_stdout(proc: subprocess.Popen, lines: queue.Queue) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def _pump_stderr(self, proc: subprocess.Popen) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self._stderr_tail.append(line.rstrip())

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self._proc = None

    def _lose(self, reason: str) -> str:
        """The process is gone or must go: kill it, keep its last stderr lines, record the loss (the next
        request starts a new process). Returns the stderr tail as one line for the error message."""
        proc = self._proc
        self._kill()
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=2)  # let the pump catch the engine's last words
        tail = list(self._stderr_tail)[-5:]
        self._lost.append({"engine": self.name, "reason": reason,
                           "exit_code": proc.returncode if proc is not None else None, "stderr_tail": tail})
        return " | ".join(tail) or "(nothing on stderr)"

    def pop_restarts(self) -> list[dict[str, Any]]:
        lost, self._lost = self._lost, []
        return lost

    def close(self) -> None:
        self._drop_scratch()
        if self._proc is not None and self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(json.dumps({"protocol": PROTOCOL_VERSION, "type": "shutdown"}) + "\n")
                self._proc.stdin.flush()
                self._proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                pass
        self._kill()

    # ----- requests ----------------------------------------------------------------------------
    def _request(self, message: dict[str, Any], expect: str, vectors: list[AvatarVector] | None = None) -> dict[str, Any]:
        if self._proc is None or self._proc.poll() is not None:
            if message["type"] != "hello":
                self._start()
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps({"protocol": PROTOCOL_VERSION, **message}) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._fail_exited(vectors)
        try:
            line = self._lines.get(timeout=self.timeout_s)
        except queue.Empty:
            self._lose(f"no reply to '{message['type']}' within {self.timeout_s:g} s")
            raise EngineError(f"no reply to '{message['type']}' within {self.timeout_s:g} s (engine hung?); "
                              "raise --engine-timeout if it is just slow", engine=self.name,
                              **self._blame(vectors)) from None
        if line is None:
            self._fail_exited(vectors)
        try:
            reply = json.loads(line)
            if not isinstance(reply, dict):
                raise ValueError("not an object")
        except ValueError:
            self._lose("a stdout line that is not a JSON object")
            raise EngineError(f"replied with a line that is not a JSON object: {line[:200]!r} "
                              "(engines must print only protocol lines on stdout; log to stderr)", engine=self.name) from None
        version = reply.get("protocol")
        if not isinstance(version, int) or version > PROTOCOL_VERSION:
            self._lose(f"protocol version {version!r}")
            raise EngineError(f"speaks protocol version {version!r}, this avatartool speaks {PROTOCOL_VERSION}: "
                              "upgrade avatartool, or run the engine in protocol-1 mode", engine=self.name)
        if reply.get("type") == "error":
            blame = self._blame(vectors, reply.get("index"))
            raise EngineError(f"reported an error: {reply.get('message', '(no message)')}", engine=self.name, **blame)
        if reply.get("type") != expect:
            self._lose(f"answered '{reply.get('type')}' to '{message['type']}'")
            raise EngineError(f"answered '{reply.get('type')}' to a '{message['type']}' request (expected '{expect}')",
                              engine=self.name)
        return reply

    @staticmethod
    def _blame(vectors: list[AvatarVector] | None, offset: Any = None) -> dict[str, Any]:
        """Name the vector at fault when the request makes it unambiguous (the caller maps it to a
        dataset index)."""
        if vectors is None:
            return {}
        if isinstance(offset, int) and 0 <= offset < len(vectors):
            return {"vector": vectors[offset]}
        if len(vectors) == 1:
            return {"vector": vectors[0]}
        return {}

    def _fail_exited(self, vectors: list[AvatarVector] | None):
        code = None
        if self._proc is not None:
            try:
                code = self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # stdout closed but still running: it goes now
                pass
        tail = self._lose(f"process exited (exit code {code})")
        raise EngineError(f"process exited unexpectedly (exit code {code}); last stderr: {tail}",
                          engine=self.name, **self._blame(vectors))

    # ----- Engine API --------------------------------------------------------------------------
    @property
    def schema(self) -> AvatarSchema:
        if self._schema is None:
            reply = self._request({"type": "schema"}, expect="schema")
            try:
                self._schema = AvatarSchema.from_json(reply["schema"])
            except (KeyError, SchemaError) as exc:
                raise EngineError(f"sent an invalid schema: {exc}", engine=self.name) from None
        return self._schema

    def _render_request(self, vectors: list[AvatarVector], size: int, masks: bool, out_dir: Path) -> list[Any]:
        self.schema  # noqa: B018 - make sure the process is up and the schema known
        self._request_id += 1
        reply = self._request({"type": "render", "id": self._request_id, "size": size, "masks": masks,
                               "out_dir": str(out_dir), "vectors": vectors}, expect="rendered", vectors=vectors)
        files = reply.get("files")
        if not isinstance(files, list) or len(files) != len(vectors):
            raise EngineError(f"returned {len(files) if isinstance(files, list) else 'no'} files for {len(vectors)} vectors",
                              engine=self.name, **self._blame(vectors))
        return files

    @staticmethod
    def _entry(entry: Any, key: str) -> Any:
        return entry.get(key) if isinstance(entry, dict) else None

    def render_valid(self, vectors: list[AvatarVector], size: int, masks: bool) -> RenderBatch:
        want_masks = masks and self.supports_masks
        out_dir = Path(tempfile.mkdtemp(prefix="avatartool-ext-"))
        try:
            files = self._render_request(vectors, size, want_masks, out_dir)
            images = np.empty((len(vectors), size, size, 3), np.uint8)
            mask_arr = np.empty((len(vectors), size, size), np.uint8) if want_masks else None
            for i, entry in enumerate(files):
                blame = self._blame(vectors, i)
                images[i] = self._read(out_dir, self._entry(entry, "image"), size, "RGB", blame)
                if mask_arr is not None:
                    mask_arr[i] = self._read(out_dir, self._entry(entry, "mask"), size, "L", blame)
            return RenderBatch(images, mask_arr)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)

    def render_to_files(self, vectors, size, masks, image_files, mask_files) -> bool:  # type: ignore[override]
        """The engine writes its files next to their destinations (a scratch folder beside the first
        image), and a file that already is a PNG of the right size and pixel format is checked by
        decoding it and then moved into place: no re-encoding, which would cost more than many engines
        take to draw."""
        return self._commit(*self._request_files(FileBatch(vectors, image_files, mask_files), size, masks))

    def render_batches_to_files(self, batches: Iterable[FileBatch], size: int,
                                masks: bool) -> Iterator[FileBatchResult]:
        """Checking and moving one batch's files (a thread) overlaps with the engine drawing the next
        batch. Still one request at a time: the next request is sent after the previous reply, the
        previous request's folder is just read later."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit") as committer:
            previous: tuple[Future, list[dict[str, Any]]] | None = None
            for batch in batches:
                try:
                    future = committer.submit(self._commit, *self._request_files(batch, size, masks))
                except Exception as exc:  # noqa: BLE001 - reported per vector by the caller
                    future = Future()
                    future.set_exception(exc)
                current = (future, self.pop_restarts())
                if previous is not None:
                    yield self._result(*previous)
                previous = current
            if previous is not None:
                yield self._result(*previous)

    @staticmethod
    def _result(future: Future, restarts: list[dict[str, Any]]) -> FileBatchResult:
        try:
            return FileBatchResult(wrote_masks=future.result(), restarts=restarts)
        except Exception as exc:  # noqa: BLE001
            return FileBatchResult(error=exc, restarts=restarts)

    def _request_files(self, batch: FileBatch, size: int, masks: bool) -> tuple:
        """Send one render request into a fresh scratch folder beside the destinations; returns what
        :meth:`_commit` needs. The scratch folder is removed here on failure, by ``_commit`` otherwise."""
        canonical = self._checked(batch.vectors, size)
        want_masks = masks and self.supports_masks
        scratch = self._scratch_folder(Path(batch.image_files[0]).parent)
        try:
            files = self._render_request(canonical, size, want_masks, scratch)
        except BaseException:
            self._recycle(scratch)
            raise
        return scratch, files, canonical, size, want_masks, batch

    def _scratch_folder(self, beside: Path) -> Path:
        """An empty folder for one request, on the destination's filesystem; emptied folders are reused
        (creating and removing one per request costs journal writes on a busy disk)."""
        with self._scratch_lock:
            for i, d in enumerate(self._scratch_free):
                if d.parent == beside:
                    return self._scratch_free.pop(i)
        beside.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".engine-", dir=beside))

    def _recycle(self, scratch: Path) -> None:
        """Back to the free list if the request left it empty (every file moved out), else removed."""
        try:
            empty = not any(os.scandir(scratch))
        except OSError:
            return
        if not empty:
            shutil.rmtree(scratch, ignore_errors=True)
            return
        with self._scratch_lock:
            self._scratch_free.append(scratch)

    def _drop_scratch(self) -> None:
        with self._scratch_lock:
            free, self._scratch_free = self._scratch_free, []
        for d in free:
            shutil.rmtree(d, ignore_errors=True)

    def _commit(self, scratch: Path, files: list[Any], vectors: list[AvatarVector], size: int, want_masks: bool,
                batch: FileBatch) -> bool:
        try:
            moves: list[tuple[Path, Path]] = []
            for i, entry in enumerate(files):
                blame = self._blame(vectors, i)
                if want_masks:
                    moves.append((self._take(scratch, self._entry(entry, "mask"), size, "L", blame),
                                  Path(batch.mask_files[i])))
                moves.append((self._take(scratch, self._entry(entry, "image"), size, "RGB", blame),
                              Path(batch.image_files[i])))
            commit_files(moves)
            return want_masks
        finally:
            self._recycle(scratch)

    def _checked_path(self, out_dir: Path, name: Any, blame: dict[str, Any]) -> Path:
        if not isinstance(name, str) or not name:
            raise EngineError("reply names no file for this vector", engine=self.name, **blame)
        path = out_dir / name
        # A plain file name that is not a link stays inside out_dir; anything else is resolved and checked.
        if os.sep in name or (os.altsep and os.altsep in name) or name in (".", "..") or path.is_symlink():
            path = path.resolve()
            if not path.is_relative_to(out_dir.resolve()):
                raise EngineError(f"reply names a file outside the output folder: {name!r}", engine=self.name,
                                  **blame)
        if not path.is_file():
            raise EngineError(f"reply names {name!r} but no such file was written", engine=self.name, **blame)
        return path

    def _check_size(self, im: Image.Image, name: Any, size: int, blame: dict[str, Any]) -> None:
        if im.size != (size, size):
            raise EngineError(f"image {name!r} is {im.size[0]}x{im.size[1]}, expected {size}x{size}",
                              engine=self.name, **blame)

    def _take(self, out_dir: Path, name: Any, size: int, mode: str, blame: dict[str, Any]) -> Path:
        """A file in ``out_dir`` holding the named render as an 8-bit PNG of ``mode``: the engine's own file
        when it already is one — its chunk checksums verified up to the end chunk, and nothing after it
        (how a resumed render tells whole files) — else a converted copy. Verifying the checksums costs a
        tenth of decoding the pixels, which would cost more than many engines take to draw."""
        path = self._checked_path(out_dir, name, blame)
        try:
            with Image.open(path) as im:
                self._check_size(im, name, size, blame)
                as_is = im.format == "PNG" and im.mode == mode and [t[3] for t in im.tile] == [mode]
                if as_is:
                    im.verify()  # every chunk's CRC, through IEND: whole, and as the engine wrote it
            if as_is and png_complete(path):
                return path
            with Image.open(path) as im:
                converted = np.asarray(im.convert(mode), dtype=np.uint8)
        except (OSError, SyntaxError, ValueError) as exc:
            raise EngineError(f"file {name!r} is not a readable image: {exc}", engine=self.name, **blame) from None
        fd, tmp = tempfile.mkstemp(prefix=".converted-", suffix=".png", dir=out_dir)
        os.close(fd)
        encode_png(tmp, converted)
        return Path(tmp)

    def _read(self, out_dir: Path, name: Any, size: int, mode: str, blame: dict[str, Any]) -> np.ndarray:
        path = self._checked_path(out_dir, name, blame)
        try:
            with Image.open(path) as im:
                self._check_size(im, name, size, blame)
                return np.asarray(im.convert(mode), dtype=np.uint8)
        except (OSError, SyntaxError) as exc:
            raise EngineError(f"file {name!r} is not a readable image: {exc}", engine=self.name, **blame) from None
