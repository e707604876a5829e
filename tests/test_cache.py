"""The reply cache: keys, storage, sharing between processes, damage tolerance, `rlm cache`."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import run_rlm

from rlm_cli.engine import cache as cache_module
from rlm_cli.engine.cache import APPLICATION_ID, SCHEMA_VERSION, ReplyCache, default_cache_path
from rlm_cli.errors import UsageError
from rlm_cli.providers.base import Completion, Message, ModelRequest, Usage


def request(
    prompt: str = "Summarise this chunk.",
    *,
    model: str = "gpt-5-mini",
    purpose: str = "sub",
    max_output_tokens: int | None = None,
    system: str | None = None,
) -> ModelRequest:
    messages = ((Message("system", system),) if system is not None else ()) + (
        Message("user", prompt),
    )
    return ModelRequest(
        model=model,
        messages=messages,
        purpose="root" if purpose == "root" else "sub",
        max_output_tokens=max_output_tokens,
    )


def completion(text: str = "a summary", cost: float | None = 0.0125) -> Completion:
    return Completion(
        text=text,
        model="gpt-5-mini-2025-08-07",
        usage=Usage(
            input_tokens=1200, output_tokens=80, cached_input_tokens=1024, cache_write_tokens=7
        ),
        finish_reason="stop",
        request_id="req_123",
        cost_usd=cost,
    )


# -- keys ------------------------------------------------------------------------------------


def test_key_is_stable_across_calls_processes_and_extra_order() -> None:
    key = ReplyCache.key("openai", request(), {"temperature": 0.2, "base_url": None})
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == ReplyCache.key("openai", request(), {"temperature": 0.2})
    assert ReplyCache.key("openai", request(), {"a": 1, "b": [1, 2]}) == ReplyCache.key(
        "openai", request(), {"b": (1, 2), "a": 1.0}
    )
    # No dependence on hash randomisation or anything else of one process.
    code = textwrap.dedent(
        """
        from rlm_cli.engine.cache import ReplyCache
        from rlm_cli.providers.base import Message, ModelRequest
        r = ModelRequest("gpt-5-mini", (Message("user", "Summarise this chunk."),), "sub")
        print(ReplyCache.key("openai", r, {"temperature": 0.2}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == key


@pytest.mark.parametrize(
    ("provider", "req", "extra"),
    [
        ("anthropic", request(), {}),
        ("openai", request(model="gpt-5"), {}),
        ("openai", request("Summarise this chunk!"), {}),
        ("openai", request("Summarise this chunk. "), {}),
        ("openai", request(system="Be brief."), {}),
        ("openai", request(max_output_tokens=100), {}),
        ("openai", request(), {"temperature": 0.7}),
        ("openai", request(), {"temperature": 0.2, "reasoning_effort": "high"}),
        ("openai", request(), {"temperature": 0.2, "base_url": "http://localhost:8000/v1"}),
    ],
)
def test_key_changes_with_anything_that_changes_the_reply(
    provider: str, req: ModelRequest, extra: dict[str, object]
) -> None:
    base = ReplyCache.key("openai", request(), {"temperature": 0.2} if extra else {})
    assert ReplyCache.key(provider, req, extra) != base


def test_key_tells_roles_and_message_boundaries_apart() -> None:
    def key(*messages: Message) -> str:
        return ReplyCache.key("openai", ModelRequest("m", messages, "sub"))

    assert key(Message("user", "hi")) != key(Message("assistant", "hi"))
    assert key(Message("user", "ab"), Message("user", "c")) != key(
        Message("user", "a"), Message("user", "bc")
    )
    assert key(Message("user", "ab")) != key(Message("user", "a"), Message("user", "b"))


def test_key_ignores_on_retry_and_purpose() -> None:
    plain = ReplyCache.key("openai", request())
    with_callback = ModelRequest(
        "gpt-5-mini",
        request().messages,
        "sub",
        on_retry=lambda attempt, delay, reason: None,
    )
    assert ReplyCache.key("openai", with_callback) == plain
    assert ReplyCache.key("openai", request(purpose="root")) == plain


def test_key_extra_none_is_unset_and_integral_floats_equal_ints() -> None:
    assert ReplyCache.key("openai", request(), {"temperature": None}) == ReplyCache.key(
        "openai", request()
    )
    assert ReplyCache.key("openai", request(), {"temperature": 1}) == ReplyCache.key(
        "openai", request(), {"temperature": 1.0}
    )
    assert ReplyCache.key("openai", request(), {"flag": True}) != ReplyCache.key(
        "openai", request(), {"flag": 1}
    )


def test_key_refuses_what_is_not_json_data() -> None:
    with pytest.raises(TypeError):
        ReplyCache.key("openai", request(), {"x": object()})
    with pytest.raises(TypeError):
        ReplyCache.key("openai", request(), {"x": float("nan")})
    with pytest.raises(TypeError):
        ReplyCache.key("openai", request(), {"x": {1: "a"}})


def test_key_takes_any_text() -> None:
    odd = "naïve ✓ \U0001f600 \x00 \ud800 end"
    assert ReplyCache.key("openai", request(odd)) != ReplyCache.key("openai", request("x"))


# -- storage ---------------------------------------------------------------------------------


def test_round_trip_keeps_everything_and_a_hit_costs_nothing(tmp_path: Path) -> None:
    cache = ReplyCache(tmp_path / "c.sqlite3")
    key = cache.key("openai", request())
    assert cache.get(key) is None
    cache.put(key, completion())
    hit = cache.get(key)
    assert hit == Completion(
        text="a summary",
        model="gpt-5-mini-2025-08-07",
        usage=Usage(1200, 80, 1024, 7),
        finish_reason="stop",
        request_id="req_123",
        cost_usd=0.0,
    )
    entry = cache.entry(key)
    assert entry is not None
    assert entry.original_cost_usd == 0.0125
    assert time.time() - 60 < entry.created_at <= time.time()
    assert cache.disabled_reason is None


def test_entries_outlive_the_object_and_put_replaces(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with ReplyCache(path) as first:
        first.put("k", completion("old"))
        first.put("k", completion("new", cost=None))
        first.put("other", Completion(text="", model="m"))
    second = ReplyCache(path)
    hit, entry = second.get("k"), second.entry("k")
    assert hit is not None and hit.text == "new" and hit.cost_usd == 0.0
    assert entry is not None and entry.original_cost_usd is None
    empty = second.get("other")
    assert empty == Completion(text="", model="m", cost_usd=0.0)
    assert second.stats().entries == 2


def test_file_is_wal_versioned_and_private(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.sqlite3"
    cache = ReplyCache(path)
    assert not path.exists()  # opened lazily
    cache.put("k", completion())
    for directory in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


def test_a_text_sqlite_cannot_hold_is_not_cached_and_the_cache_stays_on(tmp_path: Path) -> None:
    cache = ReplyCache(tmp_path / "c.sqlite3")
    cache.put("bad", completion("lone \ud800 surrogate"))
    assert cache.get("bad") is None
    cache.put("good", completion("naïve ✓ \U0001f600 \x00 nul"))
    hit = cache.get("good")
    assert hit is not None and hit.text == "naïve ✓ \U0001f600 \x00 nul"
    assert cache.disabled_reason is None


def run_together(script: str, argvs: list[list[str]]) -> list[str]:
    """Run `script` in one process per argv, all starting its work at the same moment (the start
    time comes as the last argument); their outputs, once each has exited 0."""
    start = str(time.time() + 1.5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *argv, start],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out)
    return outputs


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from rlm_cli.engine.cache import ReplyCache
    from rlm_cli.providers.base import Completion, Usage
    path, name, count, start = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    while time.time() < start:
        time.sleep(0.001)
    cache = ReplyCache(path)
    misses = 0
    for i in range(count):
        cache.put(f"{name}-{i}", Completion(f"reply {name} {i}", "m", Usage(i, i, 0, 0), cost_usd=0.001))
        shared = f"shared-{i % 10}"
        if cache.get(shared) is None:
            cache.put(shared, Completion(f"shared {i % 10}", "m"))
        if cache.get(f"{name}-{i}") is None:
            misses += 1
    print(cache.disabled_reason, misses)
    """
)


@pytest.mark.slow
def test_processes_share_one_file_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "c.sqlite3"  # even the first open races
    outputs = run_together(WRITER, [[str(path), f"w{n}", "200"] for n in range(6)])
    assert [out.split() for out in outputs] == [["None", "0"]] * 6
    cache = ReplyCache(path)
    stats = cache.stats()
    assert stats.entries == 6 * 200 + 10
    assert stats.original_cost_usd == pytest.approx(6 * 200 * 0.001)
    hit = cache.get("w3-199")
    assert hit is not None and hit.text == "reply w3 199" and hit.usage.input_tokens == 199


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    cache = ReplyCache(tmp_path / "c.sqlite3")
    cache.put("parent", completion("from the parent"))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = cache.get("parent") is not None
        cache.put("child", completion("from the child"))
        os._exit(0 if ok and cache.disabled_reason is None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    hit = cache.get("child")
    assert hit is not None and hit.text == "from the child"
    assert cache.disabled_reason is None


# -- damage: never fails a run ---------------------------------------------------------------


def test_a_corrupt_file_is_a_miss_and_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    garbage = b"this is not a database\n" * 500
    path.write_bytes(garbage)
    cache = ReplyCache(path)
    assert cache.get("k") is None
    assert cache.disabled_reason is not None and "not a database" in cache.disabled_reason
    cache.put("k", completion())
    assert cache.get("k") is None
    assert path.read_bytes() == garbage
    assert not Path(f"{path}-wal").exists()
    with pytest.raises(UsageError, match="delete the file"):
        cache.stats()
    with pytest.raises(UsageError):
        ReplyCache(path).clear()
    assert path.read_bytes() == garbage


def test_a_cache_damaged_after_opening_turns_off_quietly(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    cache = ReplyCache(path)
    cache.put("k", completion())
    cache.close()
    with path.open("r+b") as f:  # overwrite the header and the first pages
        f.write(b"\xff" * 8192)
    Path(f"{path}-wal").unlink(missing_ok=True)
    Path(f"{path}-shm").unlink(missing_ok=True)
    cache = ReplyCache(path)
    assert cache.get("k") is None
    cache.put("k2", completion())
    assert cache.disabled_reason is not None


def test_another_programs_database_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    cache = ReplyCache(path)
    cache.put("k", completion())
    assert cache.get("k") is None
    assert "not an rlm reply cache" in (cache.disabled_reason or "")
    assert path.read_bytes() == before  # not even switched to WAL
    with pytest.raises(UsageError, match="not an rlm reply cache"):
        cache.clear()


def test_a_newer_schema_is_left_to_the_newer_rlm(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    ReplyCache(path).put("k", completion())
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    cache = ReplyCache(path)
    assert cache.get("k") is None
    assert "newer rlm" in (cache.disabled_reason or "")


def test_a_directory_or_an_impossible_path_turns_the_cache_off(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for path in (tmp_path, tmp_path / "file" / "sub" / "c.sqlite3"):
        cache = ReplyCache(path)
        cache.put("k", completion())
        assert cache.get("k") is None
        assert cache.disabled_reason


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_a_read_only_directory_turns_the_cache_off(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        cache = ReplyCache(directory / "c.sqlite3")
        cache.put("k", completion())
        assert cache.get("k") is None
        assert cache.disabled_reason
    finally:
        directory.chmod(0o700)


def test_a_busy_database_skips_the_call_but_keeps_the_cache_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "c.sqlite3"
    cache = ReplyCache(path)
    cache.put("before", completion())
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        cache.put("during", completion())
        assert cache.disabled_reason is None
        assert cache.get("before") is not None  # WAL: reading never waits for the writer
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert cache.get("during") is None
    cache.put("after", completion())
    assert cache.get("after") is not None
    assert cache.disabled_reason is None


# -- stats and clear -------------------------------------------------------------------------


def test_stats_and_clear(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    cache = ReplyCache(path)
    empty = cache.stats()
    assert (empty.exists, empty.entries, empty.bytes_on_disk) == (False, 0, 0)
    assert not path.exists()  # looking does not create it
    assert cache.clear() == 0
    first = time.time()
    cache.put("a", completion(cost=0.5))
    cache.put("b", completion(cost=0.25))
    cache.put("c", completion(cost=None))
    stats = cache.stats()
    assert stats.exists and stats.entries == 3
    assert stats.bytes_on_disk > 0
    assert stats.oldest is not None and stats.newest is not None
    assert first - 1 <= stats.oldest <= stats.newest <= time.time()
    assert stats.original_cost_usd == pytest.approx(0.75)
    assert stats.unknown_cost_entries == 1
    assert stats.to_json()["entries"] == 3
    assert cache.clear() == 3
    after = cache.stats()
    assert (after.entries, after.oldest, after.original_cost_usd) == (0, None, 0.0)
    assert cache.get("a") is None
    cache.put("d", completion())
    assert cache.get("d") is not None


def test_clear_gives_the_space_back(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    cache = ReplyCache(path)
    for i in range(200):
        cache.put(f"k{i}", completion("x" * 5000))
    full = cache.stats().bytes_on_disk
    assert cache.clear() == 200
    assert cache.stats().bytes_on_disk < full / 4


# -- where the cache lives -------------------------------------------------------------------


def test_xdg_cache_home_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "rlm" / "replies.sqlite3"
    cache = ReplyCache()
    cache.put("k", completion())
    assert (tmp_path / "xdg" / "rlm" / "replies.sqlite3").is_file()
    assert stat.S_IMODE((tmp_path / "xdg" / "rlm").stat().st_mode) == 0o700


@pytest.mark.parametrize("value", [None, "", "relative/dir"])
def test_without_a_usable_xdg_cache_home_it_is_dot_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    if value is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", value)
    assert default_cache_path() == tmp_path / ".cache" / "rlm" / "replies.sqlite3"


# -- rlm cache -------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_stats_and_clear(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    cache = ReplyCache(path)
    cache.put("a", completion(cost=0.5))
    cache.put("b", completion(cost=None))
    cache.close()

    proc = run_rlm("cache", "stats", "--path", str(path))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    assert str(path) in text
    assert "entries        2" in text
    assert "$0.5000 (+ 1 of unknown price)" in text

    proc = run_rlm("cache", "stats", "--path", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["path"] == str(path)
    assert data["entries"] == 2 and data["exists"] is True
    assert data["bytes_on_disk"] > 0
    assert data["original_cost_usd"] == 0.5 and data["unknown_cost_entries"] == 1
    assert data["oldest"].endswith("Z") and data["newest"] >= data["oldest"]

    proc = run_rlm("cache", "clear", "--path", str(path))
    assert proc.returncode == 0, proc.stderr
    assert b"removed 2 cached replies" in proc.stdout
    assert ReplyCache(path).stats().entries == 0


@pytest.mark.slow
def test_cli_uses_the_default_cache(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    proc = run_rlm("cache", "stats", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["path"] == str(tmp_path / "rlm" / "replies.sqlite3")
    assert json.loads(proc.stdout)["exists"] is False
    ReplyCache(tmp_path / "rlm" / "replies.sqlite3").put("k", completion())
    proc = run_rlm("cache", "clear", env=env)
    assert proc.returncode == 0, proc.stderr
    assert b"removed 1 cached reply" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("command", ["stats", "clear"])
def test_cli_bad_paths_are_one_line_and_exit_2(tmp_path: Path, command: str) -> None:
    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"not a database" * 100)
    for path in (corrupt, tmp_path):
        proc = run_rlm("cache", command, "--path", str(path))
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"rlm: error: {path}"), lines
        assert proc.stdout == b""
    assert corrupt.read_bytes() == b"not a database" * 100


OPENER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from rlm_cli.engine.cache import ReplyCache
    from rlm_cli.providers.base import Completion
    root, name, start = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    while time.time() < start:
        time.sleep(0.001)
    misses = 0
    for n in range(200):
        with ReplyCache(root / str(n) / "c.sqlite3") as cache:
            cache.put(name, Completion(name, "m"))
            misses += cache.get(name) is None
    print(misses)
    """
)


@pytest.mark.slow
def test_processes_opening_fresh_caches_together_lose_no_put(tmp_path: Path) -> None:
    # SQLite fails the switch to WAL at once (no busy wait) when two processes set up a fresh
    # file together; before the open retried it, most runs of this test lost a put or two.
    outputs = run_together(OPENER, [[str(tmp_path), f"p{n}"] for n in range(6)])
    assert [out.strip() for out in outputs] == ["0"] * 6
