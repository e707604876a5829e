"""The reply cache: model replies kept on disk in SQLite, so asking the same thing twice is free.

One file, by default `$XDG_CACHE_HOME/rlm/replies.sqlite3` (`~/.cache/rlm/...`), shared by every
rlm process on the machine: WAL journal (readers never wait for the writer), `synchronous=NORMAL`
(a put commits without an fsync; a power cut may lose the last puts, never corrupt the file) and a
short busy timeout.

The key (`ReplyCache.key`) is a sha256 over a canonical JSON of everything that decides the reply:
the provider name, the model, every message (role and full content), `max_output_tokens`, and the
caller's `extra` mapping of provider-level settings (temperature, reasoning effort, base URL, ...).
Left out: `on_retry` (a callback, not a parameter) and `purpose`: the same messages sent to the
same model with the same settings get the same cached reply whether they came as a root call or as
a sub-call. A provider whose replies depend on more (the scripted provider: its script, and the
purpose, since it answers root calls by position) needs that in `extra`, or no cache at all.

A hit returns the stored Completion with `cost_usd` 0.0 (it costs nothing); the original cost is
kept for `stats()`.

The cache must never fail a run: the first error opening, reading or writing the file (corrupt,
not a database, a newer schema, an unwritable directory, a full disk) disables it for the life of
the object, with the reason in `disabled_reason`; `get` then misses and `put` does nothing, and
nothing is logged. A busy database (another process holding the write lock past the timeout) only
makes that one call miss or skip. `stats()` and `clear()` are for `rlm cache` and raise UsageError
instead, so the user hears why.

Threads: the calls are synchronous and fast (one indexed read or one small write), meant to be
made from the event loop's thread; one connection is shared under a lock, so calls from other
threads are safe too. After a fork the child opens its own connection.

Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from rlm_cli.errors import UsageError
from rlm_cli.providers.base import Completion, ModelRequest, Usage

SCHEMA_VERSION = 1
# Bumped when what goes into a key changes, so old entries simply stop matching.
KEY_VERSION = 1
# PRAGMA application_id: marks the file as an rlm reply cache ("RLMC").
APPLICATION_ID = 0x524C4D43
BUSY_TIMEOUT_S = 2.0
FILE_NAME = "replies.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    finish_reason TEXT,
    request_id TEXT,
    cost_usd REAL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS replies_created_at ON replies (created_at);
"""
_COLUMNS = (
    "text, model, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, "
    "finish_reason, request_id, cost_usd, created_at"
)
_NO_EXTRA: Mapping[str, object] = MappingProxyType({})


def default_cache_path() -> Path:
    """`$XDG_CACHE_HOME/rlm/replies.sqlite3`, or `~/.cache/rlm/replies.sqlite3` when the variable
    is unset, empty or relative (the XDG spec says to ignore relative values)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rlm" / FILE_NAME


@dataclass(frozen=True)
class CacheEntry:
    """A stored reply: `completion` as a hit returns it (cost 0.0), and what it first cost."""

    completion: Completion
    original_cost_usd: float | None
    created_at: float


@dataclass(frozen=True)
class CacheStats:
    path: Path
    exists: bool
    entries: int
    # The database file with its -wal and -shm companions.
    bytes_on_disk: int
    # Unix times of the oldest and newest entry; None when the cache is empty.
    oldest: float | None
    newest: float | None
    # What the cached replies cost when they were made (entries of known price), and how many
    # entries had no known price.
    original_cost_usd: float
    unknown_cost_entries: int

    def to_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "exists": self.exists,
            "entries": self.entries,
            "bytes_on_disk": self.bytes_on_disk,
            "oldest": _iso(self.oldest),
            "newest": _iso(self.newest),
            "original_cost_usd": self.original_cost_usd,
            "unknown_cost_entries": self.unknown_cost_entries,
        }


class ReplyCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        # Why the cache is off (None while it works); once set, get misses and put does nothing.
        self.disabled_reason: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()

    # -- keys --------------------------------------------------------------------------------

    @staticmethod
    def key(provider: str, request: ModelRequest, extra: Mapping[str, object] = _NO_EXTRA) -> str:
        """sha256 (hex) of a canonical JSON of everything that decides the reply; see the module
        docstring. In `extra`, None values count as absent and 1.0 equals 1, so an unset setting
        and a default-typed one do not split the cache. Values must be JSON data (str, numbers,
        bools, None, lists, tuples, str-keyed mappings); anything else is a TypeError."""
        document = {
            "v": KEY_VERSION,
            "provider": provider,
            "model": request.model,
            "messages": [[m.role, m.content] for m in request.messages],
            "max_output_tokens": request.max_output_tokens,
            "extra": {k: _canonical(v) for k, v in extra.items() if v is not None},
        }
        text = json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
        return hashlib.sha256(text.encode("ascii")).hexdigest()

    # -- the run's side: never raises --------------------------------------------------------

    def get(self, key: str) -> Completion | None:
        """The cached reply with cost 0.0, or None (a miss, or the cache is off)."""
        entry = self.entry(key)
        return entry.completion if entry is not None else None

    def entry(self, key: str) -> CacheEntry | None:
        """Like `get`, with the original cost and the time the reply was stored."""
        with self._quietly() as conn:
            if conn is None:
                return None
            row = conn.execute(f"SELECT {_COLUMNS} FROM replies WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            (text, model, inp, out, cached, written, finish, request_id, cost, created) = row
            completion = Completion(
                text=text,
                model=model,
                usage=Usage(inp, out, cached, written),
                finish_reason=finish,
                request_id=request_id,
                cost_usd=0.0,
            )
            return CacheEntry(completion, cost, created)
        return None

    def put(self, key: str, completion: Completion) -> None:
        """Store a reply (replacing any under the same key). Never raises."""
        usage = completion.usage
        row = (
            key,
            completion.text,
            completion.model,
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens,
            usage.cache_write_tokens,
            completion.finish_reason,
            completion.request_id,
            completion.cost_usd,
            time.time(),
        )
        with self._quietly() as conn:
            if conn is None:
                return
            # Text SQLite cannot hold (a lone surrogate) leaves this one reply uncached.
            with contextlib.suppress(UnicodeEncodeError):
                conn.execute(
                    f"INSERT OR REPLACE INTO replies (key, {_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None

    def __enter__(self) -> ReplyCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- `rlm cache`: raise UsageError so the user hears why ---------------------------------

    def stats(self) -> CacheStats:
        """Counts and sizes. A missing file is an empty cache, and is not created."""
        if not self._exists():
            return CacheStats(self.path, False, 0, 0, None, None, 0.0, 0)
        with self._loudly() as conn:
            entries, oldest, newest, cost, unknown = conn.execute(
                "SELECT count(*), min(created_at), max(created_at), total(cost_usd), "
                "count(*) - count(cost_usd) FROM replies"
            ).fetchone()
        return CacheStats(
            self.path, True, entries, self._bytes_on_disk(), oldest, newest, cost, unknown
        )

    def clear(self) -> int:
        """Remove every entry and give the space back (VACUUM); returns how many were removed."""
        if not self._exists():
            return 0
        with self._loudly() as conn:
            removed: int = conn.execute("DELETE FROM replies").rowcount
            # Space back to the file system; readers in other processes may delay it, which
            # costs only space, never the entries already removed.
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed

    # -- internals ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _quietly(self) -> Iterator[sqlite3.Connection | None]:
        """The connection, or None when the cache is off; an error turns the cache off, except a
        busy database, which only skips this call."""
        with self._lock:
            if self.disabled_reason is not None:
                yield None
                return
            try:
                conn = self._connection()
            except (sqlite3.Error, OSError, UsageError) as exc:
                if not _is_busy(exc):
                    self._disable(exc)
                yield None
                return
            try:
                yield conn
            except sqlite3.Error as exc:
                if not _is_busy(exc):
                    self._disable(exc)

    @contextlib.contextmanager
    def _loudly(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._connection()
            except (sqlite3.Error, OSError) as exc:
                if _is_busy(exc):
                    raise UsageError(
                        f"{self.path}: the cache is busy (another rlm is writing to it); try again"
                    ) from None
                raise self._usage_error(exc) from None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # Never use a connection inherited through fork; the parent still owns it.
        self._conn = None
        if self.path.is_dir():
            raise UsageError(f"{self.path}: is a directory, not a cache file")
        _make_dirs(self.path.parent)
        # Created private (SQLite gives its -wal and -shm files the same mode); an empty file is
        # an empty database.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            _prepare(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _disable(self, exc: BaseException) -> None:
        self.disabled_reason = _describe(exc)
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _usage_error(self, exc: BaseException) -> UsageError:
        message = _describe(exc)
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            message += "; if this is the rlm cache, delete the file to start afresh"
        return UsageError(f"{self.path}: not a usable rlm cache: {message}")

    def _exists(self) -> bool:
        if self.path.is_dir():
            raise UsageError(f"{self.path}: is a directory, not a cache file")
        return self.path.exists()

    def _bytes_on_disk(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    """Check the file is an rlm cache (or empty) before changing anything in it, then WAL,
    synchronous=NORMAL, and the schema, created on first use."""
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    ready = _check_ours(conn, path)  # reading the header also proves the file is a database
    _use_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    if ready:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Checked again under the write lock: another process may have set it up meanwhile.
        if not _check_ours(conn, path):
            # A fresh file, or an older schema (none exists yet): only a cache, start afresh.
            conn.execute("DROP TABLE IF EXISTS replies")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL. SQLite does not call the busy handler for this switch, so a process
    opening a fresh cache while another one sets it up would fail at once: retry until the busy
    timeout, stopping as soon as the file is in WAL (whoever switched it)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def _check_ours(conn: sqlite3.Connection, path: Path) -> bool:
    """True when the file holds the current schema; False when it is empty or holds an older
    one; UsageError for another program's database or a newer rlm's cache."""
    # One statement, so one consistent snapshot while another process may be creating it.
    app_id, version, tables = conn.execute(
        "SELECT (SELECT application_id FROM pragma_application_id), "
        "(SELECT user_version FROM pragma_user_version), "
        "(SELECT count(*) FROM sqlite_master)"
    ).fetchone()
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables > 0):
        raise UsageError(f"{path}: a SQLite database that is not an rlm reply cache")
    if version > SCHEMA_VERSION:
        raise UsageError(
            f"{path}: written by a newer rlm (cache schema {version}; this rlm knows "
            f"{SCHEMA_VERSION})"
        )
    return bool(app_id == APPLICATION_ID and version == SCHEMA_VERSION)


def _is_busy(exc: BaseException) -> bool:
    """Another process held the lock past the busy timeout: worth trying again later."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _make_dirs(directory: Path) -> None:
    """Create the missing directories, each with mode 0700 (the cache holds prompts and replies)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            path.mkdir(mode=0o700)


def _canonical(value: object) -> object:
    """JSON data in one spelling: tuples as lists, integral floats as ints, keys sorted later."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"cache key: {value!r} is not a finite number")
        return int(value) if value.is_integer() else value
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"cache key: mapping keys must be str, not {k!r}")
            out[k] = _canonical(v)
        return out
    raise TypeError(f"cache key: {type(value).__name__} is not JSON data: {value!r}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return str(exc) or type(exc).__name__


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
