"""Keep MediaPipe / TensorFlow / LiteRT start-up chatter off the terminal, and keep TensorFlow out of the
process when nothing needs it.

Two separate costs, both measured on ``avatartool predict`` (2 cores, see README "Start-up"):

* ``import mediapipe`` imports its audio tasks, whose ``optional_dependencies`` module imports
  ``tensorflow.tools.docs`` *only* to get a no-op docstring decorator. With TensorFlow installed
  (the export extra) that is ~3 s and ~400 MB before the first image. :func:`import_mediapipe`
  gives MediaPipe the same no-op decorator it uses when TensorFlow is absent, so the import is what a
  phone team's TensorFlow-free environment gets.
* Native libraries write INFO/WARNING lines straight to file descriptor 2 (absl, glog, LiteRT's own
  logger) before and regardless of Python's logging. :func:`silence_native_logs` sets the level
  variables they read at start-up; :func:`quiet_stderr` redirects fd 2 around one call for the lines
  no variable reaches (LiteRT's "Creating LiteRT environment" at graph creation).

A library must be quiet without hiding its host's own output, so the SDK does not lower log levels for the
whole process. Instead an estimator (unless :func:`sdk_quiet` says logs are wanted) redirects fd 2 while
native code sets itself up: creating the detectors, the face-mesh interpreter and the runtime, one warm-up
run of each (the runtimes log again on their first run: LiteRT's XNNPACK delegate, MediaPipe's
"Input tensor memory is not aligned", the 28 "Sparsity tensors may not yet be fully supported" lines of
an int8 model) and closing them. Python's own ``sys.stderr`` (warnings, a host's prints) keeps writing to
the real stderr throughout. ``AvatarEstimatorOptions(native_logs=True)`` or ``SWIFTAVATAR_NATIVE_LOGS=1``
shows the native lines again. ``avatartool`` additionally calls :func:`silence_native_logs` unless ``--debug``.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import types
from typing import Iterator

_QUIET = {"on": False}

#: Set to ``1`` (or ``true``/``yes``/``on``) to see the native libraries' log lines from the SDK.
LOGS_ENV = "SWIFTAVATAR_NATIVE_LOGS"

#: Variables read once by the native libraries when they load: set before they are imported.
LOG_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",      # TensorFlow C++ (0 all ... 3 errors hidden too; fatal still shows)
    "GLOG_minloglevel": "2",          # glog inside MediaPipe: INFO and WARNING hidden, ERROR shown
    "ABSL_MIN_LOG_LEVEL": "2",        # absl C++ logging (newer builds read this)
    "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1"),
}

_OPTIONAL_DEPS = "mediapipe.tasks.python.core.optional_dependencies"
# Imported by mediapipe's package __init__ files but never used by face detection: loaded lazily (on
# first attribute access) while :func:`import_mediapipe` runs. drawing_utils imports matplotlib.pyplot
# and cv2 (~1 s on 2 cores), audio imports sounddevice (~0.2 s).
_LAZY = ("mediapipe.tasks.python.vision.drawing_utils", "mediapipe.tasks.python.vision.drawing_styles",
         "mediapipe.tasks.python.audio")


def silence_native_logs() -> None:
    """Ask TensorFlow, glog, absl and LiteRT to print errors only, for the rest of the process.

    Call before the first import of mediapipe / tensorflow / ai_edge_litert (later calls still turn
    on :func:`quiet_stderr` around detector creation, but cannot lower levels already read).
    """
    for k, v in LOG_ENV.items():
        os.environ.setdefault(k, v)
    _QUIET["on"] = True
    try:  # Python-side absl logging (used by TensorFlow's Python code), if it is installed
        import absl.logging
        absl.logging.set_verbosity(absl.logging.ERROR)
        absl.logging.set_stderrthreshold("error")
    except Exception:
        pass


def is_quiet() -> bool:
    """Whether :func:`silence_native_logs` ran (the CLI): then every native call is quieted."""
    return _QUIET["on"]


def sdk_quiet(native_logs: bool | None = None) -> bool:
    """Whether the SDK hides native log lines around set-up, warm-up and close.

    Args:
        native_logs: The estimator option: ``True`` shows them, ``False`` hides them, ``None`` follows
            :data:`LOGS_ENV` (hidden unless it is set to a true word).
    """
    if native_logs is not None:
        return not native_logs
    return os.environ.get(LOGS_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


@contextlib.contextmanager
def quiet_stderr(enabled: bool | None = None) -> Iterator[None]:
    """Redirect file descriptor 2 to ``/dev/null`` for the block (when ``enabled``; default: after
    :func:`silence_native_logs`). Python exceptions still propagate; only what native code writes
    during the block is dropped: a ``sys.stderr`` that wrote to fd 2 writes to the real stderr meanwhile,
    so Python warnings and the host's own messages still show."""
    if not (is_quiet() if enabled is None else enabled):
        yield
        return
    with redirect_native_output(os.devnull, (2,)):
        yield


_STREAMS = {1: "stdout", 2: "stderr"}


@contextlib.contextmanager
def redirect_native_output(target: str | os.PathLike, fds: tuple[int, ...] = (1, 2)) -> Iterator[None]:
    """Send what native code writes to ``fds`` (1: stdout, 2: stderr) to the file ``target`` (appended) for the
    block, while Python's ``sys.stdout`` / ``sys.stderr`` keep writing to the real streams (a progress display,
    warnings, the host's prints). Where a descriptor is not a real one (embedded interpreters, some test
    runners) it is left alone."""
    saved: dict[int, int] = {}
    swapped: dict[str, tuple[object, object]] = {}
    try:
        for fd in fds:
            name = _STREAMS.get(fd)
            stream = getattr(sys, name, None) if name else None
            try:
                if stream is not None:
                    stream.flush()
                saved[fd] = os.dup(fd)
            except (OSError, ValueError, AttributeError):
                continue
            try:
                if stream is not None and stream.fileno() == fd:
                    real = open(saved[fd], "w", closefd=False, buffering=1,
                                encoding=getattr(stream, "encoding", None), errors="backslashreplace")
                    swapped[name] = (stream, real)
            except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
                pass   # this Python stream is not the descriptor (a capture, a log file): unaffected anyway
        if saved:
            sink = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            for fd in saved:
                os.dup2(sink, fd)
            os.close(sink)
        for name, (_, real) in swapped.items():
            setattr(sys, name, real)
        yield
    finally:
        for name, (orig, real) in swapped.items():
            real.flush()
            if getattr(sys, name) is real:
                setattr(sys, name, orig)
            real.close()
        for fd, dup in saved.items():
            os.dup2(dup, fd)
            os.close(dup)


def import_mediapipe() -> types.ModuleType:
    """``import mediapipe`` without pulling TensorFlow in through its docs decorator (see module doc).

    Raises:
        ImportError: mediapipe is not installed.
    """
    if "mediapipe" in sys.modules:
        return sys.modules["mediapipe"]
    if _OPTIONAL_DEPS not in sys.modules and "tensorflow" not in sys.modules:
        # exactly MediaPipe's own fallback for an environment without TensorFlow
        stub = types.ModuleType(_OPTIONAL_DEPS)
        doc_controls = types.SimpleNamespace(do_not_generate_docs=lambda x: x)
        stub.doc_controls = doc_controls  # type: ignore[attr-defined]
        sys.modules[_OPTIONAL_DEPS] = stub
    finder = _LazyFinder()
    sys.meta_path.insert(0, finder)
    try:
        with quiet_stderr():
            import mediapipe
    finally:
        sys.meta_path.remove(finder)
    return mediapipe


class _LazyFinder:
    """Meta-path finder that hands :data:`_LAZY` modules to ``importlib.util.LazyLoader``."""

    def find_spec(self, name, path, target=None):
        if name not in _LAZY:
            return None
        import importlib.machinery
        import importlib.util
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec
