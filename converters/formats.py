"""The one table of export formats, the precisions each accepts, and the files they produce.

``parse_targets("onnx,tflite:int8,coreml")`` turns a ``--formats`` value into ``[Target]``; a bare
format name means all its default precisions, ``format:precision`` picks one. Unsupported
combinations are refused here, with the table's allowed values in the message.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Iterable, Sequence

from toolchain.errors import AvatarToolError

PRECISIONS = {
    "fp32": "32-bit float weights and activations",
    "fp16": "16-bit float weights (activations fp16 where the runtime allows)",
    "int8": "8-bit integer: TFLite full-integer (calibrated, float32 in/out); CoreML int8 weights",
    "dynamic_int8": "8-bit weights, float activations quantised on the fly (no calibration)",
}


@dataclass(frozen=True)
class FormatSpec:
    name: str
    precisions: tuple[str, ...]          # what this format accepts, in table order
    needs_calibration: tuple[str, ...]   # precisions that need --int8-calibration images
    runs_here: str                       # where prediction can run (parity needs it)
    input_layout: str
    packages: tuple[str, ...]
    note: str

    def filename(self, precision: str) -> str:
        if self.name == "onnx":
            return "estimator.onnx"
        suffix = {"tflite": ".tflite", "coreml": ".mlpackage"}[self.name]
        return f"estimator_{precision}{suffix}"


FORMATS: dict[str, FormatSpec] = {
    "onnx": FormatSpec("onnx", ("fp32",), (), "everywhere (onnxruntime)", "NCHW float, normalised",
                       ("onnx", "onnxruntime"), "one named output per head, dynamic batch; also the input of TFLite"),
    "tflite": FormatSpec("tflite", ("fp32", "fp16", "dynamic_int8", "int8"), ("int8",), "everywhere (LiteRT)",
                         "NHWC float, normalised", ("onnx2tf", "tensorflow", "ai-edge-litert"),
                         "via onnx2tf; int8 = full-integer weights+activations with float32 in/out"),
    "coreml": FormatSpec("coreml", ("fp16", "int8"), (), "macOS only (spec validated elsewhere)",
                         "RGB image 0-255 (normalisation inside the model)", ("coremltools",),
                         "mlprogram .mlpackage; int8 = linear_quantize_weights"),
}


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
        return f"{self.format}:{self.precision}"


def format_table() -> list[tuple[str, str, str, str, str]]:
    """Rows (format, precisions, needs calibration, runs, input) for help texts and the README."""
    return [(f.name, ", ".join(f.precisions), ", ".join(f.needs_calibration) or "-", f.runs_here, f.input_layout)
            for f in FORMATS.values()]


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
