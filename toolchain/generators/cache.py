"""A machine-wide cache of trained G_real generators, keyed by what the weights depend on.

G_real never depends on the engine (it learns real faces; offline, the photo proxy), so a long G_real
is trained once and every engine's and preset's build reuses it, as the paper trains G_real once and
only G_avatar per engine. The key covers the training photos' content (every image and mask byte), the
generator and training configurations, and the source of the generator code; a change to any of them
misses the cache and trains afresh.

Layout: ``$SWIFTAVATAR_CACHE/real_generators/<key>/`` (default ``~/.cache/swiftavatar``; another folder with
``SWIFTAVATAR_GAN_CACHE=DIR``, none with ``SWIFTAVATAR_GAN_CACHE=off``) holding
``generator.safetensors`` (+ ``.json``), ``discriminator.safetensors`` (+ ``.json``: G_avatar's finetuning starts
its discriminator from it, so a restored G_real must bring it, or a build would finetune differently with a cache
than without), ``stats.jsonl``, ``samples/`` (the grids over steps), ``kept/`` (the snapshots a build picks from,
when the training keeps them) and
``entry.json`` (key basis, the weights' sha256, where and when it was trained, and how a build drew its photos,
which lets the build's opening estimate see a likely hit before it draws them). An entry appears whole
(written to a temporary sibling, then renamed) and is checked before use: weights whose sha256 does not
match ``entry.json``, or that do not load as a generator, are refused, moved aside and retrained; so is an entry
without its discriminator (stored before the cache kept it).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic_io import atomic_write_json
from ..errors import AvatarToolError
from .config import GeneratorConfig

ENTRY = "entry.json"
WEIGHTS = "generator.safetensors"
DISCRIMINATOR = "discriminator.safetensors"
# logging cadence does not change the weights
_TRAIN_KEYS_IGNORED = ("snapshot_every", "sample_every", "log_every")


ENV_VAR = "SWIFTAVATAR_GAN_CACHE"


def cache_root() -> Path | None:
    """``$SWIFTAVATAR_GAN_CACHE``, else ``$SWIFTAVATAR_CACHE/real_generators`` (the SDK's model cache folder,
    one per machine); ``None`` when ``SWIFTAVATAR_GAN_CACHE=off`` (every build trains its own G_real)."""
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip().lower() in ("off", "0", "none"):
        return None
    if env:
        return Path(env)
    from sdk_python.detector_models import cache_dir
    return cache_dir() / "real_generators"


def photos_digest(photos_dir: str | Path) -> str:
    """sha256 over the names and bytes of every file under ``images/`` and ``masks/``."""
    root = Path(photos_dir)
    h = hashlib.sha256()
    for sub in ("images", "masks"):
        for p in sorted((root / sub).glob("*")) if (root / sub).is_dir() else []:
            h.update(f"{sub}/{p.name}\0".encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _settings(gcfg: GeneratorConfig, train: dict[str, Any], code: dict[str, str]) -> dict[str, Any]:
    # a JSON round trip, so that it compares equal to what entry.json holds
    return json.loads(json.dumps({"generator": gcfg.to_json(),
                                  "train": {k: v for k, v in train.items() if k not in _TRAIN_KEYS_IGNORED},
                                  "code": code}))


def cache_key(photos_dir: str | Path, gcfg: GeneratorConfig, train: dict[str, Any], code: dict[str, str]
              ) -> tuple[str, dict[str, Any]]:
    """(key, basis): the basis is what the key hashes, kept in ``entry.json`` so a miss can be explained."""
    basis = {"photos": photos_digest(photos_dir), **_settings(gcfg, train, code)}
    key = hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:24]
    return key, basis


def find_by_recipe(recipe: dict[str, Any], gcfg: GeneratorConfig, train: dict[str, Any], code: dict[str, str],
                   root: Path | None = None) -> Path | None:
    """The entry a build will most likely restore, judged before its photos exist: same settings and code, and
    photos drawn by the same recipe (``store(..., recipe=)``). For the build's opening estimate only: the key,
    over the photos' bytes, still decides at the stage, and the entry's weights are not checked here."""
    root = root or cache_root()
    if root is None or not root.is_dir():
        return None
    want, recipe = _settings(gcfg, train, code), json.loads(json.dumps(recipe))
    for d in sorted(root.iterdir()):
        if d.name.startswith(".") or not (d / WEIGHTS).is_file():
            continue
        try:
            entry = json.loads((d / ENTRY).read_text())
        except (OSError, ValueError):
            continue
        basis = entry.get("basis") or {}
        if (entry.get("photos_recipe") == recipe and "discriminator_sha256" in entry
                and all(basis.get(k) == v for k, v in want.items())):
            return d
    return None


@dataclass
class CacheHit:
    path: Path
    entry: dict[str, Any]


def lookup(key: str, root: Path | None = None) -> tuple[CacheHit | None, str | None]:
    """(hit, None) for a whole, intact entry; (None, why) for a damaged one, which is moved aside so the
    caller retrains; (None, None) when there is none (or the cache is off)."""
    root = root or cache_root()
    if root is None:
        return None, None
    d = root / key
    if not d.is_dir():
        return None, None
    try:
        entry = json.loads((d / ENTRY).read_text())
        if entry.get("key") != key:
            raise ValueError(f"entry.json names key {entry.get('key')!r}")
        if _sha256(d / WEIGHTS) != entry.get("sha256"):
            raise ValueError(f"{WEIGHTS} does not match the sha256 in {ENTRY}")
        if "discriminator_sha256" not in entry:
            raise ValueError(f"it has no {DISCRIMINATOR} (stored before the cache kept G_real's discriminator, which "
                             "G_avatar starts from)")
        if not (d / DISCRIMINATOR).is_file() or _sha256(d / DISCRIMINATOR) != entry["discriminator_sha256"]:
            raise ValueError(f"{DISCRIMINATOR} is missing or does not match the sha256 in {ENTRY}")
        from .io import load_generator
        load_generator(d / WEIGHTS)
    except (OSError, ValueError, KeyError, RuntimeError, AvatarToolError) as exc:
        why = f"cached G_real {d} is damaged or incomplete ({exc}); moved aside and retraining"
        _discard(d)
        return None, why
    return CacheHit(d, entry), None


def _discard(d: Path) -> None:
    aside = d.with_name(f".damaged-{d.name}-{os.getpid()}-{int(time.time())}")
    try:
        os.replace(d, aside)
        shutil.rmtree(aside, ignore_errors=True)
    except OSError:
        shutil.rmtree(d, ignore_errors=True)


def store(key: str, basis: dict[str, Any], gan_dir: str | Path, source: str, root: Path | None = None,
          recipe: dict[str, Any] | None = None) -> Path | None:
    """Copy a finished training's outputs (``gan_dir``) into the cache as one whole entry (None: cache off).
    ``recipe`` (how the photos were drawn, when a build drew them) lets :func:`find_by_recipe` find the entry
    before a later build has drawn its photos."""
    gan_dir = Path(gan_dir)
    root = root or cache_root()
    if root is None:
        return None
    if not (gan_dir / DISCRIMINATOR).is_file():
        raise AvatarToolError(f"{gan_dir} has no {DISCRIMINATOR}: a G_real is cached only with the discriminator "
                              "it was trained with")
    final = root / key
    tmp = final.with_name(f".{key}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in (WEIGHTS, "generator.json", DISCRIMINATOR, "discriminator.json", "stats.jsonl", "run.json"):
        if (gan_dir / name).is_file():
            shutil.copy2(gan_dir / name, tmp / name)
    for sub in ("samples", "samples_raw", "kept"):
        if (gan_dir / sub).is_dir():
            shutil.copytree(gan_dir / sub, tmp / sub)
    atomic_write_json(tmp / ENTRY, {"key": key, "basis": basis, "sha256": _sha256(tmp / WEIGHTS),
                                    "discriminator_sha256": _sha256(tmp / DISCRIMINATOR), "source": source,
                                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                    **({"photos_recipe": recipe} if recipe is not None else {})})
    try:
        os.replace(tmp, final)
    except OSError:   # another build stored the same key first: theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def restore(hit: CacheHit, gan_dir: str | Path) -> None:
    """Copy a cache entry's files into a run's ``gan/`` folder (so the run stands on its own)."""
    gan_dir = Path(gan_dir)
    gan_dir.mkdir(parents=True, exist_ok=True)
    for p in hit.path.iterdir():
        dst = gan_dir / p.name
        if p.is_dir():
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(p, dst)
        else:
            shutil.copy2(p, dst)
