"""render_folder: files written, resumable reruns, option mismatches, extension, workers; and the CLI."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolchain.engines.alter import ALTER_SCHEMA
from toolchain.errors import AvatarToolError
from toolchain.render import RenderConfig, image_path, mask_path, render_folder
from toolchain.schema import AvatarSchema

from ._cli import run_cli

SIZE = 64
N = 10


def _cfg(**kw) -> RenderConfig:
    base = dict(engine="alter", n=N, seed=3, size=SIZE, workers=0, batch_size=4)
    base.update(kw)
    return RenderConfig(**base)


def _read_vectors(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "vectors.jsonl").read_text().splitlines() if line.strip()]
    assert [r["index"] for r in rows] == list(range(len(rows)))
    return [r["vector"] for r in rows]


def _bytes(paths) -> list[bytes]:
    return [p.read_bytes() for p in paths]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "alter"
    progress = []
    summary = render_folder(_cfg(), out, progress=lambda done, total: progress.append((done, total)))
    return out, summary, progress


def test_writes_everything(first_run):
    out, summary, progress = first_run
    assert summary.n == N and summary.rendered == N and summary.skipped == 0
    assert summary.has_masks and not summary.failures
    assert progress[0] == (0, N) and progress[-1] == (N, N)
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:06d}.png" for i in range(N)]
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i:06d}.png" for i in range(N)]
    for i in range(N):
        img = np.asarray(Image.open(image_path(out, i)))
        mask = np.asarray(Image.open(mask_path(out, i)))
        assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
        assert mask.shape == (SIZE, SIZE) and mask.max() < len(ALTER_SCHEMA.parts)
    # No temporary files left behind.
    assert not [p for p in out.rglob(".*") if p.is_file()]
    vectors = _read_vectors(out)
    assert len(vectors) == N
    assert ALTER_SCHEMA.validate_many(vectors) == vectors
    assert vectors == ALTER_SCHEMA.sample(N, 3)
    manifest = json.loads((out / "render.json").read_text())
    assert manifest["engine"] == "alter" and manifest["seed"] == 3 and manifest["size"] == SIZE and manifest["masks"]
    assert AvatarSchema.from_json(manifest["schema"]) == ALTER_SCHEMA
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.mode == "RGB" and sheet.width > 128 and sheet.height > 128


def test_images_match_direct_render(first_run):
    out, _, _ = first_run
    from toolchain.engines.alter import AlterEngine
    batch = AlterEngine().render(_read_vectors(out)[:3], size=SIZE, masks=True)
    for i in range(3):
        assert np.array_equal(np.asarray(Image.open(image_path(out, i))), batch.images[i])
        assert np.array_equal(np.asarray(Image.open(mask_path(out, i))), batch.masks[i])


def test_rerun_skips_and_resumes(tmp_path):
    out = tmp_path / "r"
    render_folder(_cfg(), out)
    images = [image_path(out, i) for i in range(N)]
    masks = [mask_path(out, i) for i in range(N)]
    original_images, original_masks = _bytes(images), _bytes(masks)
    vectors_text = (out / "vectors.jsonl").read_text()

    again = render_folder(_cfg(), out)
    assert again.rendered == 0 and again.skipped == N
    assert _bytes(images) == original_images

    gone = [1, 4, 9]
    for i in gone:
        images[i].unlink()
    mask_path(out, 6).unlink()  # a missing mask alone also means "not done"
    resumed = render_folder(_cfg(), out)
    assert resumed.rendered == len(gone) + 1 and resumed.skipped == N - len(gone) - 1
    assert _bytes(images) == original_images
    assert _bytes(masks) == original_masks
    assert (out / "vectors.jsonl").read_text() == vectors_text


@pytest.mark.parametrize("change, word", [({"seed": 4}, "seed"), ({"size": 48}, "size"),
                                          ({"masks": False}, "masks")])
def test_mismatched_rerun_refused(tmp_path, change, word):
    out = tmp_path / "r"
    render_folder(_cfg(n=3), out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(AvatarToolError) as info:
        render_folder(_cfg(n=3, **change), out)
    msg = str(info.value)
    assert word in msg and str(out) in msg
    # Nothing on disk was touched.
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_mismatched_engine_refused(tmp_path):
    out = tmp_path / "r"
    render_folder(_cfg(n=2), out)
    with pytest.raises(AvatarToolError, match="engine"):
        render_folder(_cfg(n=2, engine="morph"), out)


def test_larger_n_extends(tmp_path):
    out = tmp_path / "r"
    render_folder(_cfg(n=6), out)
    first_vectors = _read_vectors(out)
    first_images = _bytes(image_path(out, i) for i in range(6))
    summary = render_folder(_cfg(n=N), out)
    assert summary.skipped == 6 and summary.rendered == N - 6
    vectors = _read_vectors(out)
    assert len(vectors) == N and vectors[:6] == first_vectors
    assert vectors == ALTER_SCHEMA.sample(N, 3)
    assert _bytes(image_path(out, i) for i in range(6)) == first_images
    assert all(image_path(out, i).exists() for i in range(N))
    # A later smaller n keeps the longer vector list and renders nothing.
    small = render_folder(_cfg(n=4), out)
    assert small.rendered == 0 and small.skipped == 4
    assert _read_vectors(out) == vectors


def test_workers_match_in_process(tmp_path, first_run):
    ref, _, _ = first_run
    out = tmp_path / "w"
    summary = render_folder(_cfg(workers=2, batch_size=3), out)
    assert summary.rendered == N and not summary.failures
    for i in range(N):
        assert image_path(out, i).read_bytes() == image_path(ref, i).read_bytes(), i
        assert mask_path(out, i).read_bytes() == mask_path(ref, i).read_bytes(), i
    assert (out / "vectors.jsonl").read_text() == (ref / "vectors.jsonl").read_text()


@pytest.mark.parametrize("kw", [{"n": 0}, {"workers": -1}, {"batch_size": 0}])
def test_bad_config(tmp_path, kw):
    with pytest.raises(AvatarToolError):
        render_folder(_cfg(**kw), tmp_path / "bad")


def test_corrupt_manifest_is_refused_clearly(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "render.json").write_text("{not json")
    with pytest.raises(AvatarToolError, match="render.json is unreadable"):
        render_folder(_cfg(), out)
    assert (out / "render.json").read_text() == "{not json"


# ----- CLI -------------------------------------------------------------------------------------
def test_cli_render(tmp_path):
    out = tmp_path / "cli"
    r = run_cli("render", "--engine", "alter", "-n", "4", "--size", "64", "--out", str(out), "--workers", "0")
    assert r.returncode == 0, r.stderr
    assert "4 rendered" in r.stdout
    for i in range(4):
        assert image_path(out, i).exists() and mask_path(out, i).exists()
    assert (out / "render.json").exists() and (out / "contact_sheet.png").exists()
    assert len(_read_vectors(out)) == 4
    # A mismatched rerun is one error line and exit code 1, not a traceback.
    r = run_cli("render", "--engine", "alter", "-n", "4", "--size", "32", "--out", str(out), "--workers", "0")
    assert r.returncode == 1
    assert "error" in r.stderr and "size" in r.stderr and "Traceback" not in r.stderr


def test_cli_engines_list():
    r = run_cli("engines", "list")
    assert r.returncode == 0, r.stderr
    assert "alter" in r.stdout and "morph" in r.stdout


def test_cli_engines_show_json():
    r = run_cli("engines", "show", "alter", "--json")
    assert r.returncode == 0, r.stderr
    assert AvatarSchema.loads(r.stdout) == ALTER_SCHEMA


def test_atomic_writes_get_ordinary_file_modes(tmp_path):
    """Temporary files are created 0600; finished outputs must get the mode a plain open() gives them."""
    from toolchain.atomic_io import atomic_write_text
    mask = os.umask(0)
    os.umask(mask)
    atomic_write_text(tmp_path / "a.json", "{}")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask
