"""Avatar schema: the parameters an engine exposes, their validation and their training encoding.

An avatar vector is a plain ``dict`` mapping parameter name to value: a ``float`` for continuous
parameters and an ``int`` option index for discrete ones. The schema is JSON-serialisable so it can
travel inside model bundles and be decoded on a phone without Python.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np

SCHEMA_FORMAT_VERSION = 1

AvatarVector = dict[str, Union[float, int]]


class SchemaError(ValueError):
    """A schema definition is inconsistent (bad range, duplicate name, bad prior...)."""


class VectorError(ValueError):
    """An avatar vector does not satisfy its schema. ``param`` names the offending parameter."""

    def __init__(self, message: str, param: str | None = None, index: int | None = None):
        self.param = param
        self.index = index
        where = f"vector #{index}: " if index is not None else ""
        super().__init__(where + message)


@dataclass(frozen=True)
class ContinuousParam:
    """A real-valued parameter in ``[low, high]``.

    ``prior`` is ``{"kind": "uniform"}`` (default) or ``{"kind": "normal", "mean": m, "std": s}``
    (truncated to the range).
    """

    name: str
    low: float
    high: float
    default: float
    part: str | None = None
    prior: Mapping[str, Any] | None = None
    description: str = ""
    mirror: str = "same"    # under a horizontal flip of the face: "same", or "reflect" (value -> low + high - value)
    color: bool = False     # describes a colour: cannot be judged from a grayscale photo (SDK input-quality flag)

    kind = "continuous"

    def check(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise SchemaError(f"parameter '{self.name}': range [{self.low}, {self.high}] must be finite with low < high")
        if not self.low <= self.default <= self.high:
            raise SchemaError(f"parameter '{self.name}': default {self.default} lies outside [{self.low}, {self.high}]")
        prior = dict(self.prior or {"kind": "uniform"})
        if prior.get("kind") == "normal":
            if not (isinstance(prior.get("std"), (int, float)) and prior["std"] > 0):
                raise SchemaError(f"parameter '{self.name}': a normal prior needs a positive 'std'")
            if not isinstance(prior.get("mean"), (int, float)):
                raise SchemaError(f"parameter '{self.name}': a normal prior needs a numeric 'mean'")
        elif prior.get("kind") != "uniform":
            raise SchemaError(f"parameter '{self.name}': unknown prior kind {prior.get('kind')!r} (use 'uniform' or 'normal')")
        if self.mirror not in ("same", "reflect"):
            raise SchemaError(f"parameter '{self.name}': mirror must be 'same' or 'reflect', got {self.mirror!r}")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        prior = dict(self.prior or {"kind": "uniform"})
        if prior["kind"] == "normal":
            # Rejection-free truncation: clip is biased towards the bounds, so resample outliers instead.
            out = rng.normal(prior["mean"], prior["std"], size=n)
            bad = (out < self.low) | (out > self.high)
            while bad.any():
                out[bad] = rng.normal(prior["mean"], prior["std"], size=int(bad.sum()))
                bad = (out < self.low) | (out > self.high)
            return out
        return rng.uniform(self.low, self.high, size=n)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "low": self.low, "high": self.high, "default": self.default}
        if self.part:
            d["part"] = self.part
        if self.prior:
            d["prior"] = dict(self.prior)
        if self.description:
            d["description"] = self.description
        if self.mirror != "same":
            d["mirror"] = self.mirror
        if self.color:
            d["color"] = True
        return d


@dataclass(frozen=True)
class DiscreteParam:
    """A choice among labelled options; values are option indices.

    ``weights`` is an optional sampling prior (one non-negative weight per option).
    ``absent_option`` names the option meaning "no asset" (e.g. ``"none"`` for glasses): such assets
    may be absent or transparent, which data production treats specially.
    """

    name: str
    options: tuple[str, ...]
    default: int = 0
    part: str | None = None
    weights: tuple[float, ...] | None = None
    absent_option: str | None = None
    description: str = ""
    # Under a horizontal flip of the face option i becomes option mirror[i] (e.g. a side parting swaps sides);
    # None: every option looks the same mirrored.
    mirror: tuple[int, ...] | None = None
    color: bool = False     # describes a colour (hair, skin, eyes): flagged unreliable on grayscale photos

    kind = "discrete"

    @property
    def may_be_absent(self) -> bool:
        return self.absent_option is not None

    @property
    def absent_index(self) -> int | None:
        return None if self.absent_option is None else self.options.index(self.absent_option)

    def check(self) -> None:
        if len(self.options) < 2:
            raise SchemaError(f"parameter '{self.name}': a discrete parameter needs at least 2 options")
        if len(set(self.options)) != len(self.options):
            raise SchemaError(f"parameter '{self.name}': option labels must be unique")
        if not 0 <= self.default < len(self.options):
            raise SchemaError(f"parameter '{self.name}': default option {self.default} out of range 0..{len(self.options) - 1}")
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=float)
            if w.shape != (len(self.options),) or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
                raise SchemaError(f"parameter '{self.name}': weights need one finite non-negative value per option, not all zero")
        if self.absent_option is not None and self.absent_option not in self.options:
            raise SchemaError(f"parameter '{self.name}': absent_option {self.absent_option!r} is not one of its options")
        if self.mirror is not None:
            m = list(self.mirror)
            if sorted(m) != list(range(len(self.options))) or any(m[m[i]] != i for i in range(len(m))):
                raise SchemaError(f"parameter '{self.name}': mirror must map each option index to its mirrored option "
                                  f"(a permutation of 0..{len(self.options) - 1} that is its own inverse), got {m}")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        p = None
        if self.weights is not None:
            p = np.asarray(self.weights, dtype=float)
            p = p / p.sum()
        return rng.choice(len(self.options), size=n, p=p)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "options": list(self.options), "default": self.default}
        if self.part:
            d["part"] = self.part
        if self.weights is not None:
            d["weights"] = list(self.weights)
        if self.absent_option is not None:
            d["absent_option"] = self.absent_option
        if self.description:
            d["description"] = self.description
        if self.mirror is not None:
            d["mirror"] = list(self.mirror)
        if self.color:
            d["color"] = True
        return d


Param = Union[ContinuousParam, DiscreteParam]


@dataclass(frozen=True)
class AvatarSchema:
    """The full parameter set of one engine.

    ``parts`` is the ordered list of semantic part labels used by the engine's masks: a mask pixel
    with value ``k`` belongs to ``parts[k]``; ``parts[0]`` is always ``"background"``.
    """

    engine: str
    params: tuple[Param, ...]
    parts: tuple[str, ...] = ("background",)
    version: str = "1"
    format_version: int = field(default=SCHEMA_FORMAT_VERSION)

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"schema '{self.engine}': duplicate parameter names {dupes}")
        if not self.params:
            raise SchemaError(f"schema '{self.engine}': no parameters")
        if not self.parts or self.parts[0] != "background":
            raise SchemaError(f"schema '{self.engine}': parts must start with 'background'")
        if len(set(self.parts)) != len(self.parts):
            raise SchemaError(f"schema '{self.engine}': part labels must be unique")
        for p in self.params:
            p.check()
            if p.part is not None and p.part not in self.parts:
                raise SchemaError(f"parameter '{p.name}': part {p.part!r} is not in the schema's parts {list(self.parts)}")

    # ----- views -------------------------------------------------------------------------------
    @property
    def continuous(self) -> tuple[ContinuousParam, ...]:
        return tuple(p for p in self.params if isinstance(p, ContinuousParam))

    @property
    def discrete(self) -> tuple[DiscreteParam, ...]:
        return tuple(p for p in self.params if isinstance(p, DiscreteParam))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"schema '{self.engine}' has no parameter '{name}' (known: {', '.join(self.names)})")

    def default_vector(self) -> AvatarVector:
        return {p.name: (float(p.default) if isinstance(p, ContinuousParam) else int(p.default)) for p in self.params}

    # ----- JSON --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "engine": self.engine,
            "version": self.version,
            "parts": list(self.parts),
            "params": [p.to_json() for p in self.params],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "AvatarSchema":
        try:
            fmt = int(data.get("format_version", SCHEMA_FORMAT_VERSION))
            if fmt > SCHEMA_FORMAT_VERSION:
                raise SchemaError(
                    f"schema format version {fmt} is newer than this avatartool understands ({SCHEMA_FORMAT_VERSION}); upgrade avatartool"
                )
            params: list[Param] = []
            for raw in data["params"]:
                kind = raw.get("kind")
                if kind == "continuous":
                    params.append(ContinuousParam(
                        name=str(raw["name"]), low=float(raw["low"]), high=float(raw["high"]),
                        default=float(raw.get("default", raw["low"])), part=raw.get("part"),
                        prior=raw.get("prior"), description=raw.get("description", ""),
                        mirror=str(raw.get("mirror", "same")), color=bool(raw.get("color", False)),
                    ))
                elif kind == "discrete":
                    weights = raw.get("weights")
                    params.append(DiscreteParam(
                        name=str(raw["name"]), options=tuple(str(o) for o in raw["options"]),
                        default=int(raw.get("default", 0)), part=raw.get("part"),
                        weights=None if weights is None else tuple(float(w) for w in weights),
                        absent_option=raw.get("absent_option"), description=raw.get("description", ""),
                        mirror=None if raw.get("mirror") is None else tuple(int(i) for i in raw["mirror"]),
                        color=bool(raw.get("color", False)),
                    ))
                else:
                    raise SchemaError(f"parameter {raw.get('name')!r}: kind must be 'continuous' or 'discrete', got {kind!r}")
            return cls(engine=str(data["engine"]), params=tuple(params), parts=tuple(data.get("parts", ("background",))),
                       version=str(data.get("version", "1")), format_version=fmt)
        except KeyError as exc:
            raise SchemaError(f"schema JSON is missing the field {exc.args[0]!r}") from None
        except (TypeError, AttributeError) as exc:
            raise SchemaError(f"schema JSON is malformed: {exc}") from None

    @classmethod
    def loads(cls, text: str) -> "AvatarSchema":
        try:
            return cls.from_json(json.loads(text))
        except json.JSONDecodeError as exc:
            raise SchemaError(f"schema is not valid JSON: {exc}") from None

    # ----- vectors -----------------------------------------------------------------------------
    def validate(self, vector: Mapping[str, Any], index: int | None = None) -> AvatarVector:
        """Check ``vector`` and return its canonical form (floats and option indices).

        Discrete values may be given as an option index or an option label.

        Raises:
            VectorError: naming the parameter and the problem.
        """
        if not isinstance(vector, Mapping):
            raise VectorError(f"an avatar vector must be a JSON object / dict, got {type(vector).__name__}", index=index)
        unknown = [k for k in vector if k not in self.names]
        if unknown:
            raise VectorError(f"unknown parameter '{unknown[0]}' for engine '{self.engine}' (known: {', '.join(self.names)})",
                              param=unknown[0], index=index)
        out: AvatarVector = {}
        for p in self.params:
            if p.name not in vector:
                raise VectorError(f"missing parameter '{p.name}'", param=p.name, index=index)
            value = vector[p.name]
            if isinstance(p, ContinuousParam):
                if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                    raise VectorError(f"parameter '{p.name}' must be a number, got {value!r}", param=p.name, index=index)
                v = float(value)
                if math.isnan(v):
                    raise VectorError(f"parameter '{p.name}' is NaN", param=p.name, index=index)
                if not p.low <= v <= p.high:
                    raise VectorError(f"parameter '{p.name}' = {v} is outside its range [{p.low}, {p.high}]", param=p.name, index=index)
                out[p.name] = v
            else:
                if isinstance(value, str):
                    if value not in p.options:
                        raise VectorError(f"parameter '{p.name}' has no option {value!r} (options: {', '.join(p.options)})",
                                          param=p.name, index=index)
                    out[p.name] = p.options.index(value)
                    continue
                if isinstance(value, (float, np.floating)) and math.isnan(float(value)):
                    raise VectorError(f"parameter '{p.name}' is NaN", param=p.name, index=index)
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
                        isinstance(value, (float, np.floating)) and float(value).is_integer()):
                    raise VectorError(f"parameter '{p.name}' must be an option index or label, got {value!r}", param=p.name, index=index)
                i = int(value)
                if not 0 <= i < len(p.options):
                    raise VectorError(f"parameter '{p.name}' option {i} is out of range 0..{len(p.options) - 1}", param=p.name, index=index)
                out[p.name] = i
        return out

    def validate_many(self, vectors: Iterable[Mapping[str, Any]]) -> list[AvatarVector]:
        return [self.validate(v, index=i) for i, v in enumerate(vectors)]

    def labels(self, vector: Mapping[str, Any]) -> dict[str, Union[float, str]]:
        """Human-readable form: option labels instead of indices."""
        v = self.validate(vector)
        return {p.name: (v[p.name] if isinstance(p, ContinuousParam) else p.options[int(v[p.name])]) for p in self.params}

    def sample(self, n: int, seed: int) -> list[AvatarVector]:
        """Draw ``n`` vectors from the parameters' priors; the same seed gives the same vectors."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return [self.sample_one(seed, i) for i in range(n)]

    def sample_one(self, seed: int, index: int) -> AvatarVector:
        """Vector ``index`` of the stream for ``seed``; a stream's prefix does not depend on its length,
        so a rerun with a larger ``n`` extends a dataset instead of replacing it."""
        rng = np.random.default_rng([int(seed), int(index)])
        return {p.name: (float(p.sample(1, rng)[0]) if isinstance(p, ContinuousParam) else int(p.sample(1, rng)[0]))
                for p in self.params}

    # ----- training targets --------------------------------------------------------------------
    def encode(self, vectors: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors -> (continuous targets in [0, 1], shape [n, C]; class indices, shape [n, D])."""
        vs = self.validate_many(vectors)
        cont = np.array([[(v[p.name] - p.low) / (p.high - p.low) for p in self.continuous] for v in vs],
                        dtype=np.float32).reshape(len(vs), len(self.continuous))
        disc = np.array([[v[p.name] for p in self.discrete] for v in vs], dtype=np.int64).reshape(len(vs), len(self.discrete))
        return cont, disc

    def decode(self, continuous: np.ndarray, discrete: np.ndarray) -> list[AvatarVector]:
        """Inverse of :meth:`encode`; continuous values are clipped into range."""
        n_c, n_d = len(self.continuous), len(self.discrete)
        # A schema without one kind of parameter has zero-width targets; reshape(-1, 0) is ambiguous,
        # so such a side takes its row count from the other one.
        continuous = np.asarray(continuous, dtype=np.float64).reshape(-1, n_c) if n_c else None
        discrete = np.asarray(discrete).reshape(-1, n_d) if n_d else None
        if continuous is None:
            continuous = np.zeros((len(discrete), 0))
        if discrete is None:
            discrete = np.zeros((len(continuous), 0), dtype=np.int64)
        if len(continuous) != len(discrete):
            raise ValueError(f"continuous ({len(continuous)}) and discrete ({len(discrete)}) row counts differ")
        out: list[AvatarVector] = []
        for c_row, d_row in zip(continuous, discrete):
            v: AvatarVector = {}
            for p, x in zip(self.continuous, c_row):
                v[p.name] = float(p.low + np.clip(x, 0.0, 1.0) * (p.high - p.low))
            for p, k in zip(self.discrete, d_row):
                v[p.name] = int(k)
            out.append({p.name: v[p.name] for p in self.params})
        return out
