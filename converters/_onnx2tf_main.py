"""Run the onnx2tf command line for the exporter (``python -m converters._onnx2tf_main [--keep P,…] -- ARGS``).

Three things differ from running ``onnx2tf ARGS``:

* **no network**: onnx2tf fetches a sample calibration file from GitHub in some cases (fixed batch <= 20, or
  int8 without ``-cind``). Export must never download, so every outbound socket connection raises here: a
  conversion that would fetch fails loudly instead of silently calibrating on someone else's data.
* **one simplification**: onnx2tf runs the ``onnxsim`` command three times in a row, in place on its input,
  ~8.5 s each on 2 cores (mostly the command's imports); on our estimators the first pass is already a fixed
  point (the second and third give the same bytes). Here the input (the caller's copy) is simplified once,
  in this process, and onnx2tf is told not to (``-nuo``).
* **only the files asked for** (``--keep fp32,int8``): with ``-oiqt`` onnx2tf converts to seven TFLite files
  (float32, float16, dynamic range, int8, and full-integer int8 and two int16-activation variants, the last three
  each calibrated again). A conversion whose settings match none of the kept precisions returns an empty
  model, which onnx2tf writes and nobody reads; the log says which were skipped. Every conversion is a
  converter object of its own or comes after the kept ones on the same object, so skipping one does not
  change another's bytes.
"""
from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

#: our precision names (converters.tflite_export.ONNX2TF_FILES) and onnx2tf's other variants
KNOWN_KINDS = ("fp32", "fp16", "dynamic_int8", "int8", "full_int8", "int16_activations", "full_int16_activations")


class NetworkBlocked(OSError):
    pass


def block_network() -> None:
    real_connect = socket.socket.connect

    def guarded(self, address):  # unix sockets (local IPC) stay allowed
        if self.family == getattr(socket, "AF_UNIX", None):
            return real_connect(self, address)
        raise NetworkBlocked(f"swiftavatar export: network access blocked (onnx2tf tried to connect to {address!r})")

    socket.socket.connect = guarded
    socket.create_connection = lambda address, *a, **k: (_ for _ in ()).throw(
        NetworkBlocked(f"swiftavatar export: network access blocked (connect to {address!r})"))


def conversion_kind(converter: Any) -> str:
    """Which of onnx2tf's TFLite files a converter, set up as onnx2tf sets it up, is about to make."""
    import tensorflow as tf
    ops = set(converter.target_spec.supported_ops)
    if tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 in ops:
        return "full_int16_activations" if converter.inference_input_type == tf.int16 else "int16_activations"
    if converter.representative_dataset is not None:
        if converter.inference_input_type in (tf.int8, tf.uint8):
            return "full_int8"
        return "int8"
    if not converter.optimizations:
        return "fp32"
    if tf.float16 in set(converter.target_spec.supported_types):
        return "fp16"
    return "dynamic_int8"


def convert_only(keep: set[str]) -> None:
    """Make every TFLite conversion whose kind is not in ``keep`` return an empty model."""
    from tensorflow.lite.python import lite
    depth = [0]   # the subclasses' convert() call their bases': decide once, at the outermost call

    def wrap(convert):
        def guarded(self, *args, **kwargs):
            depth[0] += 1
            try:
                if depth[0] == 1:
                    kind = conversion_kind(self)
                    if kind not in keep:
                        print(f"swiftavatar: skipped onnx2tf's {kind} conversion (not asked for)", file=sys.stderr)
                        return b""
                return convert(self, *args, **kwargs)
            finally:
                depth[0] -= 1
        return guarded

    for name in dir(lite):
        cls = getattr(lite, name)
        if isinstance(cls, type) and issubclass(cls, lite.TFLiteConverterBase) and "convert" in cls.__dict__:
            cls.convert = wrap(cls.__dict__["convert"])


def simplify_once(onnx_path: Path) -> None:
    """onnxsim once, in place (the file is the caller's copy); on failure onnx2tf gets the file as it was, as
    onnx2tf itself carries on when its own onnxsim run fails."""
    import onnx
    try:
        import onnxsim
        model, ok = onnxsim.simplify(onnx.load(str(onnx_path)))
    except Exception as exc:  # noqa: BLE001 - onnx2tf's own behaviour: warn and convert the unsimplified model
        print(f"swiftavatar: onnxsim failed ({type(exc).__name__}: {exc}); converting the model as exported",
              file=sys.stderr)
        return
    if not ok:
        print("swiftavatar: onnxsim could not check its simplified model; converting the model as exported",
              file=sys.stderr)
        return
    tmp = onnx_path.with_suffix(".simplified.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(onnx_path)
    print("swiftavatar: simplified the model once with onnxsim (onnx2tf's own three runs are off)", file=sys.stderr)


def parse(argv: list[str]) -> tuple[set[str] | None, list[str]]:
    """``[--keep P,…] -- ONNX2TF_ARGS`` (or onnx2tf's arguments alone) -> (kinds to keep or None for all, args)."""
    keep = None
    if argv[:1] == ["--keep"]:
        if len(argv) < 2:
            raise SystemExit("--keep needs a comma list of " + ", ".join(KNOWN_KINDS))
        keep = {k for k in argv[1].split(",") if k}
        unknown = sorted(keep - set(KNOWN_KINDS))
        if unknown:
            raise SystemExit(f"--keep {','.join(unknown)}: unknown (choose from {', '.join(KNOWN_KINDS)})")
        argv = argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    return keep, argv


def main(argv: list[str]) -> int:
    block_network()
    keep, args = parse(argv)
    if "-i" in args and "-nuo" not in args:
        simplify_once(Path(args[args.index("-i") + 1]))
        args = [*args, "-nuo"]
    if keep is not None:
        convert_only(keep)
    from onnx2tf import onnx2tf as o2t
    sys.argv = ["onnx2tf", *args]
    o2t.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
