"""The pairs stage's part settings as a build writes them (the semantic augmentation's ``PART=λ,...``, the colour
transfer's ``PART,...``), kept free of torch so that a configuration can be checked before anything heavy is imported."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..errors import AvatarToolError

if TYPE_CHECKING:
    from ..generators.config import GeneratorConfig

PAPER_STRENGTHS = {"background": 1.0, "hair": 0.3, "glasses": 0.06}
PAPER_STRENGTHS_TEXT = ",".join(f"{part}={lam:g}" for part, lam in PAPER_STRENGTHS.items())


def parse_strengths(text: str, key: str = "augmentation strengths") -> dict[str, float]:
    """``"background=1,hair=0.3"`` -> ``{"background": 1.0, "hair": 0.3}``; ``""`` or ``"none"`` -> ``{}``.

    Only the form is checked here; whether each name is a part of the generator is checked against the
    generator (``resolve_parts``), before any inversion runs.
    """
    text = text.strip()
    if text.lower() in ("", "none"):
        return {}
    out: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            lam = float(value) if sep else None
        except ValueError:
            lam = None
        if not name or lam is None:
            raise AvatarToolError(f"{key}: {item.strip()!r} is not PART=STRENGTH; write e.g. '{PAPER_STRENGTHS_TEXT}' "
                                  "(the paper's), or 'none' for no augmentation")
        if not 0 <= lam <= 1:
            raise AvatarToolError(f"{key}: the strength for '{name}' must lie in [0, 1], got {lam:g}")
        if name in out:
            raise AvatarToolError(f"{key}: '{name}' is named twice")
        out[name] = lam
    return out


# the engines' label names -> CelebAMask-HQ's, as the official 512 px generator names its parts: without them the
# paper's own strengths ("glasses") named no part of the paper preset's generator ("eyeglass")
LABEL_ALIASES = {"glasses": "eyeglass", "clothes": "cloth", "skin": "face", "eyes": "eye", "brows": "brow"}


def resolve_part_names(cfg: "GeneratorConfig", strengths: dict[str, float],
                       what: str = "augmentation part") -> dict[str, float]:
    """Names (generator parts or mask labels) -> {generator part: λ}, for a generator of config ``cfg``; ``what``
    names the setting in the error for an unknown name."""
    labels = cfg.mask_labels or cfg.parts
    lut = cfg.label_to_part()
    out: dict[str, float] = {}
    for name, lam in strengths.items():
        if not 0 <= lam <= 1:
            raise AvatarToolError(f"augmentation strength for '{name}' must lie in [0, 1], got {lam}")
        if name not in cfg.parts and name not in labels:
            name = LABEL_ALIASES.get(name, name)
        if name in cfg.parts:
            part = name
        elif name in labels:
            part = cfg.parts[lut[labels.index(name)]]
        else:
            raise AvatarToolError(f"{what} '{name}' is neither a generator part ({', '.join(cfg.parts)}) "
                                  f"nor a mask label ({', '.join(labels)})")
        if part in out and out[part] != lam:
            raise AvatarToolError(f"augmentation strengths name the generator part '{part}' twice with different values")
        out[part] = lam
    return out


def parse_recolour(text: str | None, key: str = "pairs.recolour") -> tuple[str, ...]:
    """``"hair,skin"`` -> ``("hair", "skin")``; ``None``, ``""`` or ``"none"`` -> ``()`` (no transfer)."""
    if text is None or str(text).strip().lower() in ("", "none"):
        return ()
    names = tuple(n.strip() for n in str(text).split(","))
    if any(not n for n in names):
        raise AvatarToolError(f"{key}={text!r}: an empty part name; write part names separated by commas, e.g. hair,skin")
    if len(set(names)) != len(names):
        raise AvatarToolError(f"{key}={text!r} names a part twice")
    return names


def resolve_recolour_parts(gen_cfg, names: Sequence[str], key: str = "pairs.recolour") -> list[int]:
    """Part names (generator parts or mask labels) -> generator part indices, in the order given."""
    parts = resolve_part_names(gen_cfg, {n: 1.0 for n in names}, what=f"{key} part")
    return [gen_cfg.parts.index(p) for p in parts]
