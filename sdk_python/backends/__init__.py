"""Estimator runtimes behind one interface (:class:`~sdk_python.backends.base.Backend`).

Each backend module imports its runtime lazily, inside ``create``, so the SDK imports with only numpy,
Pillow, mediapipe and one runtime installed.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from typing import Optional, Sequence

from ..errors import BackendUnavailableError, ParityWarning
from .base import Backend, ModelFile, ModelFiles

# backend name -> (module, runtime import name, pip package)
_REGISTRY = {
    "onnxruntime": ("onnxruntime_backend", "onnxruntime", "onnxruntime"),
    "litert": ("litert_backend", "ai_edge_litert", "ai-edge-litert"),
    "coreml": ("coreml_backend", "coremltools", "coremltools"),
    "torch": ("torch_backend", "torch", "torch"),
}
AUTO_ORDER = ("onnxruntime", "litert", "coreml", "torch")


def runtime_available(name: str) -> Optional[str]:
    """``None`` if backend ``name`` can run here, else the reason it cannot."""
    if name not in _REGISTRY:
        return f"unknown backend {name!r} (known: {', '.join(_REGISTRY)})"
    if name == "coreml" and sys.platform != "darwin":
        return "CoreML models run only on macOS (coremltools converts but cannot predict on this platform)"
    _, module, pip_name = _REGISTRY[name]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"{module} is not installed (`pip install {pip_name}`)"


def available_backends(files: Optional[ModelFiles] = None) -> list[str]:
    """Backends whose runtime is installed (and, given ``files``, that have a model to run)."""
    return [n for n in AUTO_ORDER if runtime_available(n) is None and (files is None or files.has_model_for(n))]


def create_backend(name: str, files: ModelFiles, output_names: Sequence[str], num_threads: int = 2,
                   precision: str = "auto",
                   normalization: Optional[tuple[Sequence[float], Sequence[float]]] = None) -> Backend:
    """Instantiate a backend.

    Args:
        name: ``"auto"`` or one of ``onnxruntime``, ``litert``, ``coreml``, ``torch``.
        files: The model files available (from the bundle).
        output_names: ONNX output order (maps positional outputs to head names).
        num_threads: CPU threads.
        precision: ``auto`` or a contract precision (``fp32``, ``fp16``, ``dynamic_int8``, ``int8``). ``auto`` runs the fastest model whose parity status is
            ``validated`` (see :meth:`ModelFiles.choose`); an explicit precision runs its model whatever its
            status, with a :class:`~sdk_python.errors.ParityWarning` if it is below its threshold.
        normalization: The bundle's input ``(mean, std)``: a model whose contract input layout is
            ``image`` (CoreML: RGB 0-255, normalised inside) gets its pixels back from the normalised input.

    Raises:
        BackendUnavailableError: the runtime is missing, the platform cannot run it, or the bundle has
            no model for it; the message lists what would work here.
    """
    if name == "auto":
        usable = available_backends(files)
        if not usable:
            raise BackendUnavailableError(
                f"no backend can run this bundle here (models: {sorted(files.models)}); install onnxruntime or ai-edge-litert")
        name = usable[0]
    reason = runtime_available(name)
    if reason is not None:
        others = available_backends(files)
        raise BackendUnavailableError(f"backend '{name}' is unavailable: {reason}. "
                                      f"Usable here: {', '.join(others) or 'none'}")
    choice = files.choose(name, precision)
    if choice is None:
        have = ", ".join(f"{k} ({files.status(k)})" for k in sorted(files.models)) or "nothing"
        below = precision == "auto" and bool(files.keys_for(name))
        raise BackendUnavailableError(
            f"the bundle has no {precision} model for backend '{name}' (it has: {have})"
            + ("; precision='auto' never picks a model below its parity threshold: request its precision "
               "explicitly to run it anyway" if below else ""))
    if choice.warning:
        warnings.warn(choice.warning, ParityWarning, stacklevel=4)
    module = importlib.import_module(f".{_REGISTRY[name][0]}", __name__)
    backend = module.create(choice.model, list(output_names), num_threads)
    backend.precision = choice.precision
    backend.parity_status = choice.status
    backend.normalization = normalization
    return backend


__all__ = ["Backend", "ModelFile", "ModelFiles", "create_backend", "available_backends", "runtime_available", "AUTO_ORDER"]
