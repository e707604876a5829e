"""Generated text for benchmarks and tests: a mix of what people point rlm at."""

from __future__ import annotations

import json
import random

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "error",
    "warning",
    "request",
    "latency",
    "user",
    "service",
    "timeout",
    "retry",
    "connection",
    "database",
    "query",
    "index",
    "cache",
    "shard",
    "replica",
]
KINDS = ("prose", "code", "log", "json", "csv", "cjk")


def mixed_block(rng: random.Random) -> str:
    """One block of 20 to 400 lines of one kind: prose, code, logs, JSON, CSV or CJK text.
    Blocks end with a newline and start with a non-space character, so they are token
    boundaries: counting blocks one by one gives the exact count of their concatenation."""
    kind = rng.choice(KINDS)
    lines = []
    for _ in range(rng.randint(20, 400)):
        if kind == "prose":
            lines.append(" ".join(rng.choices(WORDS, k=rng.randint(5, 25))).capitalize() + ".")
        elif kind == "code":
            name = rng.choice(WORDS)
            lines.append(
                f"    def {name}_{rng.randint(0, 99)}(self, x):  return x * {rng.random():.4f}"
            )
        elif kind == "log":
            lines.append(
                f"2025-01-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
                f" {rng.choice(['INFO', 'WARN', 'ERROR'])} [{rng.choice(WORDS)}] id={rng.getrandbits(48):x}"
            )
        elif kind == "json":
            lines.append(json.dumps({"id": rng.randint(0, 10**6), "tags": rng.sample(WORDS, 3)}))
        elif kind == "csv":
            lines.append(",".join(str(rng.randint(0, 10**5)) for _ in range(8)))
        else:
            lines.append(
                "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(5, 40)))
            )
    return "\n".join(lines) + "\n"
