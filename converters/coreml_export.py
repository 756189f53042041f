"""CoreML export: an mlprogram ``.mlpackage`` with an RGB image input, fp16 or int8 weights.

Import order matters: importing coremltools before torch segfaults on Linux (tensorflow's and
triton's native libraries clash), so :func:`import_coremltools` imports torch first. coremltools 9.0
is tested up to torch 2.7 and warns about newer torch (2.14 here); the conversion below works with
torch 2.14.1 (traced model → mlprogram), and ``predict`` runs on macOS only: on Linux the saved spec
(inputs, outputs, metadata) is validated instead.

The image input takes 0-255 RGB pixels; CoreML's ``ImageType`` folds only a *scalar* scale, so the
input is scaled by 1/255 there and the per-channel ``(x - mean) / std`` runs inside the model.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Sequence

from toolchain.errors import AvatarToolError

from sdk_python.contract import output_name

IMAGE_INPUT = "image"
TESTED_TORCH = "coremltools 9.0 is tested with torch <= 2.7; torch 2.14.1 converts this model correctly but warns"


def import_coremltools():
    """Import coremltools safely: torch (and its dynamo native libraries) first, then coremltools."""
    import torch  # noqa: F401  - must come first
    import torch._dynamo  # noqa: F401
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import coremltools as ct
    return ct


def _wrapper(model, heads: Sequence[str]):
    import torch

    class ImageModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.register_buffer("mean", torch.tensor(model.config.mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(model.config.std).view(1, 3, 1, 1))

        def forward(self, x):  # x: RGB in [0, 1] (the ImageType scaled 0-255 by 1/255)
            out = self.model((x - self.mean) / self.std)
            return tuple(out[h] for h in heads)

    return ImageModel().eval()


def export_coreml(model, path: str | Path, metadata: dict[str, Any], precision: str) -> dict[str, Any]:
    """Write an mlprogram ``.mlpackage`` (fp16 compute; ``int8``: fp16 + int8 linear weight quantization)."""
    import torch
    ct = import_coremltools()
    if precision not in ("fp16", "int8"):
        raise AvatarToolError(f"CoreML precision '{precision}' is not supported (fp16, int8)")
    path = Path(path)
    heads = list(model.head_names)
    names = [output_name(h) for h in heads]
    size = int(model.config.input_size)
    wrapped = _wrapper(model.cpu().eval(), heads)
    with torch.no_grad():
        traced = torch.jit.trace(wrapped, torch.rand(1, 3, size, size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ml = ct.convert(traced, convert_to="mlprogram",
                        inputs=[ct.ImageType(name=IMAGE_INPUT, shape=(1, 3, size, size), scale=1 / 255.0,
                                             bias=[0.0, 0.0, 0.0], color_layout=ct.colorlayout.RGB)],
                        outputs=[ct.TensorType(name=n) for n in names],
                        compute_precision=ct.precision.FLOAT16,
                        minimum_deployment_target=ct.target.iOS16)
        quant = {"weights": "float16", "compute": "float16"}
        if precision == "int8":
            import coremltools.optimize.coreml as cto
            cfg = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"))
            ml = cto.linear_quantize_weights(ml, config=cfg)
            quant = {"weights": "int8 linear symmetric (coremltools.optimize)", "compute": "float16"}
    ml.author = metadata["created_by"]
    ml.version = str(metadata["model_version"])
    ml.short_description = (f"SwiftAvatar estimator for engine '{metadata['engine']}': RGB face crop "
                            f"{size}x{size} -> avatar parameters ({precision})")
    ml.user_defined_metadata["swiftavatar"] = json.dumps(metadata, sort_keys=True)
    ml.user_defined_metadata["engine"] = metadata["engine"]
    ml.user_defined_metadata["schema"] = json.dumps(metadata["schema"], sort_keys=True)
    ml.user_defined_metadata["output_map"] = json.dumps(metadata["outputs"], sort_keys=True)
    ml.user_defined_metadata["precision"] = precision
    if path.exists():
        shutil.rmtree(path)
    ml.save(str(path))
    return {"input_layout": "image RGB 0-255 (normalisation inside)", "quantization": quant,
            "outputs": names, "input": IMAGE_INPUT}


def validate_coreml_spec(path: str | Path, expected_outputs: Sequence[str], size: int) -> dict[str, Any]:
    """Check a saved .mlpackage without running it: image input of the right size, outputs by name, metadata.

    Raises:
        AvatarToolError: the spec does not match.
    """
    ct = import_coremltools()
    spec = ct.utils.load_spec(str(path))
    problems = []
    if spec.WhichOneof("Type") != "mlProgram":
        problems.append(f"not an mlprogram ({spec.WhichOneof('Type')})")
    inputs = list(spec.description.input)
    if len(inputs) != 1 or inputs[0].type.WhichOneof("Type") != "imageType":
        problems.append(f"expected one image input, got {[i.name for i in inputs]}")
    else:
        img = inputs[0].type.imageType
        if (img.width, img.height) != (size, size):
            problems.append(f"image input is {img.width}x{img.height}, expected {size}x{size}")
    outs = [o.name for o in spec.description.output]
    if sorted(outs) != sorted(expected_outputs):
        problems.append(f"outputs {outs} != expected {list(expected_outputs)}")
    meta = dict(spec.description.metadata.userDefined)
    for key in ("swiftavatar", "schema", "output_map"):
        if key not in meta:
            problems.append(f"user_defined_metadata lacks '{key}'")
    if not spec.description.metadata.author or not spec.description.metadata.versionString:
        problems.append("author/version missing")
    if problems:
        raise AvatarToolError(f"{Path(path).name}: " + "; ".join(problems))
    return {"inputs": [i.name for i in inputs], "outputs": outs, "spec_version": int(spec.specificationVersion),
            "metadata_keys": sorted(meta)}


def predict_coreml(path: str | Path, images_uint8_nhwc) -> list[dict[str, Any]]:  # pragma: no cover - macOS only
    """Run the package on uint8 RGB images (macOS only); returns one {output name: array} per image."""
    ct = import_coremltools()
    from PIL import Image
    ml = ct.models.MLModel(str(path))
    return [ml.predict({IMAGE_INPUT: Image.fromarray(img)}) for img in images_uint8_nhwc]


def dir_size(path: str | Path) -> int:
    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
