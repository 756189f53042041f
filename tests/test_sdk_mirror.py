"""Mirror test-time augmentation: the crop and its mirror are averaged, mirror-sensitive parameters mapped
through the schema's ``mirror`` field, so a photo and its mirror image get the same (mapped) answer."""
from __future__ import annotations

import numpy as np
import pytest

from sdk_python import AvatarEstimator
from sdk_python.decode import RawEstimate, SchemaDecoder
from toolchain.schema import AvatarSchema, ContinuousParam, DiscreteParam, SchemaError


SCHEMA = {"engine": "t", "params": [
    {"name": "tilt", "kind": "continuous", "low": -10.0, "high": 10.0, "mirror": "reflect"},
    {"name": "width", "kind": "continuous", "low": 0.0, "high": 2.0},
    {"name": "parting", "kind": "discrete", "options": ["left", "none", "right"], "mirror": [2, 1, 0]},
    {"name": "glasses", "kind": "discrete", "options": ["none", "round"]},
]}


def test_merge_maps_mirrored_answers_back_before_averaging():
    dec = SchemaDecoder(SCHEMA)
    raw = RawEstimate(np.array([0.8, 0.3]), {"parting": np.array([0.7, 0.2, 0.1]), "glasses": np.array([0.9, 0.1])})
    # the mirrored crop sees the parting on the other side and the tilt reflected
    mir = RawEstimate(np.array([0.2, 0.5]), {"parting": np.array([0.1, 0.2, 0.7]), "glasses": np.array([0.5, 0.5])})
    merged, spread = dec.merge_mirrored(raw, mir)
    assert np.allclose(merged.continuous, [0.8, 0.4]) and np.allclose(spread, [0.0, 0.1])
    assert np.allclose(merged.probabilities["parting"], [0.7, 0.2, 0.1])
    assert np.allclose(merged.probabilities["glasses"], [0.7, 0.3])
    params, vector = dec.parameters(merged, spread=spread)
    assert vector["parting"] == 0 and params["tilt"].uncertainty == pytest.approx(0.0)
    assert params["width"].uncertainty == pytest.approx(0.1 * 2.0)     # in the parameter's own units


def test_schema_mirror_field_round_trips_and_is_checked():
    schema = AvatarSchema.from_json(SCHEMA)
    assert schema.param("parting").mirror == (2, 1, 0) and schema.param("tilt").mirror == "reflect"
    assert AvatarSchema.from_json(schema.to_json()).to_json() == schema.to_json()
    with pytest.raises(SchemaError, match="its own inverse"):
        DiscreteParam("p", ("a", "b", "c"), mirror=(1, 2, 0)).check()
    with pytest.raises(SchemaError, match="mirror must be"):
        ContinuousParam("c", 0.0, 1.0, 0.5, mirror="flip").check()


def test_with_mirror_tta_a_photo_and_its_mirror_get_the_same_answer(tiny_export):  # noqa: F811
    img = np.random.default_rng(5).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    out = {}
    for tta in (False, True):
        with AvatarEstimator.create_from_bundle(tiny_export, detection="none", mirror_tta=tta) as est:
            a, b = est.estimate(img, color_order="rgb"), est.estimate(img[:, ::-1], color_order="rgb")
        out[tta] = max(max(abs(x - y) for x, y in zip(a.parameters[k].probabilities, b.parameters[k].probabilities))
                       for k in a.parameters if a.parameters[k].kind == "discrete")
        assert a.extras["mirror_tta"] is tta
    assert out[True] < 1e-4 < out[False]
