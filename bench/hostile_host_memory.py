"""Host memory whatever the worker sends: the peak RSS of the `rlm` process while a cell prints
1 GB, returns a 300 MB answer, forges oversized frames or floods the protocol, against a cell
that does nothing, measured side by side in one run.

    python bench/hostile_host_memory.py

Each scenario is one `rlm ask` on the scripted provider: the hostile cell, then `FINAL("ok")`,
which must still be the answer. The peak is the host process's own (getrusage RUSAGE_SELF at
exit), so the worker's memory is not counted. Target (issue 9): under 300 MB in every case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

# Finds the worker's protocol pipe (the write end: a FIFO opened write-only) from inside a cell.
FIND_PIPE = (
    "import os, fcntl, stat, struct, json\npipe = next(fd for fd in range(3, 64) if _is_out(fd))\n"
)
IS_OUT = (
    "def _is_out(fd):\n"
    "    try:\n"
    "        import os, fcntl, stat\n"
    "        return stat.S_ISFIFO(os.fstat(fd).st_mode) and "
    "fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY\n"
    "    except OSError:\n"
    "        return False\n"
)

SCENARIOS = {
    "a cell that does nothing": "x = 1",
    "print 1 GB": "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)",
    "1 GB to fd 1 (os.write)": "import os\nchunk = b'y' * (1 << 20)\nfor _ in range(1024):\n    os.write(1, chunk)",
    "FINAL of 300 MB": "FINAL('z' * 300_000_000)",
    "forged 4 GB frame header": FIND_PIPE
    + "os.write(pipe, struct.pack('>I', 0xFFFFFFF0) + b'{')\nimport time; time.sleep(3)",
    "forged 30 MB result frame": FIND_PIPE
    + "body = json.dumps({'type': 'result', 'id': 1, 'output': 'o' * 30_000_000, 'output_chars': 1,"
    " 'error': False, 'interrupted': False, 'final': None, 'final_source': None}).encode()\n"
    "os.write(pipe, struct.pack('>I', len(body)) + body)\nimport time; time.sleep(3)",
    "flood: 1,500 forged 1 MB queries": FIND_PIPE
    + "prompt = 'q' * (1 << 20)\nfor i in range(1500):\n"
    "    body = json.dumps({'type': 'query', 'id': 10_000 + i, 'prompts': [prompt], 'model': None,"
    " 'batched': False, 'kind': 'llm', 'contexts': None}).encode()\n"
    "    os.write(pipe, struct.pack('>I', len(body)) + body)\n",
    # 3 bytes of `[],` parse into a 64-byte list: the host weighs a frame before parsing it.
    "forged 16 MB frame of nested lists": FIND_PIPE
    + "ctx = '[' + ','.join(['[]'] * 5_000_000) + ']'\n"
    'body = (\'{"type": "query", "id": 9, "prompts": ["x"], "model": null, '
    '"batched": false, "kind": "llm", "contexts": [\' + ctx + \']}\').encode()\n'
    "for _ in range(3):\n"
    "    os.write(pipe, struct.pack('>I', len(body)) + body)\n"
    "import time; time.sleep(3)",
    "batch of 300 prompts of 1 MB": "replies = llm_query_batched(['p' * (1 << 20)] * 300)\nprint(len(replies))",
}

# Runs the CLI in this process, then records this process's own peak RSS (KiB on Linux).
WRAPPER = (
    "import atexit, os, resource, runpy, sys\n"
    "out = os.environ['RLM_BENCH_RSS']\n"
    "atexit.register(lambda: open(out, 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))\n"
    "sys.argv = ['rlm', *sys.argv[1:]]\n"
    "runpy.run_module('rlm_cli', run_name='__main__')\n"
)


def run(name: str, cell: str, tmp: str) -> tuple[float, float, bytes]:
    script = os.path.join(tmp, "s.json")
    code = IS_OUT + cell if "_is_out" in cell else cell
    # The answer comes in a later cell; a forged frame can cost the worker (and its next cell).
    root = [f"```repl\n{code}\n```", *["```repl\nFINAL('ok')\n```"] * 2]
    with open(script, "w") as handle:
        json.dump({"root": root, "sub": [{"reply": "r"}]}, handle)
    rss_file = os.path.join(tmp, "rss")
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, "ask", "--provider", "scripted", "--script", script]
        + ["--quiet", "--cell-timeout", "60", "q?"],
        input=b"some input",
        capture_output=True,
        env={**os.environ, "RLM_BENCH_RSS": rss_file},
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0 or proc.stdout != b"ok\n":
        raise SystemExit(
            f"{name}: the run did not answer: {proc.returncode} {proc.stderr[-500:]!r}"
        )
    with open(rss_file) as handle:
        return int(handle.read()) / 1024, elapsed, proc.stderr


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: run(name, cell, tmp) for name, cell in SCENARIOS.items()}
    base = results["a cell that does nothing"][0]
    print(f"{'scenario':<34} {'host peak RSS':>14} {'vs idle':>8} {'time':>7}")
    for name, (rss, elapsed, _stderr) in results.items():
        print(f"{name:<34} {rss:11.0f} MB {rss / base:7.2f}x {elapsed:6.1f}s")
    worst = max(rss for rss, _, _ in results.values())
    print(f"worst: {worst:.0f} MB (target: under 300 MB)")


if __name__ == "__main__":
    main()
