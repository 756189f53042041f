"""One lookup for every named preset table (estimator training, GAN training, generator sizes, builds)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, TypeVar

from .errors import AvatarToolError

T = TypeVar("T")


def lookup_preset(table: Mapping[str, T], name: str, kind: str, **overrides: Any) -> T:
    """``table[name]`` with the non-``None`` ``overrides`` applied (a dataclass ``replace``).

    Raises:
        AvatarToolError: ``name`` is not in the table; the message lists the choices.
    """
    if name not in table:
        raise AvatarToolError(f"unknown {kind} '{name}' (choose from {', '.join(table)})")
    return replace(table[name], **{k: v for k, v in overrides.items() if v is not None})
