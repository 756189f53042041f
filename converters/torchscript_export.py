"""TorchScript export: what the SDK's torch backend runs without the training code.

The estimator is traced with its outputs as a tuple in head order; the output names in that order and
the metadata travel in the file (extra file ``swiftavatar.json``) and in the export record.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sdk_python.backends.torch_backend import EXTRA_FILE
from sdk_python.contract import output_name

from .metadata import metadata_json
from .onnx_export import _wrapper


def export_torchscript(model, path: str | Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Trace ``model`` and save it atomically to ``path``; returns the export record."""
    import torch
    path = Path(path)
    heads = list(model.head_names)
    names = [output_name(h) for h in heads]
    size = int(model.config.input_size)
    with torch.no_grad():
        traced = torch.jit.trace(_wrapper(model.cpu().eval(), heads), torch.zeros(1, 3, size, size), check_trace=False)
    record = {"input_layout": "NCHW", "outputs": names, "quantization": None, "torch": torch.__version__}
    extra = {EXTRA_FILE: json.dumps({**json.loads(metadata_json(metadata)), **record}, sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    torch.jit.save(traced, str(tmp), _extra_files=extra)
    os.replace(tmp, path)
    return record


def run_torchscript(path: str | Path, record: dict[str, Any]):
    """A callable: normalised NCHW float batch → outputs by name (the parity check uses it)."""
    import torch
    module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x):
        with torch.inference_mode():
            return {n: v.float().numpy() for n, v in zip(record["outputs"], module(torch.from_numpy(x)))}
    return run
