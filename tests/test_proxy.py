"""The photo-like proxy domain: render_photo, evaluation-set folders, the label-leak guard and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolchain.engines.alter import AlterEngine
from toolchain.engines.face_art import PARTS, FaceSpec, paint_face
from toolchain.engines.morph import MorphEngine
from toolchain.errors import AvatarToolError, LabelLeakError
from toolchain.proxy import assert_not_eval_set, load_eval_set, proxy_vector, render_photo, write_proxy_set
from toolchain.proxy.eval_set import image_name, mask_name

from ._cli import run_cli

SIZE = 96
HEAD = [PARTS.index(p) for p in ("skin", "hair", "eyes", "brows", "nose", "mouth", "beard", "glasses")]


@pytest.fixture(scope="module")
def alter():
    return AlterEngine()


@pytest.fixture(scope="module")
def morph():
    return MorphEngine()


# ----- render_photo -----------------------------------------------------------------------------------
def test_shapes_and_determinism(alter, morph):
    for engine in (alter, morph):
        v = engine.sample(1, 5)[0]
        rgb, mask = render_photo(engine, v, seed=11, size=SIZE)
        assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8
        assert mask.shape == (SIZE, SIZE) and mask.dtype == np.uint8
        assert mask.max() < len(PARTS)
        rgb2, mask2 = render_photo(engine, dict(v), seed=11, size=SIZE)
        assert np.array_equal(rgb, rgb2) and np.array_equal(mask, mask2)


def test_different_seeds_differ(alter):
    v = alter.sample(1, 5)[0]
    a, ma = render_photo(alter, v, seed=1, size=SIZE)
    b, mb = render_photo(alter, v, seed=2, size=SIZE)
    assert np.abs(a.astype(int) - b).mean() > 10  # background, light, colour cast...
    assert not np.array_equal(ma, mb)  # ...and pose


def test_labels_accepted_and_bad_vector_named(alter):
    v = alter.sample(1, 2)[0]
    labelled = alter.schema.labels(v)
    assert np.array_equal(render_photo(alter, labelled, 3, SIZE)[0], render_photo(alter, v, 3, SIZE)[0])
    with pytest.raises(ValueError, match="hair_style"):
        render_photo(alter, {**v, "hair_style": 99}, 3, SIZE)


def test_differs_from_clean_render_but_layout_matches(alter, morph):
    for engine in (alter, morph):
        vs = engine.sample(12, 21)
        clean = engine.render(vs, size=SIZE, masks=True)
        for i, v in enumerate(vs):
            rgb, mask = render_photo(engine, v, seed=100 + i, size=SIZE)
            assert np.abs(rgb.astype(float) - clean.images[i]).mean() > 25, "the proxy must look clearly different"
            a, c = np.isin(mask, HEAD), np.isin(clean.masks[i], HEAD)
            iou = (a & c).sum() / (a | c).sum()
            assert iou > 0.5, f"vector {i}: head layout IoU {iou:.2f}"


def test_mask_follows_the_image(alter):
    """The mask moves with the pose: hair-labelled pixels carry the hair colour, background-labelled
    ones do not look like the face."""
    base = alter.schema.default_vector()
    blonde = {**base, "hair_style": "afro", "hair_color": "blonde", "skin_tone": "deep"}
    black = {**base, "hair_style": "afro", "hair_color": "black", "skin_tone": "deep"}
    hair = PARTS.index("hair")
    for seed in range(4):
        rb, mb = render_photo(alter, blonde, seed, SIZE)
        rk, mk = render_photo(alter, black, seed, SIZE)
        assert np.array_equal(mb, mk)  # same seed: same pose and geometry jitter
        lum_b = rb[mb == hair].mean()
        lum_k = rk[mk == hair].mean()
        lum_skin = rb[mb == PARTS.index("skin")].mean()
        assert lum_b > lum_k + 40 and lum_b > lum_skin + 40, (seed, lum_b, lum_k, lum_skin)
        counts = np.bincount(mb.ravel(), minlength=len(PARTS)) / mb.size
        assert 0.05 < counts[0] < 0.8 and counts[hair] > 0.08 and counts[PARTS.index("skin")] > 0.04


def test_photo_flag_default_is_unchanged(alter):
    """FaceSpec.photo defaults to False and leaves the clean drawing alone; True drops only decorations."""
    spec = alter.face_spec(alter.schema.default_vector())
    assert spec.photo is False
    from dataclasses import replace
    plain_rgb, plain_mask = paint_face(spec).rasterize(SIZE)
    photo_rgb, photo_mask = paint_face(replace(spec, photo=True)).rasterize(SIZE)
    assert np.array_equal(plain_mask, photo_mask)  # only out-of-mask decorations go
    assert not np.array_equal(plain_rgb, photo_rgb)
    assert FaceSpec().photo is False


# ----- vector streams -----------------------------------------------------------------------------------
def test_proxy_vectors_disjoint_from_render_stream(alter, morph):
    for engine in (alter, morph):
        schema = engine.schema
        for seed in (0, 1, 7):
            render = schema.sample(40, seed)
            proxy = [proxy_vector(schema, seed, i) for i in range(40)]
            unlabelled = [proxy_vector(schema, seed, i, role="unlabelled") for i in range(40)]
            same = sum(a == b for a, b in zip(render, proxy))
            assert same < 10 if engine is alter else same == 0
            assert proxy != render and proxy != unlabelled
            assert proxy == [proxy_vector(schema, seed, i) for i in range(40)]
            for v in proxy:
                schema.validate(v)


# ----- evaluation sets ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("proxy") / "eval"
    summary = write_proxy_set("alter", out, n=6, seed=4, size=64)
    assert summary.written == 6 and summary.skipped == 0
    return out


def test_eval_set_round_trip(eval_dir, alter):
    meta = json.loads((eval_dir / "set.json").read_text())
    assert meta["format_version"] == 1 and meta["engine"] == "alter" and meta["kind"] == "photo-proxy"
    assert meta["role"] == "eval" and meta["n"] == 6 and meta["seed"] == 4 and meta["size"] == 64
    assert (eval_dir / "contact_sheet.png").exists()
    es = load_eval_set(eval_dir)
    assert len(es) == 6 and es.engine == "alter" and es.kind == "photo-proxy" and es.set_id == meta["set_id"]
    for i, (img, v) in enumerate(es.items):
        assert img == eval_dir / image_name(i) and v == proxy_vector(alter.schema, 4, i)
        assert es.masks[i] == eval_dir / mask_name(i)
        assert Image.open(img).size == (64, 64)
    # The stored JPEG is the image render_photo returns (no second compression).
    from toolchain.proxy.eval_set import style_seed
    rgb, mask = render_photo(alter, es.items[0][1], style_seed(4, 0), 64)
    assert np.array_equal(np.asarray(Image.open(es.items[0][0]).convert("RGB")), rgb)
    assert np.array_equal(np.asarray(Image.open(es.masks[0])), mask)


def test_set_id_stable_and_label_form_independent(eval_dir, tmp_path, alter):
    copy = tmp_path / "copy"
    import shutil
    shutil.copytree(eval_dir, copy)
    rows = [json.loads(line) for line in (copy / "labels.jsonl").read_text().splitlines()]
    for r in rows:  # option labels instead of indices: same labels, same set
        r["vector"] = alter.schema.labels(r["vector"])
    (copy / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_eval_set(copy).set_id == load_eval_set(eval_dir).set_id
    rows[0]["vector"]["glasses"] = "round" if rows[0]["vector"]["glasses"] != "round" else "none"
    (copy / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(AvatarToolError, match="set_id"):
        load_eval_set(copy)


def test_resume_skips_existing(tmp_path):
    out = tmp_path / "set"
    write_proxy_set("alter", out, n=3, seed=1, size=64)
    first = (out / image_name(0)).read_bytes()
    (out / image_name(1)).unlink()
    (out / mask_name(2)).unlink()
    seen = []
    s = write_proxy_set("alter", out, n=4, seed=1, size=64, progress=lambda d, t: seen.append((d, t)))
    assert (s.written, s.skipped) == (3, 1) and seen[0] == (1, 4) and seen[-1] == (4, 4)
    assert (out / image_name(0)).read_bytes() == first
    assert len(load_eval_set(out)) == 4
    with pytest.raises(AvatarToolError, match="seed"):
        write_proxy_set("alter", out, n=4, seed=2, size=64)
    with pytest.raises(AvatarToolError, match="role"):
        write_proxy_set("alter", out, n=4, seed=1, size=64, role="unlabelled")
    with pytest.raises(AvatarToolError, match="engine"):
        write_proxy_set("morph", out, n=4, seed=1, size=64)


def test_unlabelled_writes_no_labels(tmp_path):
    out = tmp_path / "unl"
    write_proxy_set("morph", out, n=3, seed=1, size=64, role="unlabelled")
    assert not (out / "labels.jsonl").exists()
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.jpg", "000001.jpg", "000002.jpg"]
    assert len(list((out / "masks").iterdir())) == 3
    assert json.loads((out / "set.json").read_text())["role"] == "unlabelled"
    assert_not_eval_set(out)  # fine to train on
    assert_not_eval_set(out / "images")
    with pytest.raises(AvatarToolError, match="unlabelled"):
        load_eval_set(out)


def _user_set(root: Path, rows: list[str], images=("a.png",)) -> Path:
    (root / "photos").mkdir(parents=True)
    for name in images:
        Image.new("RGB", (32, 32), (200, 100, 50)).save(root / "photos" / name)
    (root / "set.json").write_text(json.dumps({"format_version": 1, "engine": "alter", "kind": "user", "role": "eval"}))
    (root / "labels.jsonl").write_text("".join(r + "\n" for r in rows))
    return root


def test_user_set_and_load_errors(tmp_path, alter):
    good = json.dumps({"image": "photos/a.png", "vector": alter.schema.labels(alter.schema.default_vector())})
    es = load_eval_set(_user_set(tmp_path / "ok", [good]))
    assert es.kind == "user" and len(es) == 1 and es.masks == [None] and es.set_id.startswith("sha256:")

    with pytest.raises(AvatarToolError, match="set.json is missing"):
        load_eval_set(tmp_path)
    no_labels = _user_set(tmp_path / "nolabels", [good])
    (no_labels / "labels.jsonl").unlink()
    with pytest.raises(AvatarToolError, match="labels.jsonl"):
        load_eval_set(no_labels)
    with pytest.raises(AvatarToolError, match="line 2: not valid JSON"):
        load_eval_set(_user_set(tmp_path / "badjson", [good, '{"image": "photos/a.png", ']))
    with pytest.raises(AvatarToolError, match=r"line 1: image file 'photos/b.png' is missing"):
        load_eval_set(_user_set(tmp_path / "noimg", [good.replace("a.png", "b.png")]))
    bad_vec = json.dumps({"image": "photos/a.png", "vector": {**alter.schema.default_vector(), "glasses": "monocle"}})
    with pytest.raises(AvatarToolError, match=r"line 3: .*parameter 'glasses'"):
        load_eval_set(_user_set(tmp_path / "badvec", [good, "", bad_vec]))
    with pytest.raises(AvatarToolError, match="not a folder"):
        load_eval_set(tmp_path / "nowhere")


# ----- label-leak guard ---------------------------------------------------------------------------------
def test_assert_not_eval_set(eval_dir, tmp_path):
    for p in (eval_dir, eval_dir / "images", eval_dir / "masks", eval_dir / image_name(0)):
        with pytest.raises(LabelLeakError, match="evaluation set"):
            assert_not_eval_set(p)
    with pytest.raises(LabelLeakError, match="contains"):
        assert_not_eval_set(eval_dir.parent)  # a data root that holds an eval set
    assert issubclass(LabelLeakError, AvatarToolError)
    plain = tmp_path / "renders" / "images"
    plain.mkdir(parents=True)
    assert_not_eval_set(plain)
    assert_not_eval_set(plain.parent)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "labels.jsonl").write_text("{}\n")
    with pytest.raises(LabelLeakError):
        assert_not_eval_set(stray)
    (stray / "sub").mkdir()
    assert_not_eval_set(stray / "sub")  # an unrelated labels.jsonl higher up (no set.json) does not count
    interrupted = tmp_path / "interrupted"  # role eval but labels not written yet: still refused
    interrupted.mkdir()
    (interrupted / "set.json").write_text(json.dumps({"engine": "alter", "kind": "photo-proxy", "role": "eval"}))
    with pytest.raises(LabelLeakError):
        assert_not_eval_set(interrupted)


# ----- CLI -------------------------------------------------------------------------------------------
def test_cli_proxy(tmp_path):
    out = tmp_path / "cli"
    r = run_cli("proxy", "--engine", "alter", "-n", "3", "--seed", "2", "--size", "64", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "3 drawn" in r.stdout
    assert (out / "contact_sheet.png").exists() and (out / "labels.jsonl").exists()
    assert len(load_eval_set(out)) == 3
    r = run_cli("proxy", "--engine", "alter", "-n", "3", "--seed", "2", "--size", "64", "--out", str(out), "--unlabelled")
    assert r.returncode == 1 and "role" in r.stderr and "Traceback" not in r.stderr
    unl = tmp_path / "unl"
    r = run_cli("proxy", "--engine", "morph", "-n", "2", "--size", "64", "--out", str(unl), "--unlabelled")
    assert r.returncode == 0, r.stderr
    assert not (unl / "labels.jsonl").exists() and (unl / "contact_sheet.png").exists()
