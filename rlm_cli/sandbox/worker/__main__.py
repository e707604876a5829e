"""Entry point: `main()`, started by the host as `python -I -B -u -c WORKER_MAIN ROOT POLICY`
(or `python -m rlm_cli.sandbox.worker POLICY`).

POLICY is a JSON object from `rlm_cli.sandbox.policy` (mode, limits, the temporary directory).
Namespaces come first, while the process is single-threaded; the rest of the confinement
follows the `init` frame, which names the inputs the worker may read (`Worker.serve`).
"""

from __future__ import annotations

import json
import os
import signal
import sys

from rlm_cli.sandbox.worker import confine
from rlm_cli.sandbox.worker.repl import Connection, Worker


def main() -> None:
    policy = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {"mode": "none"}
    isolation = confine.isolate(policy) if policy.get("mode") != "none" else {}
    # The protocol keeps the original stdin/stdout pipes; fd 0 and 1 are pointed elsewhere so that
    # stray writes (os.system, C extensions) cannot corrupt the frames.
    conn = Connection(os.dup(0), os.dup(1))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    worker = Worker(conn, policy, isolation)

    def on_sigint(signum: int, frame: object) -> None:
        # The host sends SIGINT to stop a cell that ran past its timeout; between cells it is moot.
        if worker.in_cell:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    worker.serve()


if __name__ == "__main__":
    main()
