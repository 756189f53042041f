"""``morph``: a built-in engine with both kinds of parameters, mirroring the paper's TikTok setting
(one continuous head for face shape, plus eight discrete heads)."""
from __future__ import annotations

from ..schema import AvatarSchema, AvatarVector, ContinuousParam, DiscreteParam
from .face_art import (BROW_STYLES, EYE_COLORS, FACIAL_HAIR, GLASSES, HAIR_COLORS, HAIR_STYLES, MOUTH_STYLES, PARTS,
                       SKIN_TONES, FaceSpec)
from .painted import PaintedEngine

# name -> (part, FaceSpec field, value at 0, value at 1, description)
_SHAPE = {
    "face_width": ("skin", 0.86, 1.14, "cheek width"),
    "jaw_width": ("skin", 0.78, 1.22, "jaw width relative to the cheeks"),
    "chin_length": ("skin", 0.85, 1.15, "chin length"),
    "eye_size": ("eyes", 0.8, 1.25, "eye size"),
    "eye_spacing": ("eyes", 0.85, 1.2, "distance between the eyes"),
    "nose_length": ("nose", 0.75, 1.3, "nose length"),
    "nose_width": ("nose", 0.7, 1.4, "nostril width"),
    "mouth_width": ("mouth", 0.75, 1.3, "mouth width"),
    "brow_height": ("brows", -1.0, 1.0, "eyebrow height"),
}

MORPH_SCHEMA = AvatarSchema(
    engine="morph",
    version="1",
    parts=PARTS,
    params=tuple(
        ContinuousParam(name, 0.0, 1.0, 0.5, part=part, prior={"kind": "normal", "mean": 0.5, "std": 0.25},
                        description=desc)
        for name, (part, _, _, desc) in _SHAPE.items()
    ) + (
        DiscreteParam("hair_style", HAIR_STYLES, default=2, part="hair"),
        DiscreteParam("hair_color", tuple(HAIR_COLORS), default=2, part="hair"),
        DiscreteParam("skin_tone", tuple(SKIN_TONES), default=2, part="skin"),
        DiscreteParam("eye_color", tuple(EYE_COLORS), default=0, part="eyes"),
        DiscreteParam("brow_style", BROW_STYLES, default=0, part="brows"),
        DiscreteParam("mouth_style", MOUTH_STYLES, default=0, part="mouth"),
        DiscreteParam("glasses", GLASSES, default=0, part="glasses", absent_option="none", weights=(3, 1, 1, 1, 1, 1)),
        DiscreteParam("facial_hair", FACIAL_HAIR, default=0, part="beard", absent_option="none", weights=(3, 1, 1, 1, 1)),
    ),
)


class MorphEngine(PaintedEngine):
    """Built-in engine with 9 continuous face-shape parameters and 8 discrete ones."""

    name = "morph"

    @property
    def schema(self) -> AvatarSchema:
        return MORPH_SCHEMA

    def face_spec(self, v: AvatarVector) -> FaceSpec:
        s = self.schema
        shape = {name: lo + (hi - lo) * v[name] for name, (_, lo, hi, _) in _SHAPE.items()}
        return FaceSpec(
            hair_style=HAIR_STYLES[v["hair_style"]],
            hair_color=HAIR_COLORS[s.param("hair_color").options[v["hair_color"]]],
            skin=SKIN_TONES[s.param("skin_tone").options[v["skin_tone"]]],
            eye_color=EYE_COLORS[s.param("eye_color").options[v["eye_color"]]],
            brow_style=BROW_STYLES[v["brow_style"]],
            mouth_style=MOUTH_STYLES[v["mouth_style"]],
            glasses=GLASSES[v["glasses"]],
            facial_hair=FACIAL_HAIR[v["facial_hair"]],
            shirt=(70, 160, 120), background=(240, 230, 220),
            **shape,
        )
