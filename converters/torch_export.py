"""torch export: the ``torch.export`` program (``estimator.pt2``) the SDK's torch backend runs without the
training code.

The estimator's outputs become a tuple in head order; the output names in that order and the metadata
travel in the file (extra file ``swiftavatar.json``) and in the export record. The batch dimension is
dynamic.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sdk_python.backends.torch_backend import EXTRA_FILE, load_program
from sdk_python.contract import output_name

from .metadata import metadata_json
from .onnx_export import _wrapper


def export_torch(model, path: str | Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Export ``model`` with ``torch.export`` and save it atomically to ``path``; returns the export record."""
    import torch
    path = Path(path)
    heads = list(model.head_names)
    size = int(model.config.input_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(_wrapper(model.cpu().eval(), heads), (torch.zeros(2, 3, size, size),),
                                  dynamic_shapes=({0: batch},))
    record = {"input_layout": "NCHW", "outputs": [output_name(h) for h in heads], "quantization": None,
              "torch": torch.__version__}
    extra = {EXTRA_FILE: json.dumps({**json.loads(metadata_json(metadata)), **record}, sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.part{path.suffix}")  # torch.export wants the .pt2 suffix
    torch.export.save(program, str(tmp), extra_files=extra)
    os.replace(tmp, path)
    return record


def run_exported(path: str | Path, record: dict[str, Any]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A callable: normalised NCHW float batch → outputs by name, run as the SDK runs it (parity uses it)."""
    import torch
    module, _ = load_program(Path(path).read_bytes())

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            return {n: v.float().numpy() for n, v in zip(record["outputs"], module(torch.from_numpy(x)))}
    return run
