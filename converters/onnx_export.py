"""ONNX export: one named output per head, dynamic batch, checked, with the metadata in metadata_props."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sdk_python.contract import INPUT_NAME, output_name
from toolchain.errors import AvatarToolError

from .metadata import metadata_json

OPSET = 17



def _wrapper(model, heads: Sequence[str]):
    import torch

    class Heads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            out = self.model(x)
            return tuple(out[h] for h in heads)

    return Heads().eval()


def export_onnx(model, path: str | Path, metadata: dict[str, Any], head_order: Sequence[str] | None = None) -> dict[str, Any]:
    """Write ``path`` (opset 17, legacy exporter), run onnx.checker and return a report.

    ``head_order`` changes the order of the outputs (tests use it to prove readers map by name).
    """
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    heads = list(head_order or model.head_names)
    if sorted(heads) != sorted(model.head_names):
        raise AvatarToolError(f"head_order {heads} is not a permutation of the model's heads {model.head_names}")
    names = [output_name(h) for h in heads]
    size = int(model.config.input_size)
    dummy = torch.zeros(1, 3, size, size)
    axes = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_wrapper(model.cpu().eval(), heads), (dummy,), str(path), input_names=[INPUT_NAME],
                          output_names=names, dynamic_axes=axes, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for k, v in {"swiftavatar": metadata_json(metadata), "engine": metadata["engine"],
                 "input_size": str(size), "created_by": metadata["created_by"]}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "swiftavatar"
    proto.model_version = 1
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return {"file": path.name, "outputs": names, "opset": OPSET, "checker": "passed"}


def onnx_session(path: str | Path, threads: int = 2):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_onnx(session, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs by name (the session knows them), for a normalised float NCHW batch."""
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {session.get_inputs()[0].name: np.ascontiguousarray(x_nchw, np.float32)})
    return dict(zip(names, values))


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    import onnx
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}
