"""One lookup for every named preset table (estimator training, GAN training, generator sizes, builds)."""
from __future__ import annotations

import difflib
from dataclasses import fields, replace
from typing import Any, Mapping, TypeVar

from .errors import AvatarToolError

T = TypeVar("T")


def lookup_preset(table: Mapping[str, T], name: str, kind: str, **overrides: Any) -> T:
    """``table[name]`` with the non-``None`` ``overrides`` applied (a dataclass ``replace``).

    Raises:
        AvatarToolError: ``name`` is not in the table (the message lists the choices), or an override names
            no field of the preset (the message names the closest field and lists them all).
    """
    if name not in table:
        raise AvatarToolError(f"unknown {kind} '{name}' (choose from {', '.join(table)})")
    preset = table[name]
    known = [f.name for f in fields(preset) if f.init]
    unknown = sorted(k for k in overrides if k not in known)
    if unknown:
        hints = "; ".join(f"'{k}' (did you mean '{close[0]}'?)" if (close := difflib.get_close_matches(k, known, 1))
                          else f"'{k}'" for k in unknown)
        raise AvatarToolError(f"{kind} '{name}' has no field {hints}; its fields: {', '.join(known)}")
    return replace(preset, **{k: v for k, v in overrides.items() if v is not None})
