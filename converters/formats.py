"""Export formats: what the converters need beyond the model contract, and ``--formats`` parsing.

File names, precisions per format, model keys, runtimes and input layouts are rows of the model contract
(:mod:`sdk_python.contract`), which the SDK reads too; this module adds only what the *exporter* needs to
know about a format (calibration, the packages it uses, where its models can be run for parity).

``parse_targets("onnx,tflite:int8,coreml")`` turns a ``--formats`` value into ``[Target]``; a bare
format name means all its precisions, ``format:precision`` picks one. Unsupported combinations are
refused here, with the contract's allowed values in the message.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Iterable, Sequence

from sdk_python import contract
from toolchain.errors import AvatarToolError

PRECISIONS = contract.PRECISIONS


@dataclass(frozen=True)
class FormatSpec:
    name: str
    needs_calibration: tuple[str, ...]   # precisions that need --int8-calibration images
    runs_here: str                       # where prediction can run (parity needs it)
    packages: tuple[str, ...]
    note: str

    @property
    def precisions(self) -> tuple[str, ...]:
        return contract.precisions_of(self.name)

    @property
    def input_layout(self) -> str:
        return ", ".join(dict.fromkeys(contract.row(self.name, p).input_layout for p in self.precisions))

    def filename(self, precision: str) -> str:
        return contract.row(self.name, precision).file


FORMATS: dict[str, FormatSpec] = {
    "onnx": FormatSpec("onnx", (), "everywhere (onnxruntime)", ("onnx", "onnxruntime"),
                       "one named output per head, dynamic batch; also the input of TFLite"),
    "tflite": FormatSpec("tflite", ("int8",), "everywhere (LiteRT)", ("onnx2tf", "tensorflow", "ai-edge-litert"),
                         "via onnx2tf; int8 = full-integer weights+activations with float32 in/out"),
    "coreml": FormatSpec("coreml", (), "macOS only (spec validated elsewhere)", ("coremltools",),
                         "mlprogram .mlpackage; int8 = linear_quantize_weights"),
    "torch": FormatSpec("torch", (), "everywhere (torch, no toolchain needed)", ("torch",),
                        "torch.export program (.pt2), outputs in head order; the SDK's torch backend"),
}
assert set(FORMATS) == set(contract.formats()), "every contract format needs its converter entry"


@dataclass(frozen=True)
class Target:
    format: str
    precision: str

    @property
    def spec(self) -> FormatSpec:
        return FORMATS[self.format]

    @property
    def filename(self) -> str:
        return self.spec.filename(self.precision)

    @property
    def key(self) -> str:
        """``format:precision`` (the name in parity tables and export records)."""
        return f"{self.format}:{self.precision}"

    @property
    def row(self) -> contract.ModelRow:
        return contract.row(self.format, self.precision)


def _check_precision(fmt: str, precision: str) -> None:
    if precision not in PRECISIONS:
        raise AvatarToolError(f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})")
    if precision not in FORMATS[fmt].precisions:
        raise AvatarToolError(f"format '{fmt}' does not support precision '{precision}' "
                              f"(it accepts: {', '.join(FORMATS[fmt].precisions)})")


def parse_targets(formats: str | Sequence[str], precisions: Iterable[str] | None = None) -> list[Target]:
    """Parse ``"onnx,tflite:fp16,coreml"``; ``precisions`` (optional) keeps only those precisions for bare names.

    Raises:
        AvatarToolError: unknown format or precision, or a combination the table does not allow.
    """
    items = [s.strip() for s in (formats.split(",") if isinstance(formats, str) else formats) if s.strip()]
    if not items:
        raise AvatarToolError(f"no format given (choose from {', '.join(FORMATS)})")
    wanted = None if precisions is None else [p.strip() for p in precisions if p.strip()]
    for p in wanted or []:
        if p not in PRECISIONS:
            raise AvatarToolError(f"unknown precision '{p}' (choose from {', '.join(PRECISIONS)})")
    targets: list[Target] = []
    for item in items:
        fmt, _, prec = item.partition(":")
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise AvatarToolError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
        if prec:
            _check_precision(fmt, prec)
            chosen = [prec]
        else:
            chosen = [p for p in FORMATS[fmt].precisions if wanted is None or p in wanted]
            if not chosen:
                raise AvatarToolError(f"format '{fmt}' supports none of the precisions {', '.join(wanted or [])} "
                                      f"(it accepts: {', '.join(FORMATS[fmt].precisions)})")
        for p in chosen:
            t = Target(fmt, p)
            if t not in targets:
                targets.append(t)
    return targets


def coreml_predicts_here() -> bool:
    return platform.system() == "Darwin"
