"""Skips that CI must not take.

A laptop without network may skip a test whose prerequisite cannot be fetched (the face-detector
model, the clean venv's packages, the package index) or is not installed; CI (``CI=true``, set by
``.ci/run``) must not, or the SDK could go untested without anyone noticing. Tests call these
helpers instead of ``pytest.skip`` / ``pytest.importorskip``.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

TRUTHY = ("1", "true", "yes", "on")


def in_ci() -> bool:
    """Whether the run is CI's (``CI`` set to true, as ``.ci/run`` and most CI services do)."""
    return os.environ.get("CI", "").strip().lower() in TRUTHY


def skip_unless_ci(reason: str) -> NoReturn:
    """Skip with ``reason`` locally; fail with it under CI."""
    if in_ci():
        pytest.fail(f"{reason} — CI=true: a prerequisite that cannot be fetched fails the run instead of skipping",
                    pytrace=False)
    pytest.skip(reason)


def import_or_skip_unless_ci(name: str) -> ModuleType:
    """``pytest.importorskip`` for packages the README's ``[all]`` install provides: CI must have them."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        skip_unless_ci(f"could not import {name}: {exc}")
