"""AvatarSchema: JSON round-trip, vector validation, schema checks, training encoding and sampling."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from toolchain.engines.alter import ALTER_SCHEMA
from toolchain.engines.morph import MORPH_SCHEMA
from toolchain.schema import (SCHEMA_FORMAT_VERSION, AvatarSchema, ContinuousParam, DiscreteParam, SchemaError,
                              VectorError)

PARTS = ("background", "skin", "hair", "eyes")


def hand_schema() -> AvatarSchema:
    """A small schema exercising every optional field."""
    return AvatarSchema(
        engine="toy",
        version="3",
        parts=PARTS,
        params=(
            ContinuousParam("width", 0.0, 2.0, 1.0, part="skin", prior={"kind": "normal", "mean": 1.0, "std": 0.2},
                            description="face width"),
            ContinuousParam("tilt", -10.0, 10.0, 0.0),
            DiscreteParam("hair", ("none", "short", "long"), default=1, part="hair", weights=(1.0, 2.0, 0.5),
                          absent_option="none", description="hair style"),
            DiscreteParam("eyes", ("round", "almond"), default=0, part="eyes"),
        ),
    )


SCHEMAS = {"alter": ALTER_SCHEMA, "morph": MORPH_SCHEMA, "hand": hand_schema()}


# ----- JSON ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SCHEMAS))
def test_json_round_trip(name):
    schema = SCHEMAS[name]
    assert AvatarSchema.from_json(schema.to_json()) == schema
    assert AvatarSchema.loads(schema.dumps()) == schema
    # The JSON form survives a real serialisation: same content (ints may come back as floats)...
    again = AvatarSchema.loads(schema.dumps())
    assert json.loads(again.dumps()) == json.loads(schema.dumps())
    # ...and is textually stable from the first round trip on.
    assert AvatarSchema.loads(again.dumps()).dumps() == again.dumps()
    assert json.loads(schema.dumps())["format_version"] == SCHEMA_FORMAT_VERSION


def test_json_keeps_optional_fields():
    s = AvatarSchema.loads(hand_schema().dumps())
    width, tilt, hair, eyes = s.params
    assert width.prior == {"kind": "normal", "mean": 1.0, "std": 0.2}
    assert width.part == "skin" and width.description == "face width"
    assert tilt.prior is None and tilt.part is None
    assert hair.weights == (1.0, 2.0, 0.5)
    assert hair.absent_option == "none" and hair.may_be_absent and hair.absent_index == 0
    assert hair.default == 1 and hair.description == "hair style"
    assert not eyes.may_be_absent and eyes.absent_index is None
    assert s.version == "3" and s.parts == PARTS


def test_newer_format_version_rejected():
    data = hand_schema().to_json()
    data["format_version"] = SCHEMA_FORMAT_VERSION + 1
    with pytest.raises(SchemaError, match="newer"):
        AvatarSchema.from_json(data)
    with pytest.raises(SchemaError, match="newer"):
        AvatarSchema.loads(json.dumps(data))


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.pop("engine"), "engine"),
    (lambda d: d.pop("params"), "params"),
    (lambda d: d["params"][0].pop("low"), "low"),
    (lambda d: d["params"][0].update(kind="fuzzy"), "kind"),
])
def test_malformed_json_rejected(mutate, match):
    data = hand_schema().to_json()
    mutate(data)
    with pytest.raises(SchemaError, match=match):
        AvatarSchema.from_json(data)


def test_invalid_json_text_rejected():
    with pytest.raises(SchemaError, match="not valid JSON"):
        AvatarSchema.loads("{not json")


# ----- validation ------------------------------------------------------------------------------
def test_default_vector_validates():
    for schema in SCHEMAS.values():
        v = schema.default_vector()
        assert schema.validate(v) == v


def _expect_vector_error(schema, vector, param):
    with pytest.raises(VectorError) as info:
        schema.validate(vector)
    assert info.value.param == param
    assert param in str(info.value)
    return info.value


@pytest.mark.parametrize("schema_name", ["morph", "hand"])
def test_unknown_parameter(schema_name):
    schema = SCHEMAS[schema_name]
    v = schema.default_vector()
    v["wings"] = 1
    _expect_vector_error(schema, v, "wings")


@pytest.mark.parametrize("schema_name", list(SCHEMAS))
def test_missing_parameter(schema_name):
    schema = SCHEMAS[schema_name]
    for p in schema.params:
        v = schema.default_vector()
        del v[p.name]
        err = _expect_vector_error(schema, v, p.name)
        assert "missing" in str(err)


@pytest.mark.parametrize("schema_name", list(SCHEMAS))
def test_discrete_index_out_of_range(schema_name):
    schema = SCHEMAS[schema_name]
    for p in schema.discrete:
        for bad in (-1, len(p.options), len(p.options) + 7, np.int64(-3)):
            v = schema.default_vector()
            v[p.name] = bad
            err = _expect_vector_error(schema, v, p.name)
            assert "out of range" in str(err)


def test_discrete_unknown_label():
    schema = hand_schema()
    v = schema.default_vector()
    v["hair"] = "mullet"
    err = _expect_vector_error(schema, v, "hair")
    assert "mullet" in str(err)


def test_discrete_label_normalised_to_index():
    schema = hand_schema()
    v = schema.default_vector()
    v["hair"] = "long"
    v["eyes"] = "almond"
    out = schema.validate(v)
    assert out["hair"] == 2 and out["eyes"] == 1
    assert type(out["hair"]) is int
    # Integral floats and numpy ints are accepted as indices too.
    v.update(hair=np.int64(0), eyes=1.0)
    out = schema.validate(v)
    assert out["hair"] == 0 and type(out["hair"]) is int
    assert out["eyes"] == 1 and type(out["eyes"]) is int
    # Built-in schema, every label of every discrete parameter.
    for p in ALTER_SCHEMA.discrete:
        for k, label in enumerate(p.options):
            v = ALTER_SCHEMA.default_vector()
            v[p.name] = label
            assert ALTER_SCHEMA.validate(v)[p.name] == k


def test_labels_view():
    schema = hand_schema()
    v = schema.default_vector()
    assert schema.labels(v) == {"width": 1.0, "tilt": 0.0, "hair": "short", "eyes": "round"}


@pytest.mark.parametrize("name, value", [("width", float("nan")), ("width", np.float32("nan")),
                                         ("hair", float("nan")), ("hair", np.float64("nan"))])
def test_nan_rejected(name, value):
    schema = hand_schema()
    v = schema.default_vector()
    v[name] = value
    err = _expect_vector_error(schema, v, name)
    assert "NaN" in str(err)


@pytest.mark.parametrize("value", [-0.001, 2.001, 1e9, float("inf"), float("-inf")])
def test_continuous_out_of_range(value):
    schema = hand_schema()
    v = schema.default_vector()
    v["width"] = value
    err = _expect_vector_error(schema, v, "width")
    assert "outside" in str(err)


def test_continuous_range_is_inclusive():
    schema = hand_schema()
    for value in (0.0, 2.0, 1, np.float32(0.5), np.int64(2)):
        v = schema.default_vector()
        v["width"] = value
        out = schema.validate(v)
        assert out["width"] == float(value) and type(out["width"]) is float


@pytest.mark.parametrize("name, value", [
    ("width", True), ("width", False), ("width", "1.0"), ("width", None), ("width", [1.0]),
    ("hair", True), ("hair", 1.5), ("hair", None), ("hair", [1]), ("hair", float("inf")),
])
def test_wrong_types(name, value):
    schema = hand_schema()
    v = schema.default_vector()
    v[name] = value
    _expect_vector_error(schema, v, name)


def test_not_a_mapping():
    with pytest.raises(VectorError):
        hand_schema().validate([1, 2, 3])


def test_validate_many_names_index():
    schema = hand_schema()
    good = schema.default_vector()
    bad = dict(good, tilt=99.0)
    with pytest.raises(VectorError) as info:
        schema.validate_many([good, good, bad])
    assert info.value.index == 2 and info.value.param == "tilt"
    assert "#2" in str(info.value) and "tilt" in str(info.value)


# ----- schema construction errors --------------------------------------------------------------
def _schema_with(*params, parts=PARTS):
    return AvatarSchema(engine="bad", params=tuple(params), parts=parts)


OK_D = DiscreteParam("d", ("a", "b"))


@pytest.mark.parametrize("make, match", [
    (lambda: _schema_with(ContinuousParam("c", 1.0, 1.0, 1.0)), "low < high"),
    (lambda: _schema_with(ContinuousParam("c", 2.0, 1.0, 1.5)), "low < high"),
    (lambda: _schema_with(ContinuousParam("c", 0.0, float("inf"), 1.0)), "finite"),
    (lambda: _schema_with(ContinuousParam("c", float("nan"), 1.0, 0.5)), "finite"),
    (lambda: _schema_with(ContinuousParam("c", 0.0, 1.0, 1.5)), "outside"),
    (lambda: _schema_with(ContinuousParam("c", 0.0, 1.0, -0.5)), "outside"),
    (lambda: _schema_with(DiscreteParam("d", ("only",))), "at least 2"),
    (lambda: _schema_with(DiscreteParam("d", ())), "at least 2"),
    (lambda: _schema_with(DiscreteParam("d", ("a", "b", "a"))), "unique"),
    (lambda: _schema_with(DiscreteParam("d", ("a", "b"), default=2)), "out of range"),
    (lambda: _schema_with(DiscreteParam("d", ("a", "b"), default=-1)), "out of range"),
    (lambda: _schema_with(DiscreteParam("d", ("a", "b"), weights=(1.0,))), "weights"),
    (lambda: _schema_with(DiscreteParam("d", ("a", "b"), weights=(1.0, 1.0, 1.0))), "weights"),
    (lambda: _schema_with(DiscreteParam("d", ("a", "b"), weights=(1.0, -1.0))), "weights"),
    (lambda: _schema_with(DiscreteParam("d", ("a", "b"), weights=(0.0, 0.0))), "weights"),
    (lambda: _schema_with(DiscreteParam("d", ("a", "b"), weights=(1.0, float("nan")))), "weights"),
    (lambda: _schema_with(DiscreteParam("d", ("a", "b"), weights=(1.0, float("inf")))), "weights"),
    (lambda: _schema_with(DiscreteParam("d", ("a", "b"), absent_option="none")), "absent_option"),
    (lambda: _schema_with(OK_D, DiscreteParam("d", ("x", "y"))), "duplicate parameter names"),
    (lambda: _schema_with(OK_D, ContinuousParam("d", 0.0, 1.0, 0.5)), "duplicate parameter names"),
    (lambda: _schema_with(), "no parameters"),
    (lambda: _schema_with(DiscreteParam("d", ("a", "b"), part="wings")), "wings"),
    (lambda: _schema_with(ContinuousParam("c", 0.0, 1.0, 0.5, part="tail")), "tail"),
    (lambda: _schema_with(OK_D, parts=("skin", "background")), "background"),
    (lambda: _schema_with(OK_D, parts=()), "background"),
    (lambda: _schema_with(OK_D, parts=("background", "skin", "skin")), "unique"),
    (lambda: _schema_with(ContinuousParam("c", 0.0, 1.0, 0.5, prior={"kind": "beta"})), "prior kind"),
    (lambda: _schema_with(ContinuousParam("c", 0.0, 1.0, 0.5, prior={"mean": 0.5})), "prior kind"),
    (lambda: _schema_with(ContinuousParam("c", 0.0, 1.0, 0.5, prior={"kind": "normal", "mean": 0.5})), "std"),
    (lambda: _schema_with(ContinuousParam("c", 0.0, 1.0, 0.5, prior={"kind": "normal", "mean": 0.5, "std": 0})), "std"),
    (lambda: _schema_with(ContinuousParam("c", 0.0, 1.0, 0.5, prior={"kind": "normal", "mean": 0.5, "std": -1})), "std"),
    (lambda: _schema_with(ContinuousParam("c", 0.0, 1.0, 0.5, prior={"kind": "normal", "std": 0.1})), "mean"),
])
def test_schema_errors(make, match):
    with pytest.raises(SchemaError, match=match):
        make()


def test_schema_error_names_parameter():
    with pytest.raises(SchemaError, match="'spiky'"):
        _schema_with(DiscreteParam("spiky", ("a",)))
    with pytest.raises(SchemaError, match=r"\['d'\]"):
        _schema_with(OK_D, OK_D)


def test_schema_errors_from_json_too():
    data = hand_schema().to_json()
    data["params"][0]["low"] = 5.0  # low > high
    with pytest.raises(SchemaError, match="width"):
        AvatarSchema.from_json(data)


# ----- encode / decode -------------------------------------------------------------------------
def test_encode_decode_round_trip_hand():
    schema = hand_schema()
    vectors = [
        {"width": 0.0, "tilt": -10.0, "hair": 0, "eyes": 1},
        {"width": 2.0, "tilt": 10.0, "hair": 2, "eyes": 0},
        {"width": 0.5, "tilt": 2.5, "hair": "short", "eyes": "almond"},
    ]
    cont, disc = schema.encode(vectors)
    assert cont.shape == (3, 2) and cont.dtype == np.float32
    assert disc.shape == (3, 2) and disc.dtype == np.int64
    np.testing.assert_allclose(cont, [[0.0, 0.0], [1.0, 1.0], [0.25, 0.625]], atol=1e-6)
    np.testing.assert_array_equal(disc, [[0, 1], [2, 0], [1, 1]])
    decoded = schema.decode(cont, disc)
    expected = schema.validate_many(vectors)
    assert len(decoded) == 3
    for d, e in zip(decoded, expected):
        assert list(d) == list(schema.names)  # schema order
        assert d.keys() == e.keys()
        for k in e:
            assert d[k] == pytest.approx(e[k], abs=1e-5)
        assert schema.validate(d) == d


@pytest.mark.parametrize("schema_name", ["alter", "morph"])
def test_encode_decode_round_trip_builtin(schema_name):
    schema = SCHEMAS[schema_name]
    vectors = schema.sample(40, seed=3)
    cont, disc = schema.encode(vectors)
    assert cont.shape == (40, len(schema.continuous)) and disc.shape == (40, len(schema.discrete))
    assert ((cont >= 0) & (cont <= 1)).all()
    decoded = schema.decode(cont, disc)
    for d, v in zip(decoded, vectors):
        for p in schema.continuous:
            assert d[p.name] == pytest.approx(v[p.name], abs=1e-6)
        for p in schema.discrete:
            assert d[p.name] == v[p.name] and type(d[p.name]) is int


def test_decode_clips_continuous():
    schema = hand_schema()
    out = schema.decode(np.array([[-0.5, 1.7], [2.0, -3.0]]), np.array([[0, 1], [2, 0]]))
    assert out[0]["width"] == 0.0 and out[0]["tilt"] == 10.0
    assert out[1]["width"] == 2.0 and out[1]["tilt"] == -10.0
    for v in out:
        schema.validate(v)


def test_decode_one_kind_only():
    # alter has no continuous parameters, a continuous-only schema has no discrete ones.
    out = ALTER_SCHEMA.decode(np.zeros((2, 0)), np.array([[1, 2, 3, 0, 1, 2], [0, 0, 0, 0, 0, 0]]))
    assert out[0] == {"hair_style": 1, "hair_color": 2, "skin_tone": 3, "eye_style": 0, "glasses": 1, "facial_hair": 2}
    assert len(out) == 2
    cont_only = AvatarSchema(engine="c", params=(ContinuousParam("a", 0.0, 4.0, 1.0),))
    assert cont_only.decode(np.array([[0.5], [1.0]]), np.zeros((2, 0), dtype=int)) == [{"a": 2.0}, {"a": 4.0}]
    cont, disc = cont_only.encode([{"a": 1.0}])
    assert cont.shape == (1, 1) and disc.shape == (1, 0)


def test_decode_row_mismatch():
    schema = hand_schema()
    with pytest.raises(ValueError):
        schema.decode(np.zeros((2, 2)), np.zeros((3, 2), dtype=int))


def test_encode_validates():
    schema = hand_schema()
    with pytest.raises(VectorError) as info:
        schema.encode([schema.default_vector(), {"width": 1.0}])
    assert info.value.index == 1


# ----- sampling --------------------------------------------------------------------------------
@pytest.mark.parametrize("schema_name", list(SCHEMAS))
def test_sample_deterministic_and_valid(schema_name):
    schema = SCHEMAS[schema_name]
    a = schema.sample(30, seed=7)
    b = schema.sample(30, seed=7)
    c = schema.sample(30, seed=8)
    assert a == b
    assert a != c
    assert sum(x != y for x, y in zip(a, c)) >= 25
    for v in a:
        assert schema.validate(v) == v
        for p in schema.continuous:
            assert type(v[p.name]) is float
        for p in schema.discrete:
            assert type(v[p.name]) is int


@pytest.mark.parametrize("schema_name", list(SCHEMAS))
def test_sample_prefix_stable(schema_name):
    schema = SCHEMAS[schema_name]
    assert schema.sample(10, 5) == schema.sample(50, 5)[:10]
    assert schema.sample(50, 5)[17] == schema.sample_one(5, 17)
    assert schema.sample(0, 5) == []
    with pytest.raises(ValueError):
        schema.sample(-1, 5)


def _prior_schema(weights=(8.0, 1.0, 0.0, 1.0), prior=None):
    return AvatarSchema(engine="prior", params=(
        DiscreteParam("d", ("heavy", "light", "never", "light2"), weights=weights),
        ContinuousParam("c", 0.0, 1.0, 0.5, prior=prior),
    ))


N_STAT = 4000


def test_weights_honoured():
    vs = _prior_schema().sample(N_STAT, seed=11)
    counts = np.bincount([v["d"] for v in vs], minlength=4)
    assert counts[2] == 0  # weight 0: never drawn
    freq = counts / N_STAT
    # Expected 0.8 / 0.1 / 0 / 0.1; binomial std at n=4000 is < 0.007.
    assert abs(freq[0] - 0.8) < 0.04
    assert abs(freq[1] - 0.1) < 0.03 and abs(freq[3] - 0.1) < 0.03
    assert counts[0] > 5 * max(counts[1], counts[3])


def test_builtin_weights_honoured():
    vs = ALTER_SCHEMA.sample(N_STAT, seed=2)
    glasses = np.bincount([v["glasses"] for v in vs], minlength=6) / N_STAT
    # weights (3, 1, 1, 1, 1, 1): "none" 3/8, each other 1/8
    assert abs(glasses[0] - 3 / 8) < 0.04
    assert (glasses[1:] > 0.08).all() and (glasses[1:] < 0.17).all()


def test_unweighted_discrete_is_uniform():
    schema = _prior_schema(weights=None)
    counts = np.bincount([v["d"] for v in schema.sample(N_STAT, seed=4)], minlength=4) / N_STAT
    assert (np.abs(counts - 0.25) < 0.04).all()


def test_normal_prior_concentrated():
    normal = np.array([v["c"] for v in _prior_schema(prior={"kind": "normal", "mean": 0.3, "std": 0.05})
                       .sample(N_STAT, seed=1)])
    uniform = np.array([v["c"] for v in _prior_schema().sample(N_STAT, seed=1)])
    assert ((normal >= 0) & (normal <= 1)).all() and ((uniform >= 0) & (uniform <= 1)).all()
    assert abs(normal.mean() - 0.3) < 0.01
    assert abs(normal.std() - 0.05) < 0.01
    near = lambda x: np.mean(np.abs(x - 0.3) < 0.1)  # noqa: E731
    assert near(normal) > 0.93  # ~0.954 for N(0.3, 0.05)
    assert 0.15 < near(uniform) < 0.25  # 0.2 for U(0, 1)
    assert abs(uniform.mean() - 0.5) < 0.03
    assert abs(uniform.std() - 1 / math.sqrt(12)) < 0.02


def test_normal_prior_truncated_not_clipped():
    # Mean at the edge of the range: truncation must resample, not pile values onto the bound.
    xs = np.array([v["c"] for v in _prior_schema(prior={"kind": "normal", "mean": 1.0, "std": 0.3})
                   .sample(N_STAT, seed=9)])
    assert ((xs >= 0) & (xs <= 1)).all()
    assert np.mean(xs == 1.0) < 0.01 and np.mean(xs == 0.0) < 0.01
    assert xs.mean() > 0.7  # skewed towards the mean


def test_morph_prior_from_schema():
    xs = np.array([v["face_width"] for v in MORPH_SCHEMA.sample(N_STAT, seed=0)])
    # N(0.5, 0.25) truncated to [0, 1]: more mass near the middle than uniform.
    assert np.mean(np.abs(xs - 0.5) < 0.25) > 0.6
    assert abs(xs.mean() - 0.5) < 0.02
