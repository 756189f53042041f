"""Run the onnx2tf command line with the network switched off (``python -m converters._onnx2tf_main ARGS``).

onnx2tf fetches a sample calibration file from GitHub in some cases (fixed batch <= 20, or int8
without ``-cind``). Export must never download, so every outbound socket connection raises here:
a conversion that would fetch fails loudly instead of silently calibrating on someone else's data.
"""
from __future__ import annotations

import socket
import sys


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


def main(argv: list[str]) -> int:
    block_network()
    from onnx2tf import onnx2tf as o2t
    sys.argv = ["onnx2tf", *argv]
    o2t.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
