"""`avatartool render --vectors FILE|-` and `--sweep PARAM`: chosen vectors drawn exactly as the engine draws
them, the SDK's `predict --json` output accepted as it is, bad records refused by line number and field."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolchain.engines.registry import create_engine
from toolchain.errors import AvatarToolError
from toolchain.render.chosen import read_vectors, render_chosen, sweep

from ._cli import REPO, run_cli
from ._sdk_fixtures import noise_image_folder

SIZE = 64


@pytest.fixture(scope="module")
def morph():
    return create_engine("morph")   # continuous and discrete parameters


def _predict_json(schema, vectors) -> str:
    """What `avatartool predict --json` prints (indented array), including an image whose prediction failed."""
    entries = [{"image": f"photos/p{i}.jpg", "backend": "onnxruntime",
                "result": {"avatars": [{"box": [0, 0, 10, 10], "score": 0.9, "vector": v, "parameters": {}}],
                           "faces_found": 1, "timings_ms": {"total": 5.0}}} for i, v in enumerate(vectors)]
    entries.insert(1, {"image": "photos/blank.png", "error": "NoFaceError: no face found", "error_type": "NoFaceError"})
    return json.dumps(entries, indent=2)


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_predict_json_round_trip_equals_direct_rendering(morph, tmp_path):
    schema = morph.schema
    vectors = schema.sample(3, seed=5)
    src = tmp_path / "pred.json"
    src.write_text(_predict_json(schema, vectors))
    notes: list[str] = []
    items = read_vectors(src, schema, notes=notes)
    assert [c.label for c in items] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert len(notes) == 1 and "blank.png" in notes[0] and "NoFaceError" in notes[0]
    render_chosen(morph, items, tmp_path / "out", size=SIZE)
    direct = morph.render(vectors, size=SIZE).images
    for i in range(3):
        assert np.array_equal(_png(tmp_path / "out" / "images" / f"{i:06d}.png"), direct[i])
    rows = [json.loads(x) for x in (tmp_path / "out" / "vectors.jsonl").read_text().splitlines()]
    assert [r["vector"] for r in rows] == [schema.validate(v) for v in vectors]
    assert (tmp_path / "out" / "contact_sheet.png").is_file()


def test_plain_vectors_labels_and_render_folder_lines_from_stdin(morph):
    schema = morph.schema
    discrete = next(p for p in schema.params if p.kind == "discrete")
    v = schema.default_vector()
    labelled = {**v, discrete.name: discrete.options[-1]}
    text = json.dumps(v) + "\n\n" + json.dumps({"index": 7, "vector": labelled}) + "\n"
    items = read_vectors("-", schema, stdin=io.StringIO(text))
    assert [(c.label, c.line) for c in items] == [("line 1", 1), ("#7", 3)]
    assert items[1].vector[discrete.name] == len(discrete.options) - 1


def test_bad_records_are_refused_with_line_number_and_field(morph, tmp_path):
    schema = morph.schema
    cont = next(p for p in schema.params if p.kind == "continuous")
    disc = next(p for p in schema.params if p.kind == "discrete")
    good = schema.default_vector()
    lines = [json.dumps(good), json.dumps({**good, cont.name: cont.high + 1}), json.dumps(good),
             json.dumps({**good, disc.name: "no-such-option"}), "{not json"]
    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(AvatarToolError) as info:     # the JSON error is found first: nothing else is read
        read_vectors(src, schema)
    assert "line 5: not JSON" in str(info.value)
    src.write_text("\n".join(lines[:4]) + "\n")
    with pytest.raises(AvatarToolError) as info:
        read_vectors(src, schema)
    msg = str(info.value)
    assert "2 record(s) refused, nothing rendered" in msg
    assert f"line 2 (field '{cont.name}')" in msg and "outside its range" in msg
    assert f"line 4 (field '{disc.name}')" in msg and "no-such-option" in msg
    arr = tmp_path / "bad.json"                        # a pretty-printed array: the element's first line
    arr.write_text(json.dumps([good, {**good, "nope": 1}], indent=2))
    with pytest.raises(AvatarToolError, match=r"line \d+ \(field 'nope'\): unknown parameter 'nope'") as info:
        read_vectors(arr, schema)
    line = int(str(info.value).split("line ")[1].split(" ")[0])
    assert arr.read_text().splitlines()[line - 1].strip() == "{"


def test_sweep_draws_every_option_or_the_range_on_a_fixed_base(morph):
    schema = morph.schema
    base = schema.sample(1, seed=2)[0]
    disc = next(p for p in schema.params if p.kind == "discrete")
    items = sweep(schema, base, disc.name)
    assert [c.vector[disc.name] for c in items] == list(range(len(disc.options)))
    assert all({k: v for k, v in c.vector.items() if k != disc.name} ==
               {k: v for k, v in base.items() if k != disc.name} for c in items)
    cont = next(p for p in schema.params if p.kind == "continuous")
    items = sweep(schema, base, cont.name, steps=5)
    assert [c.vector[cont.name] for c in items] == pytest.approx(list(np.linspace(cont.low, cont.high, 5)))
    with pytest.raises(AvatarToolError, match="--sweep nope: .*no parameter 'nope'"):
        sweep(schema, base, "nope")


def test_cli_vectors_and_sweep(morph, tmp_path):
    schema = morph.schema
    src = tmp_path / "v.jsonl"
    src.write_text("".join(json.dumps(v) + "\n" for v in schema.sample(2, seed=1)))
    disc = next(p for p in schema.params if p.kind == "discrete")
    r = run_cli("render", "--engine", "morph", "--vectors", str(src), "--sweep", disc.name, "--size", "48",
                "--out", str(tmp_path / "sweep"), timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "sweep" / "images").glob("*.png"))) == 2 * len(disc.options)
    sheet = _png(tmp_path / "sweep" / "contact_sheet.png")
    assert sheet.shape[1] > sheet.shape[0]             # one row per base vector, one column per option
    src.write_text('{"bogus": 1}\n')
    r = run_cli("render", "--engine", "morph", "--vectors", str(src), "--out", str(tmp_path / "bad"))
    assert r.returncode != 0 and "line 1 (field 'bogus')" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists()


def test_real_predict_json_piped_into_render_vectors(tiny_export, tmp_path):
    """The SDK's own output, unedited: `predict --json | render --vectors -` draws what the engine draws."""
    import os
    import subprocess
    import sys
    photos = noise_image_folder(tmp_path, 2)
    pred = run_cli("predict", "--bundle", str(tiny_export / "estimator.onnx"), str(photos), "--detection", "none",
                   "--json", timeout=120)
    assert pred.returncode == 0, pred.stderr
    vectors = [e["result"]["avatars"][0]["vector"] for e in json.loads(pred.stdout)]
    r = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "render", "--engine", "alter", "--vectors", "-",
                        "--size", str(SIZE), "--out", str(tmp_path / "out")], input=pred.stdout, cwd=REPO,
                       env=dict(os.environ, COLUMNS="200"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    direct = create_engine("alter").render(vectors, size=SIZE).images
    for i in range(len(vectors)):
        assert np.array_equal(_png(tmp_path / "out" / "images" / f"{i:06d}.png"), direct[i])
