"""Estimator outputs -> avatar vector and per-parameter confidences, from the schema JSON alone.

No toolchain import: a phone team can port these ~60 lines as they are. Continuous heads output
``[0, 1]`` per parameter (scaled here to ``[low, high]``); each discrete head outputs logits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np

from .contract import CONTINUOUS_HEAD
from .errors import BundleError
from .result import ParameterEstimate


@dataclass
class RawEstimate:
    """Head outputs for one face: continuous values in [0, 1] (schema order) and per-parameter softmax."""

    continuous: np.ndarray                 # [C]
    probabilities: dict[str, np.ndarray]   # discrete name -> [K]


class SchemaDecoder:
    """Decodes outputs for one schema (the ``schema`` object of the bundle manifest).

    Raises:
        BundleError: the schema JSON is malformed.
    """

    def __init__(self, schema: Mapping, temperatures: Optional[Mapping[str, float]] = None, top_k: int = 3):
        """``temperatures``: per discrete parameter, the exporter's fitted temperature (logits are divided by it
        before the softmax; none given: the raw softmax). ``top_k``: alternatives reported per parameter."""
        try:
            self.engine = str(schema["engine"])
            self.params = list(schema["params"])
            self.continuous = [p for p in self.params if p["kind"] == "continuous"]
            self.discrete = [p for p in self.params if p["kind"] == "discrete"]
            for p in self.continuous:
                float(p["low"]), float(p["high"])
            for p in self.discrete:
                if len(p["options"]) < 2:
                    raise ValueError(f"{p['name']} has fewer than 2 options")
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"the bundle's schema is malformed ({exc}); re-export the bundle") from None
        self.schema = dict(schema)
        self.temperatures = {str(k): float(v) for k, v in (temperatures or {}).items()}
        self.top_k = int(top_k)

    @property
    def calibrated(self) -> bool:
        """Whether every discrete head's probabilities are temperature-scaled."""
        return all(p["name"] in self.temperatures for p in self.discrete)

    @property
    def head_names(self) -> list[str]:
        return ([CONTINUOUS_HEAD] if self.continuous else []) + [p["name"] for p in self.discrete]

    def raw(self, outputs: Mapping[str, np.ndarray], row: int = 0) -> RawEstimate:
        """Pick row ``row`` of each head and turn logits into probabilities (checks shapes and NaNs)."""
        cont = np.zeros(0, np.float64)
        if self.continuous:
            cont = np.asarray(outputs[CONTINUOUS_HEAD], np.float64).reshape(-1, len(self.continuous))[row]
        probs = {}
        for p in self.discrete:
            logits = np.asarray(outputs[p["name"]], np.float64).reshape(-1, len(p["options"]))[row]
            logits = logits / self.temperatures.get(p["name"], 1.0)
            e = np.exp(logits - logits.max())
            probs[p["name"]] = e / e.sum()
        if not np.isfinite(cont).all() or not all(np.isfinite(v).all() for v in probs.values()):
            raise BundleError("the estimator produced NaN/inf outputs: the model file is damaged or was exported "
                              "incorrectly; re-export it")
        return RawEstimate(continuous=np.clip(cont, 0.0, 1.0), probabilities=probs)

    def merge_mirrored(self, raw: RawEstimate, mirrored: RawEstimate) -> tuple[RawEstimate, np.ndarray]:
        """Average an estimate with the estimate of the horizontally flipped crop, each mirrored answer first
        mapped back through the schema's ``mirror`` field (a discrete option permutation; a continuous
        ``"reflect"`` maps x to 1 - x in [0, 1] units). Returns the merged estimate and, per continuous
        parameter, half the disagreement of the two views (in [0, 1] units)."""
        back = mirrored.continuous.copy()
        for i, p in enumerate(self.continuous):
            if p.get("mirror") == "reflect":
                back[i] = 1.0 - back[i]
        probs = {}
        for p in self.discrete:
            q = mirrored.probabilities[p["name"]]
            perm = p.get("mirror")
            if perm is not None:
                mapped = np.empty_like(q)
                mapped[np.asarray(perm, int)] = q        # mirrored option j is option perm[j] of the original
                q = mapped
            probs[p["name"]] = (raw.probabilities[p["name"]] + q) / 2
        return (RawEstimate(continuous=(raw.continuous + back) / 2, probabilities=probs),
                np.abs(raw.continuous - back) / 2)

    def parameters(self, raw: RawEstimate, choices: Optional[Mapping[str, int]] = None,
                   spread: Optional[np.ndarray] = None) -> tuple[dict[str, ParameterEstimate], dict]:
        """Turn a raw estimate into ``(parameters, vector)``; ``choices`` overrides the argmax
        (VIDEO-mode hysteresis); ``spread`` (from :meth:`merge_mirrored`) becomes each continuous parameter's
        ``uncertainty`` in its own units."""
        params: dict[str, ParameterEstimate] = {}
        ci = 0
        for p in self.params:
            name = p["name"]
            if p["kind"] == "continuous":
                x = float(raw.continuous[ci])
                ci += 1
                lo, hi = float(p["low"]), float(p["high"])
                unc = None if spread is None else float(spread[ci - 1]) * (hi - lo)
                params[name] = ParameterEstimate(name, "continuous", lo + x * (hi - lo), raw=x, uncertainty=unc)
            else:
                pr = raw.probabilities[name]
                k = int(choices[name]) if choices and name in choices else int(np.argmax(pr))
                best = np.argsort(-pr, kind="stable")[: self.top_k]
                params[name] = ParameterEstimate(name, "discrete", k, label=str(p["options"][k]),
                                                 confidence=float(pr[k]), probabilities=tuple(float(v) for v in pr),
                                                 alternatives=tuple((int(i), str(p["options"][i]), float(pr[i]))
                                                                    for i in best))
        return params, {n: e.value for n, e in params.items()}
