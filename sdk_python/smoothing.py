"""VIDEO-mode temporal filtering so the avatar does not flicker.

Continuous values and discrete probabilities are smoothed with an exponential moving average whose
weight depends on the time step (``alpha = 1 - exp(-dt / tau)``), so frame-rate changes do not change
the feel. A discrete choice switches only when the new option's smoothed probability beats the
current choice's by ``hysteresis``. A gap longer than ``reset_after_ms`` (or a lost face) restarts.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .decode import RawEstimate


class VideoSmoother:
    """Stateful filter for one face track.

    Args:
        tau_ms: Smoothing time constant (0: no smoothing, hysteresis still applies).
        hysteresis: Probability margin needed to switch a discrete choice.
        reset_after_ms: Restart after a longer gap between frames.
    """

    def __init__(self, tau_ms: float = 150.0, hysteresis: float = 0.15, reset_after_ms: float = 1000.0):
        self.tau_ms = float(tau_ms)
        self.hysteresis = float(hysteresis)
        self.reset_after_ms = float(reset_after_ms)
        self.reset()

    def reset(self) -> None:
        self.last_ts: Optional[int] = None
        self.state: Optional[RawEstimate] = None
        self.choices: dict[str, int] = {}

    def update(self, raw: RawEstimate, timestamp_ms: int) -> tuple[RawEstimate, dict[str, int]]:
        """Feed one frame's raw estimate; returns the smoothed estimate and the discrete choices."""
        if self.state is None or self.last_ts is None or timestamp_ms - self.last_ts > self.reset_after_ms:
            self.state = RawEstimate(raw.continuous.copy(), {k: v.copy() for k, v in raw.probabilities.items()})
            self.choices = {k: int(np.argmax(v)) for k, v in raw.probabilities.items()}
            self.last_ts = timestamp_ms
            return self.state, dict(self.choices)
        dt = float(timestamp_ms - self.last_ts)
        self.last_ts = timestamp_ms
        a = 1.0 if self.tau_ms <= 0 else 1.0 - math.exp(-dt / self.tau_ms)
        cont = self.state.continuous + a * (raw.continuous - self.state.continuous)
        probs = {k: self.state.probabilities[k] + a * (v - self.state.probabilities[k])
                 for k, v in raw.probabilities.items()}
        self.state = RawEstimate(cont, probs)
        for k, p in probs.items():
            cur = self.choices.get(k, int(np.argmax(p)))
            best = int(np.argmax(p))
            if best != cur and p[best] >= p[cur] + self.hysteresis:
                cur = best
            self.choices[k] = cur
        return self.state, dict(self.choices)
