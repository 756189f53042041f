"""The built-in engines (alter, morph): determinism, output format, masks, and that every parameter shows."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from toolchain.engines.alter import AlterEngine
from toolchain.engines.face_art import HAIR_STYLES, SKIN_TONES
from toolchain.engines.morph import MorphEngine
from toolchain.engines.registry import create_engine
from toolchain.schema import VectorError

SIZE = 96
ENGINES = {"alter": AlterEngine, "morph": MorphEngine}

# A pixel "clearly changed": summed |RGB difference| above this (about 8 levels per channel).
CHANGED = 24


@pytest.fixture(scope="module", params=list(ENGINES))
def engine(request):
    with ENGINES[request.param]() as e:
        yield e


def _base(engine) -> dict:
    """Default vector: short hair (so hair colour shows), no glasses, no facial hair."""
    v = engine.schema.default_vector()
    assert HAIR_STYLES[v["hair_style"]] != "bald"
    assert engine.schema.param("glasses").options[v["glasses"]] == "none"
    assert engine.schema.param("facial_hair").options[v["facial_hair"]] == "none"
    return v


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int32) - b.astype(np.int32)).sum(-1)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    padded = np.pad(mask, r)
    h, w = mask.shape
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


# ----- format and determinism ------------------------------------------------------------------
def test_registry_builds_builtins():
    assert isinstance(create_engine("alter"), AlterEngine)
    assert isinstance(create_engine(" morph "), MorphEngine)


def test_render_format(engine):
    schema = engine.schema
    vectors = engine.sample(6, seed=1)
    batch = engine.render(vectors, size=SIZE, masks=True)
    assert len(batch) == 6
    assert batch.images.dtype == np.uint8 and batch.images.shape == (6, SIZE, SIZE, 3)
    assert batch.masks is not None
    assert batch.masks.dtype == np.uint8 and batch.masks.shape == (6, SIZE, SIZE)
    assert batch.masks.max() < len(schema.parts)
    no_glasses = schema.param("glasses").absent_index
    for v, m in zip(vectors, batch.masks):
        labels = set(np.unique(m).tolist())
        # Every avatar has background, skin, clothes, nose and mouth; eyes unless glasses (which are
        # labelled over them, lenses included) cover them.
        must = ["background", "skin", "clothes", "nose", "mouth"] + (["eyes"] if v["glasses"] == no_glasses else [])
        for part in must:
            assert schema.parts.index(part) in labels, part
        assert (schema.parts.index("glasses") in labels) == (v["glasses"] != no_glasses)
    # Without masks requested, none come back.
    assert engine.render(vectors[:2], size=SIZE).masks is None


def test_render_size_and_empty(engine):
    v = engine.schema.default_vector()
    assert engine.render([v], size=40).images.shape == (1, 40, 40, 3)
    with pytest.raises(ValueError, match="size"):
        engine.render([v], size=8)
    with pytest.raises(ValueError, match="size"):
        engine.render([v], size=96.0)
    empty = engine.render([], size=SIZE, masks=True)
    assert empty.images.shape == (0, SIZE, SIZE, 3)


def test_render_validates(engine):
    v = engine.schema.default_vector()
    v["glasses"] = 99
    with pytest.raises(VectorError) as info:
        engine.render([engine.schema.default_vector(), v], size=SIZE)
    assert info.value.param == "glasses" and info.value.index == 1


def test_render_accepts_labels(engine):
    v = _base(engine)
    by_label = dict(v, glasses="sunglasses")
    by_index = dict(v, glasses=engine.schema.param("glasses").options.index("sunglasses"))
    a = engine.render([by_label], size=SIZE, masks=True)
    b = engine.render([by_index], size=SIZE, masks=True)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)


def test_render_deterministic(engine):
    vectors = engine.sample(5, seed=42)
    a = engine.render(vectors, size=SIZE, masks=True)
    b = engine.render(vectors, size=SIZE, masks=True)
    with type(engine)() as fresh:
        c = fresh.render(vectors, size=SIZE, masks=True)
    assert a.images.tobytes() == b.images.tobytes() == c.images.tobytes()
    assert a.masks.tobytes() == b.masks.tobytes() == c.masks.tobytes()
    # Batch composition does not matter: rendering one at a time gives the same pixels.
    singles = np.concatenate([engine.render([v], size=SIZE, masks=True).images for v in vectors])
    assert singles.tobytes() == a.images.tobytes()
    # Different vectors give different images.
    assert all(not np.array_equal(a.images[i], a.images[j]) for i, j in itertools.combinations(range(5), 2))


# ----- masks agree with images -----------------------------------------------------------------
def test_mask_colours_match_parts(engine):
    """Pixels labelled skin look like the skin tone, pixels labelled background like the background."""
    schema = engine.schema
    skin_param = schema.param("skin_tone")
    v = dict(_base(engine), skin_tone=skin_param.options.index("deep"))
    batch = engine.render([v], size=SIZE, masks=True)
    img, mask = batch.images[0].astype(float), batch.masks[0]
    bg = img[mask == schema.parts.index("background")].mean(0)
    skin = img[mask == schema.parts.index("skin")].mean(0)
    deep = np.array(SKIN_TONES["deep"], float)
    assert np.abs(skin - deep).sum() < 60, (skin, deep)
    assert np.abs(bg - deep).sum() > 300
    assert bg.min() > 200  # light background
    # Each labelled pixel is nearer its own part's mean colour than the other part's, almost always.
    def nearest_ok(label, own, other):
        px = img[mask == schema.parts.index(label)]
        return np.mean(np.abs(px - own).sum(1) < np.abs(px - other).sum(1))
    assert nearest_ok("skin", skin, bg) > 0.97
    assert nearest_ok("background", bg, skin) > 0.97


def test_mask_changes_come_with_image_changes(engine):
    """Where two renders differing only in glasses label pixels differently, the pixels differ too."""
    schema = engine.schema
    g = schema.param("glasses")
    base = _base(engine)
    vectors = [dict(base, glasses=k) for k in range(len(g.options))]
    batch = engine.render(vectors, size=SIZE, masks=True)
    glasses_label = schema.parts.index("glasses")
    for k in range(1, len(g.options)):
        changed_label = batch.masks[0] != batch.masks[k]
        assert changed_label.sum() > 20, g.options[k]
        # Only glasses pixels were added.
        assert (batch.masks[k][changed_label] == glasses_label).all()
        d = _diff(batch.images[0], batch.images[k])
        assert np.mean(d[changed_label] > 0) > 0.95, g.options[k]
        # Far from the glasses (outside a dilated band) nothing changes.
        near = _dilate(batch.masks[k] == glasses_label, 2)
        assert d[~near].max() == 0, g.options[k]
    # No glasses: no glasses label.
    assert not (batch.masks[0] == glasses_label).any()


# ----- every option of every discrete parameter shows ------------------------------------------
def _discrete_cases():
    for name, cls in ENGINES.items():
        for p in cls().schema.discrete:
            yield name, p.name


@pytest.fixture(scope="module")
def option_renders():
    """(engine, param) -> RenderBatch of the base vector with each option of the parameter."""
    out = {}
    for name, cls in ENGINES.items():
        with cls() as e:
            base = _base(e)
            for p in e.schema.discrete:
                vectors = [dict(base, **{p.name: k}) for k in range(len(p.options))]
                out[name, p.name] = e.render(vectors, size=SIZE, masks=True)
    return out


@pytest.mark.parametrize("engine_name, param", list(_discrete_cases()))
def test_every_option_changes_its_part(engine_name, param, option_renders):
    schema = ENGINES[engine_name]().schema
    p = schema.param(param)
    label = schema.parts.index(p.part)
    batch = option_renders[engine_name, param]
    weak = []
    for a, b in itertools.combinations(range(len(p.options)), 2):
        region = (batch.masks[a] == label) | (batch.masks[b] == label)
        assert region.sum() >= 8, (p.options[a], p.options[b])
        changed = (_diff(batch.images[a], batch.images[b]) > CHANGED) & region
        need = max(8, int(0.1 * region.sum()))
        if changed.sum() < need:
            weak.append(f"{p.options[a]} vs {p.options[b]}: {changed.sum()} of {region.sum()} px changed (need {need})")
    assert not weak, f"{engine_name}.{param}: options look alike in part '{p.part}': " + "; ".join(weak)


@pytest.mark.parametrize("engine_name, param", list(_discrete_cases()))
def test_option_mask_is_where_the_part_is(engine_name, param, option_renders):
    """The parameter's part is present in the mask for every option but the 'absent' one."""
    schema = ENGINES[engine_name]().schema
    p = schema.param(param)
    label = schema.parts.index(p.part)
    batch = option_renders[engine_name, param]
    for k, opt in enumerate(p.options):
        present = (batch.masks[k] == label).sum()
        if k == p.absent_index or (param == "hair_style" and opt == "bald"):
            assert present == 0, opt
        else:
            assert present > 0, opt


# ----- morph's continuous parameters -----------------------------------------------------------
@pytest.mark.parametrize("param", [p.name for p in MorphEngine().schema.continuous])
def test_morph_continuous_changes_its_part(param):
    with MorphEngine() as e:
        schema = e.schema
        p = schema.param(param)
        label = schema.parts.index(p.part)
        base = _base(e)
        lo, mid, hi = (dict(base, **{param: x}) for x in (0.0, 0.5, 1.0))
        batch = e.render([lo, mid, hi], size=SIZE, masks=True)
        band = _dilate((batch.masks[0] == label) | (batch.masks[2] == label), 2)
        d = _diff(batch.images[0], batch.images[2])
        changed = (d > CHANGED) & band
        assert changed.sum() >= 12, f"{param}: only {changed.sum()} px changed near part '{p.part}'"
        # The middle value differs from both ends (the parameter acts continuously, not as a switch).
        assert (_diff(batch.images[0], batch.images[1]) > CHANGED).sum() > 0
        assert (_diff(batch.images[1], batch.images[2]) > CHANGED).sum() > 0
