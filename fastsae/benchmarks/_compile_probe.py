"""``python -m fastsae.benchmarks._compile_probe OUT_DIR TIMES_JSON``: ``fastsae demo --fast``
into ``OUT_DIR`` with Numba's compile events recorded, the compile time of each
top-level kernel (its callees included; CPU seconds of the compiling thread,
so other load on the machine does not inflate it) written to ``TIMES_JSON``.
"""
from __future__ import annotations

import json
import sys
import time
from collections import defaultdict

from numba.core import event


class _CompileTimes(event.Listener):
    """CPU seconds per outermost compilation, keyed by the kernel's qualified name."""

    def __init__(self):
        self.stack, self.seconds, self.count = [], defaultdict(float), defaultdict(int)

    def on_start(self, ev):
        self.stack.append(time.thread_time())

    def on_end(self, ev):
        t0 = self.stack.pop()
        if self.stack:                      # a callee: counted in its caller
            return
        fn = getattr(ev.data["dispatcher"], "py_func", None)
        name = f"{fn.__module__}.{fn.__qualname__}" if fn is not None else "?"
        self.seconds[name] += time.thread_time() - t0
        self.count[name] += 1


def main(argv):
    out_dir, times_json = argv
    listener = _CompileTimes()
    event.register("numba:compile", listener)
    from fastsae.cli import main as cli_main
    code = cli_main(["demo", "--fast", "-q", "-o", out_dir])
    with open(times_json, "w") as f:
        json.dump({name: [listener.seconds[name], listener.count[name]]
                   for name in listener.seconds}, f)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
