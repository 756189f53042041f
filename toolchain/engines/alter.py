"""``alter``: a re-creation of the paper's Alter setting — six discrete parameters, no continuous ones.

The original Alter SDK (facemoji/alter-core) is discontinued and its assets were never public; this
engine keeps its *shape* (6 discrete heads, a few to a dozen options each) with our own vector art.
"""
from __future__ import annotations

from ..schema import AvatarSchema, AvatarVector, DiscreteParam
from .face_art import EYE_STYLES, FACIAL_HAIR, GLASSES, HAIR_COLORS, HAIR_STYLES, PARTS, SKIN_TONES, FaceSpec
from .painted import PaintedEngine

ALTER_SCHEMA = AvatarSchema(
    engine="alter",
    version="1",
    parts=PARTS,
    params=(
        DiscreteParam("hair_style", HAIR_STYLES, default=2, part="hair",
                      weights=(0.5, 1, 1.2, 1, 1, 1, 1.2, 1, 0.8, 1, 0.6, 1)),
        DiscreteParam("hair_color", tuple(HAIR_COLORS), default=2, part="hair",
                      weights=(1.4, 1.4, 1.4, 1, 1, 1, 0.8, 0.8, 0.4, 0.4)),
        DiscreteParam("skin_tone", tuple(SKIN_TONES), default=2, part="skin"),
        DiscreteParam("eye_style", EYE_STYLES, default=0, part="eyes"),
        DiscreteParam("glasses", GLASSES, default=0, part="glasses", absent_option="none",
                      weights=(3, 1, 1, 1, 1, 1)),
        DiscreteParam("facial_hair", FACIAL_HAIR, default=0, part="beard", absent_option="none",
                      weights=(3, 1, 1, 1, 1)),
    ),
)


class AlterEngine(PaintedEngine):
    """Built-in discrete-only engine (the paper's Alter setting)."""

    name = "alter"

    @property
    def schema(self) -> AvatarSchema:
        return ALTER_SCHEMA

    def face_spec(self, v: AvatarVector) -> FaceSpec:
        s = self.schema
        return FaceSpec(
            hair_style=HAIR_STYLES[v["hair_style"]],
            hair_color=HAIR_COLORS[s.param("hair_color").options[v["hair_color"]]],
            skin=SKIN_TONES[s.param("skin_tone").options[v["skin_tone"]]],
            eye_style=EYE_STYLES[v["eye_style"]],
            glasses=GLASSES[v["glasses"]],
            facial_hair=FACIAL_HAIR[v["facial_hair"]],
        )
