#!/usr/bin/env python3
"""A tiny external avatar engine that speaks avatartool's engine protocol, version 1.

It draws a coloured badge with two eyes on a light grey background, and writes a part mask
(0 = background, 1 = badge). It needs only the standard library, numpy and Pillow, and imports
nothing from the toolchain: it talks to avatartool solely through JSON lines on stdin/stdout, as
described in docs/engine-protocol.md.

Use it like this:

    avatartool render --engine 'cmd:python examples/external_engine/badge_engine.py' -n 8 --out /tmp/badges

Test hooks
----------
The ``--*-on SCALE`` options make the engine misbehave on purpose, so the test suite can check how
avatartool copes with a broken engine. Each takes the exact value of the ``scale`` parameter of the
vector that should fail (the value as it arrives in the JSON request; Python's ``repr`` of the float
the toolchain sampled round-trips exactly). Scale is continuous, so it picks out one vector.
They can be repeated to target several vectors.

``--fault-switch PATH`` makes every test hook (including ``--protocol``) apply only while PATH
exists. A test deletes the file to "fix" the engine without changing the command line, which a
resumed render requires to match. With ``--once`` the engine deletes PATH itself when a hook fires,
so the fault happens once (a crash that a restarted engine does not repeat). ``--delay SECONDS``
sleeps before each vector (a slow engine, for tests that must catch a run in the middle).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw

PROTOCOL = 1
ENGINE_NAME = "badge"

COLORS = {
    "red": (220, 50, 47),
    "green": (60, 170, 80),
    "blue": (38, 110, 210),
    "yellow": (235, 190, 30),
    "purple": (140, 80, 190),
}
SHAPES = ("circle", "square", "triangle", "diamond")
BACKGROUND = (240, 240, 240)
EYES = (30, 30, 30)
PARTS = ["background", "badge"]

SCHEMA = {
    "format_version": 1,
    "engine": ENGINE_NAME,
    "version": "1",
    "parts": PARTS,
    "params": [
        {"name": "color", "kind": "discrete", "options": list(COLORS), "default": 2, "part": "badge",
         "description": "fill colour of the badge"},
        {"name": "shape", "kind": "discrete", "options": list(SHAPES), "default": 0, "part": "badge",
         "weights": [2.0, 1.0, 1.0, 1.0], "description": "outline of the badge"},
        {"name": "scale", "kind": "continuous", "low": 0.5, "high": 1.0, "default": 0.8, "part": "badge",
         "description": "badge size as a fraction of the image"},
    ],
}


def log(message: str) -> None:
    """Diagnostics go to stderr: stdout carries protocol lines only."""
    print(f"badge_engine: {message}", file=sys.stderr, flush=True)


# ----- drawing ---------------------------------------------------------------------------------
def draw_badge(color: int, shape: int, scale: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (RGB uint8 [size, size, 3], label mask uint8 [size, size])."""
    half = scale * size / 2
    c = size / 2
    box = [c - half, c - half, c + half, c + half]
    mask_im = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask_im)
    name = SHAPES[shape]
    if name == "circle":
        draw.ellipse(box, fill=1)
    elif name == "square":
        draw.rectangle(box, fill=1)
    elif name == "triangle":
        draw.polygon([(c, c - half), (c + half, c + half), (c - half, c + half)], fill=1)
    else:  # diamond
        draw.polygon([(c, c - half), (c + half, c), (c, c + half), (c - half, c)], fill=1)
    mask = np.asarray(mask_im, dtype=np.uint8)

    image = np.empty((size, size, 3), np.uint8)
    image[:] = BACKGROUND
    image[mask == 1] = COLORS[list(COLORS)[color]]

    # Two eyes, kept inside the badge so the mask stays exact.
    eyes_im = Image.new("L", (size, size), 0)
    eye_draw = ImageDraw.Draw(eyes_im)
    r = max(1.0, half * 0.12)
    ey = c + half * 0.15
    for ex in (c - half * 0.3, c + half * 0.3):
        eye_draw.ellipse([ex - r, ey - r, ex + r, ey + r], fill=1)
    eyes = (np.asarray(eyes_im) == 1) & (mask == 1)
    image[eyes] = EYES
    return image, mask


# ----- protocol --------------------------------------------------------------------------------
class BadgeEngine:
    def __init__(self, args: argparse.Namespace):
        self.args = args

    def faults_active(self) -> bool:
        return self.args.fault_switch is None or os.path.exists(self.args.fault_switch)

    def protocol(self) -> int:
        if self.args.protocol is not None and self.faults_active():
            return self.args.protocol
        return PROTOCOL

    def send(self, message: dict) -> None:
        sys.stdout.write(json.dumps({"protocol": self.protocol(), **message}) + "\n")
        sys.stdout.flush()

    def error(self, message: str, index: int | None = None) -> None:
        reply = {"type": "error", "message": message}
        if index is not None:
            reply["index"] = index
        self.send(reply)

    def hit(self, option: list[float] | None, vector: dict) -> bool:
        fired = bool(option) and self.faults_active() and vector.get("scale") in option
        if fired and self.args.once and self.args.fault_switch:
            try:
                os.remove(self.args.fault_switch)
            except FileNotFoundError:  # another copy of this engine fired first
                return False
        return fired

    def handle(self, request: dict) -> bool:
        """Answer one request; False means stop."""
        kind = request.get("type")
        version = request.get("protocol")
        if not isinstance(version, int) or version > PROTOCOL:
            self.error(f"this engine speaks protocol {PROTOCOL}, got a request for {version!r}")
            return True
        if kind == "hello":
            self.send({"type": "hello", "engine": ENGINE_NAME, "masks": not self.args.no_masks})
        elif kind == "schema":
            self.send({"type": "schema", "schema": SCHEMA})
        elif kind == "render":
            self.render(request)
        elif kind == "shutdown":
            return False
        else:
            self.error(f"unknown request type {kind!r}")
        return True

    def check(self, vector: object) -> str | None:
        if not isinstance(vector, dict):
            return "a vector must be a JSON object"
        color, shape, scale = vector.get("color"), vector.get("shape"), vector.get("scale")
        if not isinstance(color, int) or not 0 <= color < len(COLORS):
            return f"'color' must be an option index 0..{len(COLORS) - 1}, got {color!r}"
        if not isinstance(shape, int) or not 0 <= shape < len(SHAPES):
            return f"'shape' must be an option index 0..{len(SHAPES) - 1}, got {shape!r}"
        if not isinstance(scale, (int, float)) or not 0.5 <= scale <= 1.0:
            return f"'scale' must be a number in [0.5, 1.0], got {scale!r}"
        return None

    def render(self, request: dict) -> None:
        a = self.args
        size, want_masks, out_dir = request.get("size"), bool(request.get("masks")), request.get("out_dir")
        vectors = request.get("vectors")
        if not isinstance(size, int) or size < 1 or not isinstance(out_dir, str) or not isinstance(vectors, list):
            self.error("a render request needs an integer 'size', a string 'out_dir' and a list 'vectors'")
            return
        files = []
        for i, vector in enumerate(vectors):
            problem = self.check(vector)
            if problem:
                self.error(problem, index=i)
                return
            # ---- test hooks ----
            if a.delay:
                time.sleep(a.delay)
            if self.hit(a.error_on, vector):
                self.error(f"refusing to draw scale={vector['scale']!r} [test hook: --error-on]", index=i)
                return
            if self.hit(a.crash_on, vector):
                log(f"crashing on purpose at scale={vector['scale']!r} [test hook: --crash-on]")
                sys.exit(3)
            if self.hit(a.hang_on, vector):
                log(f"hanging on purpose at scale={vector['scale']!r} [test hook: --hang-on]")
                parent = os.getppid()
                while os.getppid() == parent:  # until killed; give up if avatartool itself goes away
                    time.sleep(0.2)
                sys.exit(4)
            # ---- drawing ----
            image, mask = draw_badge(vector["color"], vector["shape"], float(vector["scale"]), size)
            entry = {"image": f"{request.get('id')}_{i}.png"}
            if self.hit(a.wrong_size_on, vector):
                image = image[: size // 2, : size // 2]
            if not self.hit(a.missing_file_on, vector):
                Image.fromarray(image).save(os.path.join(out_dir, entry["image"]))
            if want_masks:
                entry["mask"] = f"{request.get('id')}_{i}_mask.png"
                Image.fromarray(mask).save(os.path.join(out_dir, entry["mask"]))
            files.append(entry)
        self.send({"type": "rendered", "id": request.get("id"), "files": files})

    def serve(self) -> int:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError:
                self.error(f"could not parse request line {line[:100]!r}")
                continue
            if not self.handle(request):
                break
        return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Example external avatar engine (JSON-lines protocol 1).")
    p.add_argument("--no-masks", action="store_true", help="announce masks: false and never write masks")
    hooks = p.add_argument_group("test hooks", "make the engine fail on purpose; SCALE is the exact 'scale' value "
                                               "of the vector to fail on (repeatable)")
    hooks.add_argument("--crash-on", type=float, action="append", metavar="SCALE", help="exit with code 3")
    hooks.add_argument("--hang-on", type=float, action="append", metavar="SCALE", help="stop answering")
    hooks.add_argument("--wrong-size-on", type=float, action="append", metavar="SCALE",
                       help="write an image of half the requested size")
    hooks.add_argument("--missing-file-on", type=float, action="append", metavar="SCALE",
                       help="name an image file in the reply without writing it")
    hooks.add_argument("--error-on", type=float, action="append", metavar="SCALE",
                       help="reply with a protocol error naming the vector")
    hooks.add_argument("--protocol", type=int, metavar="N", help="announce protocol version N in every reply")
    hooks.add_argument("--fault-switch", metavar="PATH", help="the hooks above apply only while PATH exists")
    hooks.add_argument("--once", action="store_true", help="with --fault-switch: delete PATH when a hook fires")
    hooks.add_argument("--delay", type=float, metavar="SECONDS", help="sleep this long before drawing each vector")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(BadgeEngine(parse_args()).serve())
