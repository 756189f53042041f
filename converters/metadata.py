"""The one metadata dict embedded in every exported format (and copied into the bundle manifest).

Output names come from the model contract (:mod:`sdk_python.contract`), so every format names its
outputs the same way and every reader maps outputs to parameters by name, never by position::

    continuous            [B, C]  the continuous parameters, normalised to [0, 1], in schema order
    logits_<parameter>    [B, K]  logits of one discrete parameter (argmax = option index)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sdk_python.contract import CONTINUOUS_HEAD, INPUT_NAME, METADATA_VERSION, output_name
from toolchain.pipeline.fingerprint import file_digest
from toolchain.schema import AvatarSchema


def package_version() -> str:
    try:
        from importlib.metadata import version
        return version("swiftavatar")
    except Exception:  # pragma: no cover - source checkout without install
        return "0+unknown"


def created_by() -> str:
    return f"swiftavatar {package_version()} (avatartool export)"


def output_map(schema: AvatarSchema, heads: list[str]) -> dict[str, dict[str, Any]]:
    """Output name → what it holds, for the heads in ``heads`` order."""
    out: dict[str, dict[str, Any]] = {}
    for h in heads:
        if h == CONTINUOUS_HEAD:
            out[output_name(h)] = {"kind": "continuous", "parameters": [p.name for p in schema.continuous],
                                   "range": [0.0, 1.0],
                                   "decode": "value = low + clip(x, 0, 1) * (high - low) per parameter"}
        else:
            p = schema.param(h)
            out[output_name(h)] = {"kind": "discrete", "parameter": p.name, "options": list(p.options),
                                   "decode": "option index = argmax(logits)"}
    return out


def build_metadata(model, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """The metadata dict for an :class:`AvatarEstimator` (schema, engine, input, outputs, version, created-by)."""
    cfg = model.config
    schema: AvatarSchema = model.schema
    return {
        "metadata_version": METADATA_VERSION,
        "created_by": created_by(),
        "model_version": package_version(),
        "engine": schema.engine,
        "schema": schema.to_json(),
        "input": {"name": INPUT_NAME, "size": int(cfg.input_size), "color": "RGB",
                  "normalization": {"scale": 1 / 255.0, "mean": list(cfg.mean), "std": list(cfg.std),
                                    "formula": "x = (pixel / 255 - mean) / std"}},
        "outputs": output_map(schema, list(model.head_names)),
        "source_checkpoint_sha256": file_digest(checkpoint) if checkpoint else None,
    }


def metadata_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))
