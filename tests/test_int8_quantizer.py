"""converters.int8_quant.Int8Quantizer on a real (small) TensorFlow saved model: its one-call quantization
gives the bytes of the QuantizationDebugger's own non-debug path, for any set of float layers and both weight
scalings, and the layer errors it ranks are those of the calibrated model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests._ci import import_or_skip_unless_ci


def _saved_model(path: Path) -> Path:
    """conv 3x3 (8) -> relu -> conv 1x1 (4) -> mean -> dense (5): per-channel scales differ from per-tensor ones."""
    tf = import_or_skip_unless_ci("tensorflow")
    rng = np.random.default_rng(0)

    class Net(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            # channels of very different sizes, so one scale per tensor rounds differently from one per channel
            w1 = rng.normal(size=(3, 3, 3, 8)) * np.array([0.05, 0.1, 0.3, 1, 2, 4, 0.5, 0.02])
            self.w1 = tf.Variable(w1.astype(np.float32))
            self.w2 = tf.Variable(rng.normal(size=(1, 1, 8, 4)).astype(np.float32))
            self.w3 = tf.Variable(rng.normal(size=(4, 5)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32, name="image")])
        def __call__(self, x):
            h = tf.nn.relu(tf.nn.conv2d(x, self.w1, 1, "SAME"))
            h = tf.reduce_mean(tf.nn.conv2d(h, self.w2, 1, "SAME"), axis=[1, 2])
            return {"logits": tf.matmul(h, self.w3)}

    net = Net()
    tf.saved_model.save(net, str(path), signatures={"serving_default": net.__call__})
    return path


def _quantizer(saved_model: Path, per_channel: bool):
    from converters.int8_quant import Int8Quantizer
    calib = np.random.default_rng(1).uniform(0, 1, (12, 16, 16, 3)).astype(np.float32)
    return Int8Quantizer(saved_model, calib, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), per_channel=per_channel)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    import_or_skip_unless_ci("torchvision")   # torchvision's import segfaults after TensorFlow's here: load it first
    return _saved_model(tmp_path_factory.mktemp("int8q") / "saved_model")


@pytest.mark.parametrize("per_channel", [True, False])
def test_quantize_gives_the_debuggers_own_bytes_for_every_float_set(saved_model, per_channel):
    tf = import_or_skip_unless_ci("tensorflow")
    from converters.int8_quant import compute_layers
    q = _quantizer(saved_model, per_channel)
    layers = compute_layers(q.layer_errors())
    assert len(layers) >= 2, layers
    models = {}
    for denied in ([], layers[:1], layers):
        q.debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(denied))
        expected = bytes(q.debugger.get_nondebug_quantized_model())
        models[len(denied)] = q.quantize(denied)
        assert models[len(denied)] == expected, f"float layers {denied}"
    assert len(set(models.values())) == 3   # each float set is a different model
    # layer errors after quantize() calls are the same as before them (the debug model was not replaced)
    q2 = _quantizer(saved_model, per_channel)
    first = [(e.tensor, round(e.rmse_over_scale, 6)) for e in q2.layer_errors()]
    q2.quantize(layers[:1])
    assert [(e.tensor, round(e.rmse_over_scale, 6)) for e in q2.layer_errors()] == first


def test_per_channel_and_per_tensor_scales_give_different_models(saved_model):
    assert _quantizer(saved_model, per_channel=True).quantize() != _quantizer(saved_model, per_channel=False).quantize()
