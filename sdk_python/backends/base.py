"""The backend interface, and the model files a backend picks from (keyed by the model contract)."""
from __future__ import annotations

import abc
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from .. import contract
from ..contract import BELOW, LEGACY_STATUS, NOT_RUN, UNVALIDATED, VALIDATED  # noqa: F401 - re-exported


@dataclass
class ModelFile:
    """One model the SDK may run: a file on disk, or a member of a bundle read only when a backend loads it.

    Attributes:
        key: The model contract's key (see :data:`sdk_python.contract.MODEL_ROWS`).
        path: The file (export folder), or ``None`` for a bundle member.
        member: The bundle member (:class:`sdk_python.bundle.Member`), read by offset and sha256-checked.
        record: What the exporter recorded about the file (``output_map``, ``outputs``, ``quantization``…).
    """

    key: str
    path: Optional[Path] = None
    member: Any = None
    record: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else str(self.member.name)

    @property
    def row(self) -> contract.ModelRow:
        return contract.row_for_key(self.key)

    def read_bytes(self) -> bytes:
        return self.path.read_bytes() if self.path is not None else self.member.read()

    def local_path(self) -> tuple[Path, Optional[tempfile.TemporaryDirectory]]:
        """A file path for runtimes that cannot load from memory: the file itself, or this one member
        extracted into a private temporary folder (returned so the caller keeps it alive)."""
        if self.path is not None:
            return self.path, None
        from ..bundle import extract_member
        tmp = tempfile.TemporaryDirectory(prefix="swiftavatar-model-")
        return extract_member(self.member, tmp.name), tmp


@dataclass
class Choice:
    """The model a backend will run: the file, its precision, parity status and any warning to give."""

    model: ModelFile
    precision: str
    status: str
    warning: Optional[str] = None

    @property
    def key(self) -> str:
        return self.model.key

    @property
    def path(self) -> Optional[Path]:
        return self.model.path


@dataclass
class ModelFiles:
    """Estimator models by contract key and, by the same key, the parity row the exporter recorded
    (``status``: validated / below threshold / not run here / unvalidated; none recorded = unvalidated).

    ``models`` values may be given as plain paths; they become :class:`ModelFile` entries.
    """

    models: dict[str, Union[ModelFile, Path]] = field(default_factory=dict)
    parity: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.models = {k: v if isinstance(v, ModelFile) else ModelFile(k, path=Path(v)) for k, v in self.models.items()}

    def add(self, model: ModelFile, parity: Optional[dict] = None) -> None:
        self.models[model.key] = model
        self.parity[model.key] = parity if isinstance(parity, dict) else {}

    def status(self, key: str) -> str:
        s = (self.parity.get(key) or {}).get("status") or UNVALIDATED
        return LEGACY_STATUS.get(s, s)

    def _describe(self, key: str) -> str:
        row = self.parity.get(key) or {}
        if row.get("reason"):
            return row["reason"]
        if row.get("worst_head_agreement") is not None and row.get("threshold") is not None:
            return (f"{row.get('worst_head')} agrees with torch on {row['worst_head_agreement']:.4f} < threshold "
                    f"{row['threshold']}")
        if row.get("agreement") is not None and row.get("threshold") is not None:   # rows without per-head figures
            return f"agreement with torch {row['agreement']:.4f} < threshold {row['threshold']}"
        return self.status(key)

    def keys_for(self, runtime: str) -> dict[str, str]:
        """precision → key of the models ``runtime`` can run."""
        return {r.precision: r.key for r in contract.rows() if r.runtime == runtime and r.key in self.models}

    def choose(self, backend: str, precision: str = "auto") -> Optional[Choice]:
        """The model ``backend`` runs for ``precision``, or ``None`` if the bundle has none it may run.

        ``auto`` takes the fastest *validated* model; with none validated, the least quantised model that is
        not below its threshold, with a warning; never a below-threshold model. An explicit precision gets
        its model whatever its status, with a warning if it is below its threshold.
        """
        keys = self.keys_for(backend)
        if precision != "auto":
            key = keys.get(precision)
            if key is None:
                return None
            warning = None
            if self.status(key) == BELOW:
                warning = (f"the {backend} {precision} model is below its parity threshold ({self._describe(key)}); "
                           f"running it because precision={precision!r} was requested: results may differ from "
                           "the trained model's")
            return Choice(self.models[key], precision, self.status(key), warning)
        for prec in contract.AUTO_PRECISION.get(backend, ()):
            if prec in keys and self.status(keys[prec]) == VALIDATED:
                return Choice(self.models[keys[prec]], prec, VALIDATED)
        for prec in contract.FALLBACK_ORDER:
            if prec in keys and self.status(keys[prec]) != BELOW:
                key = keys[prec]
                skipped = [f"{p} ({self.status(k)})" for p, k in keys.items() if k != key]
                return Choice(self.models[key], prec, self.status(key),
                              f"no validated {backend} model in the bundle: precision='auto' falls back to {prec}, "
                              f"whose parity status is '{self.status(key)}'"
                              + (f" (others: {', '.join(skipped)})" if skipped else ""))
        return None

    def has_model_for(self, backend: str) -> bool:
        return self.choose(backend) is not None


class Backend(abc.ABC):
    """Runs the estimator on one normalised image.

    Subclasses map the runtime's outputs to head names (``"continuous"`` and one per discrete
    parameter), whatever order or naming the exported file uses.
    """

    name: str = "base"
    precision: str = "fp32"
    parity_status: str = "unvalidated"    # the exporter's parity status of the model file (set by create_backend)
    normalization: Optional[tuple[Sequence[float], Sequence[float]]] = None   # input (mean, std), set likewise

    def pixels(self, x: np.ndarray) -> np.ndarray:
        """The ``uint8 [S, S, 3]`` RGB crop a normalised ``[1, 3, S, S]`` input was made from (for models whose
        input layout is ``image``: they normalise inside)."""
        if self.normalization is None:
            from ..errors import AvatarSDKError
            raise AvatarSDKError(f"{self.model.name} takes RGB pixels: create the backend with the bundle's "
                                 "normalization (create_backend(..., normalization=(mean, std)))")
        mean, std = (np.asarray(v, np.float32).reshape(3, 1, 1) for v in self.normalization)
        return np.clip(np.rint((x[0] * std + mean) * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)

    def __init__(self, model: ModelFile, output_names: Sequence[str], num_threads: int):
        self.model = model
        self.output_names = list(output_names)
        self.num_threads = num_threads

    @abc.abstractmethod
    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Args: ``x``: float32 ``[1, 3, S, S]``, already normalised. Returns ``{output name: [1, K]}``."""

    def close(self) -> None:
        """Release the runtime (idempotent)."""

    def _by_position(self, values: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        if len(values) != len(self.output_names):
            from ..errors import BundleError
            raise BundleError(f"{self.model.name} has {len(values)} outputs, the manifest names "
                              f"{len(self.output_names)} ({self.output_names}): the bundle is inconsistent, re-export it")
        return dict(zip(self.output_names, values))
