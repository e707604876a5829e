"""The REPL sandbox, driven through the real `Sandbox` class with real worker processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import processes_with, wait_until

from rlm_cli import inputs as rlm_inputs
from rlm_cli.inputs import Inputs
from rlm_cli.inputs.resolve import resolve
from rlm_cli.sandbox.host import CellResult, QueryRequest, Sandbox
from rlm_cli.sandbox.policy import PROCESSES, make_policy
from rlm_cli.sandbox.process import PACKAGE_ROOT
from rlm_cli.sandbox.worker.protocol import SCAFFOLD

T = TypeVar("T")


class EchoUpper:
    """A sub-call handler answering each prompt upper-cased; it records the requests."""

    def __init__(self) -> None:
        self.requests: list[QueryRequest] = []

    async def __call__(self, request: QueryRequest) -> list[str]:
        self.requests.append(request)
        return [prompt.upper() for prompt in request.prompts]


def with_sandbox(
    inputs: Inputs,
    body: Callable[[Sandbox], Awaitable[T]],
    *,
    output_limit: int = 20_000,
    on_query: Callable[[QueryRequest], Awaitable[list[str]]] | None = None,
) -> T:
    """Start a sandbox on `inputs`, run `body` with it, then close it and clean the inputs up."""

    async def main() -> T:
        sandbox = Sandbox(inputs, output_limit=output_limit, on_query=on_query or EchoUpper())
        await sandbox.start()
        try:
            return await body(sandbox)
        finally:
            await sandbox.close()

    try:
        return asyncio.run(main())
    finally:
        inputs.cleanup()


def run_cells(
    cells: list[str],
    context: Any = "hello world",
    *,
    timeout: float = 10.0,
    output_limit: int = 20_000,
    on_query: Callable[[QueryRequest], Awaitable[list[str]]] | None = None,
) -> list[CellResult]:
    """Run `cells` one after another in one sandbox holding `context`."""

    async def body(sandbox: Sandbox) -> list[CellResult]:
        return [await sandbox.execute(code, timeout) for code in cells]

    return with_sandbox(
        rlm_inputs.from_value(context), body, output_limit=output_limit, on_query=on_query
    )


# ----- cells like a notebook -----


def test_namespace_persists_across_cells() -> None:
    first, second = run_cells(["x = 41", "x += 1\nprint(x)"])
    assert not first.error and first.output == ""
    assert not second.error
    assert second.output == "42\n"


def test_bare_last_expression_is_echoed_and_none_is_not() -> None:
    echoed, none, assigned, printed = run_cells(
        ["a = [1, 2]\na + [3]", "None", "b = 'quiet'", "print('once')\nb"]
    )
    assert echoed.output == "[1, 2, 3]\n"
    assert none.output == ""
    assert assigned.output == ""
    assert printed.output == "once\n'quiet'\n"


def test_stdout_and_stderr_are_captured() -> None:
    (result,) = run_cells(["import sys\nprint('to out')\nprint('to err', file=sys.stderr)"])
    assert not result.error
    assert "to out\n" in result.output
    assert "to err\n" in result.output


def test_traceback_starts_in_the_cell() -> None:
    (result,) = run_cells(["print('before')\ndef f():\n    return 1 / 0\nf()"])
    assert result.error
    assert result.output.startswith("before\n")
    assert "Traceback (most recent call last)" in result.output
    assert "ZeroDivisionError: division by zero" in result.output
    assert '"<cell 1>", line 4' in result.output
    assert "return 1 / 0" in result.output  # the cell's source line is shown
    assert "run_cell" not in result.output
    assert "worker.py" not in result.output


def test_tracebacks_leave_out_the_worker_s_own_frames() -> None:
    """An error raised inside a REPL helper shows the cell's line and the error, not the
    sandbox's files (they say nothing about the model's code); chained errors alike."""
    direct, chained = run_cells(
        [
            "llm_query_batched('one prompt')",
            "try:\n    llm_query_batched('x')\nexcept TypeError as e:\n"
            "    raise ValueError('wrapped') from e",
        ]
    )
    assert direct.error and chained.error
    assert '"<cell 1>", line 1' in direct.output
    assert "TypeError: llm_query_batched takes a list of prompts" in direct.output
    assert "ValueError: wrapped" in chained.output and "direct cause" in chained.output
    for output in (direct.output, chained.output):
        assert "rlm_cli" not in output and "sandbox" not in output


def test_syntax_error_is_reported() -> None:
    bad, good = run_cells(["print('not run')\nx = (1,\n", "print('still fine')"])
    assert bad.error
    assert "SyntaxError" in bad.output
    assert "not run" not in bad.output  # nothing of the cell ran
    assert "was never closed" in bad.output
    assert "run_cell" not in bad.output
    assert not good.error and good.output == "still fine\n"


def test_output_is_capped_keeping_head_and_tail() -> None:
    (result,) = run_cells(["print('HEAD' + 'x' * 100_000 + 'TAIL', end='')"], output_limit=1000)
    total = 100_008
    assert result.output_chars == total
    assert result.output.startswith("HEAD")
    assert result.output.endswith("TAIL")
    cut = total - 1000
    assert f"{cut:,}" in result.output
    assert f"{cut:,} of {total:,} characters cut" in result.output
    assert len(result.output) < 1300


def test_output_below_the_cap_is_kept_whole() -> None:
    (result,) = run_cells(["print('y' * 999, end='')"], output_limit=1000)
    assert result.output == "y" * 999
    assert result.output_chars == 999


def test_output_capping_with_many_small_writes() -> None:
    (result,) = run_cells(["for i in range(20_000):\n    print(i)"], output_limit=1000)
    total = sum(len(f"{i}\n") for i in range(20_000))
    assert result.output_chars == total
    assert result.output.startswith("0\n1\n2\n")
    assert result.output.endswith("\n19998\n19999\n")
    assert f"{total - 1000:,} of {total:,} characters cut" in result.output


def test_stdout_write_returns_the_characters_written() -> None:
    (result,) = run_cells(
        ["import sys\nn = sys.stdout.write('y' * 700)\nm = sys.stdout.write('z' * 10)\n(n, m)"],
        output_limit=1000,
    )
    assert result.output.endswith("(700, 10)\n")


# ----- answers -----


def test_final_gives_the_answer() -> None:
    none, final, after = run_cells(["x = 1", "FINAL(6 * 7)", "y = 2"])
    assert none.final is None and none.final_source is None
    assert final.final == "42"
    assert final.final_source == "FINAL"
    assert after.final is None


def test_final_var_gives_the_variable() -> None:
    (result,) = run_cells(["result = 'the answer'\nFINAL_VAR('result')"])
    assert not result.error
    assert result.final == "the answer"
    assert result.final_source == "FINAL_VAR"


def test_final_var_with_a_missing_name_lists_the_variables() -> None:
    (result,) = run_cells(["alpha = 1\nbeta = 'b'\nFINAL_VAR('resutl')"])
    assert result.error
    assert result.final is None
    assert result.final_source is None
    assert "NameError" in result.output
    assert "resutl" in result.output
    assert "alpha" in result.output and "beta" in result.output


def test_answer_dict_form() -> None:
    not_ready, ready = run_cells(
        [
            "answer = {'content': 'draft', 'ready': False}",
            "answer['content'] = 'done'\nanswer['ready'] = True",
        ]
    )
    assert not_ready.final is None
    assert ready.final == "done"
    assert ready.final_source == "answer"


def test_a_cell_sees_exactly_the_scaffold_names() -> None:
    """SCAFFOLD is the one list of the REPL's helper names (the prompts and the HTML export's
    highlighter read it): a fresh cell's namespace binds those names and no others."""
    (names,) = run_cells(["print(sorted(name for name in globals() if not name.startswith('__')))"])
    assert names.output == f"{sorted(SCAFFOLD)}\n"
    assert len(set(SCAFFOLD)) == len(SCAFFOLD)


def test_rebinding_scaffold_names_is_undone_for_the_next_cell() -> None:
    results = run_cells(
        [
            "llm_query = None\nFINAL = 'oops'\ncontext = 'clobbered'",
            "print(context)\nprint(llm_query('hi'))",
            "FINAL('ok')",
        ],
        context="the original",
    )
    assert not results[0].error
    assert not results[1].error, results[1].output
    assert results[1].output == "the original\nHI\n"
    assert results[2].final == "ok"


# ----- sub-calls -----


def test_llm_query_goes_to_the_handler() -> None:
    handler = EchoUpper()
    (result,) = run_cells(["r = llm_query('abc', model='small')\nr"], on_query=handler)
    assert result.output == "'ABC'\n"
    (request,) = handler.requests
    assert request.prompts == ["abc"]
    assert request.model == "small"
    assert not request.batched


def test_llm_query_batched_of_a_thousand_prompts_keeps_order() -> None:
    handler = EchoUpper()
    (result,) = run_cells(
        [
            "prompts = [f'p{i}' for i in range(1000)]\n"
            "replies = llm_query_batched(prompts)\n"
            "print(len(replies), replies == [p.upper() for p in prompts], replies[:3], replies[-1])"
        ],
        on_query=handler,
    )
    assert not result.error, result.output
    assert result.output == "1000 True ['P0', 'P1', 'P2'] P999\n"
    assert sum(len(request.prompts) for request in handler.requests) == 1000
    assert all(request.batched for request in handler.requests)


def test_llm_query_from_many_user_threads() -> None:
    async def slow_echo(request: QueryRequest) -> list[str]:
        await asyncio.sleep(0.05)
        return [prompt.upper() for prompt in request.prompts]

    (result,) = run_cells(
        [
            "from concurrent.futures import ThreadPoolExecutor\n"
            "with ThreadPoolExecutor(8) as pool:\n"
            "    replies = list(pool.map(llm_query, [f'q{i}' for i in range(40)]))\n"
            "print(replies == [f'Q{i}' for i in range(40)])"
        ],
        on_query=slow_echo,
    )
    assert not result.error, result.output
    assert result.output == "True\n"
    # 40 calls of 50 ms each ran concurrently, not one after another.
    assert result.elapsed_s < 1.5


@pytest.mark.slow
def test_timeout_while_waiting_for_a_sub_call() -> None:
    async def never(request: QueryRequest) -> list[str]:
        await asyncio.sleep(60)
        return ["late"]

    async def body(sandbox: Sandbox) -> tuple[CellResult, float, CellResult]:
        await sandbox.execute("keep = 'kept'", 10)
        started = time.monotonic()
        waiting = await sandbox.execute("llm_query('slow')", 10, deadline=1)
        elapsed = time.monotonic() - started
        return waiting, elapsed, await sandbox.execute("keep", 10)

    waiting, elapsed, after = with_sandbox(rlm_inputs.from_value("c"), body, on_query=never)
    assert elapsed < 2
    assert waiting.timed_out and not waiting.restarted
    assert after.output == "'kept'\n"


def test_failing_query_handler_fails_the_call_not_the_cell_timeout() -> None:
    async def broken(request: QueryRequest) -> list[str]:
        raise ValueError("handler failed")

    async def body(sandbox: Sandbox) -> tuple[CellResult, float]:
        started = time.monotonic()
        result = await sandbox.execute(
            "try:\n    reply = llm_query('x')\nexcept Exception as exc:\n    reply = f'raised {exc}'\n"
            "print(reply)",
            3,
        )
        return result, time.monotonic() - started

    result, elapsed = with_sandbox(rlm_inputs.from_value("c"), body, on_query=broken)
    # Either llm_query raises or it returns an error text; the cell must not hang till its limit.
    assert not result.timed_out
    assert elapsed < 2
    assert result.output.strip()


# ----- timeouts, crashes, restarts -----


@pytest.mark.slow
def test_infinite_loop_times_out_and_the_namespace_survives() -> None:
    async def body(sandbox: Sandbox) -> tuple[CellResult, float, CellResult]:
        await sandbox.execute("keep = 'still here'", 10)
        started = time.monotonic()
        looped = await sandbox.execute("while True: pass", 2)
        elapsed = time.monotonic() - started
        after = await sandbox.execute("print(keep, context)", 10)
        return looped, elapsed, after

    looped, elapsed, after = with_sandbox(rlm_inputs.from_value("ctx"), body)
    assert elapsed < 3
    assert looped.timed_out
    assert not looped.restarted
    assert looped.error
    assert "limit on a cell's own time" in looped.output
    assert not after.error, after.output
    assert after.output == "still here ctx\n"


@pytest.mark.slow
def test_cell_ignoring_keyboard_interrupt_is_killed_and_the_worker_restarted() -> None:
    async def body(sandbox: Sandbox) -> tuple[int | None, CellResult, int | None, CellResult]:
        await sandbox.execute("keep = 1", 10)
        old_pid = sandbox.pid
        stubborn = await sandbox.execute(
            "import time\n"
            "while True:\n"
            "    try:\n"
            "        time.sleep(10)\n"
            "    except KeyboardInterrupt:\n"
            "        pass",
            1,
        )
        new_pid = sandbox.pid
        after = await sandbox.execute("print(context)\nprint('keep' in globals())", 10)
        return old_pid, stubborn, new_pid, after

    old_pid, stubborn, new_pid, after = with_sandbox(rlm_inputs.from_value("ctx again"), body)
    assert stubborn.restarted
    assert stubborn.timed_out
    assert stubborn.error
    assert "restarted" in stubborn.output
    assert old_pid is not None and new_pid is not None and new_pid != old_pid
    assert not pid_alive(old_pid)
    assert not after.error, after.output
    assert after.output == "ctx again\nFalse\n"


def test_os_exit_restarts_the_worker() -> None:
    crashed, after = run_cells(
        ["lost = 1\nimport os\nos._exit(1)", "print(context)\nprint('lost' in globals())"],
        context="reloaded",
    )
    assert crashed.restarted
    assert crashed.error
    assert not crashed.timed_out
    assert "exit code 1" in crashed.output
    assert not after.error, after.output
    assert after.output == "reloaded\nFalse\n"


def test_writes_to_fd_1_do_not_corrupt_the_protocol() -> None:
    junk, after = run_cells(
        [
            "import os\nos.write(1, b'junk' * 1000)\nos.write(1, b'\\x00\\x00\\x00\\x05{}')\n"
            "print('fine')",
            "print(context)",
        ],
        context="intact",
    )
    assert not junk.error and not junk.restarted, junk.output
    assert junk.output == "fine\n"
    assert not after.restarted
    assert after.output == "intact\n"


def test_worker_environment_has_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("RLM_SOMETHING", "x")
    (result,) = run_cells(["import os\nprint(sorted(os.environ))\nprint(os.environ)"])
    assert not result.error, result.output
    assert "OPENAI_API_KEY" not in result.output
    assert "ANTHROPIC_API_KEY" not in result.output
    assert "RLM_SOMETHING" not in result.output
    assert "secret" not in result.output


def test_sys_exit_does_not_kill_the_worker() -> None:
    async def body(sandbox: Sandbox) -> tuple[int | None, CellResult, int | None, CellResult]:
        await sandbox.execute("keep = 5", 10)
        pid = sandbox.pid
        exited = await sandbox.execute("import sys\nsys.exit(3)", 10)
        return pid, exited, sandbox.pid, await sandbox.execute("keep", 10)

    pid, exited, pid_after, after = with_sandbox(rlm_inputs.from_value("c"), body)
    assert exited.error
    assert not exited.restarted
    assert "SystemExit" in exited.output
    assert pid_after == pid
    assert after.output == "5\n"


def test_show_vars_lists_variables() -> None:
    empty, listed = run_cells(
        [
            "SHOW_VARS()",
            "import json\nnums = [1, 2, 3]\nname = 'abc'\ndef helper(): pass\nSHOW_VARS()",
        ]
    )
    assert "No variables yet." in empty.output
    assert "nums: list, len 3" in listed.output
    assert "name: str, len 3" in listed.output
    assert "helper" not in listed.output
    assert "json" not in listed.output
    assert "context" not in listed.output


# ----- context -----


def test_string_context_and_metadata() -> None:
    async def body(sandbox: Sandbox) -> tuple[dict[str, Any], CellResult]:
        return sandbox.meta, await sandbox.execute(
            "print(type(context).__name__, len(context))", 10
        )

    meta, result = with_sandbox(rlm_inputs.from_value("line one\nline two\n"), body)
    assert meta["type"] == "str"
    assert meta["chars"] == 18
    assert meta["lines"] == 2
    assert result.output == "str 18\n"


def test_dict_context_from_values() -> None:
    (result,) = run_cells(["print(context['b'], sorted(context))"], context={"b": [1, 2], "a": "x"})
    assert result.output == "[1, 2] ['a', 'b']\n"


def test_dict_context_from_several_files_keeps_order(tmp_path: Path) -> None:
    (tmp_path / "zeta.txt").write_text("Z text")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "b.md").write_text("B text")
    (docs / "a.md").write_text("A text")
    (tmp_path / "alpha.txt").write_text("alpha text")
    zeta, alpha = str(tmp_path / "zeta.txt"), str(tmp_path / "alpha.txt")
    inputs = resolve([zeta, str(docs), alpha], None)

    async def body(sandbox: Sandbox) -> tuple[dict[str, Any], CellResult]:
        return sandbox.meta, await sandbox.execute("print(list(context.items()))", 10)

    meta, result = with_sandbox(inputs, body)
    expected = [(zeta, "Z text"), ("a.md", "A text"), ("b.md", "B text"), (alpha, "alpha text")]
    assert result.output == f"{expected!r}\n"
    assert meta["type"] == "dict"
    assert meta["entries"] == 4
    assert [name for name, _size in meta["files"]] == [zeta, "a.md", "b.md", alpha]


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"), ("utf-8", b"\xef\xbb\xbf")],
)
def test_context_from_a_file_with_a_bom_decodes(tmp_path: Path, encoding: str, bom: bytes) -> None:
    text = "héllo wörld ✓\nsecond line\n"
    path = tmp_path / "bom.txt"
    path.write_bytes(bom + text.encode(encoding))
    inputs = resolve([str(path)], None)
    assert inputs.shape == "single"

    async def body(sandbox: Sandbox) -> CellResult:
        return await sandbox.execute("print(repr(context))", 10)

    result = with_sandbox(inputs, body)
    assert result.output == f"{text!r}\n"


def test_close_leaves_no_process() -> None:
    async def body(sandbox: Sandbox) -> int | None:
        await sandbox.execute("x = 1", 10)
        return sandbox.pid

    async def main() -> tuple[int | None, int | None]:
        inputs = rlm_inputs.from_value("c")
        sandbox = Sandbox(inputs, output_limit=1000, on_query=EchoUpper())
        try:
            await sandbox.start()
            pid = await body(sandbox)
            assert pid is not None and pid_alive(pid)
            await sandbox.close()
            return pid, sandbox.pid
        finally:
            inputs.cleanup()

    pid, pid_after = asyncio.run(main())
    assert pid is not None
    assert pid_after is None
    assert not pid_alive(pid)


def test_close_kills_children_of_cells() -> None:
    marker = "60.4242"  # sleep's argument: how the host finds the cell's child in its own /proc

    async def body(sandbox: Sandbox) -> list[int]:
        await sandbox.execute(f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'])", 10)
        wait_until(lambda: bool(processes_with(marker)), timeout=5)  # until it has exec'd
        return processes_with(marker)

    children = with_sandbox(rlm_inputs.from_value("c"), body)
    assert children, "the cell's child should have been running"
    assert wait_until(lambda: not processes_with(marker), timeout=5)


def pid_alive(pid: int) -> bool:
    """True if `pid` is a live process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_lone_surrogates_in_output_become_valid_text() -> None:
    (result,) = run_cells(["print(b'ok\\xff'.decode('utf-8', 'surrogateescape'))"])
    assert result.output == "ok?\n"
    result.output.encode("utf-8")  # strict: safe for stdout, traces and HTTP bodies


NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"


def test_an_unprivileged_user_gets_every_layer(tmp_path: Path) -> None:
    """The host here runs as root; run the worker as `nobody` (with a Python that user can read)
    to check the layers hold for an ordinary user too."""
    if os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("needs root, setpriv and a system Python to switch to an unprivileged user")
    probe = subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            SYSTEM_PYTHON,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {PACKAGE_ROOT!r}); import rlm_cli",
        ],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"{NOBODY} cannot import rlm_cli from {PACKAGE_ROOT}")
    own = tmp_path / "nobody-owns-this"  # a file the user may write, outside the sandbox
    own.write_text("untouched")
    os.chown(own, NOBODY, NOBODY)
    os.chmod(tmp_path, 0o755)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    port = listener.getsockname()[1]

    async def main() -> tuple[dict[str, Any], list[CellResult]]:
        inputs = rlm_inputs.from_value("the context")
        os.chmod(inputs.sources[0].path, 0o644)
        python = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        sandbox = Sandbox(
            inputs, output_limit=1000, on_query=EchoUpper(), python=[*python, SYSTEM_PYTHON]
        )
        os.chown(sandbox.tmp_dir, NOBODY, NOBODY)  # as the user's own temporary directory is
        try:
            await sandbox.start()
            cells = [
                "import os; print(os.getuid(), context)",
                f"open({str(own)!r}, 'w').write('changed')",
                f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1)",
                "open('/etc/passwd').read()",
            ]
            results = [await sandbox.execute(code, 10) for code in cells]
            return dict(sandbox.layers), results
        finally:
            await sandbox.close()
            inputs.cleanup()

    try:
        layers, (who, write, connect, read) = asyncio.run(main())
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
    assert all(layer["active"] for layer in layers.values()), layers
    assert who.output == "0 the context\n"  # root of its own user namespace, nobody outside
    assert write.error and "PermissionError" in write.output
    assert own.read_text() == "untouched"
    assert connect.error and read.error


def test_processes_of_a_cell_are_held_to_the_memory_limit_together() -> None:
    """RLIMIT_AS binds each process; the host's watch binds their sum, so forks cannot add up."""
    hog = (
        "import os, time\n"
        "for _ in range(4):\n"
        "    if os.fork() == 0:\n"
        "        b = bytearray(200 * 1024 * 1024)\n"
        "        b[::4096] = b'x' * len(b[::4096])\n"
        "        time.sleep(60)\n"
        "time.sleep(60)"
    )
    policy = make_policy(
        "process", input_bytes=1, cell_timeout=30, max_iterations=3, memory_mib=512
    )

    async def main() -> tuple[CellResult, CellResult]:
        inputs = rlm_inputs.from_value("c")
        sandbox = Sandbox(inputs, output_limit=2000, on_query=EchoUpper(), policy=policy)
        try:
            await sandbox.start()
            return await sandbox.execute(hog, 30), await sandbox.execute("print(context)", 10)
        finally:
            await sandbox.close()
            inputs.cleanup()

    hogged, after = asyncio.run(main())
    assert hogged.restarted and "MiB of memory" in hogged.output
    assert after.output == "c\n"


def test_files_outside_keep_their_content_and_their_metadata(tmp_path: Path) -> None:
    """Landlock stops reads and writes; the read-only mounts also stop chmod, utime and xattrs
    (which Landlock does not cover), on files the worker's user owns."""
    outside = tmp_path / "outside.txt"
    outside.write_text("mine")
    os.chmod(outside, 0o600)
    before = os.stat(outside)
    cells = [
        f"open({str(outside)!r}).read()",
        f"open({str(outside)!r}, 'a').write('x')",
        f"import os; os.chmod({str(outside)!r}, 0o777)",
        f"import os; os.utime({str(outside)!r}, (0, 0))",
        f"import os; os.setxattr({str(outside)!r}, 'user.rlm', b'1')",
        f"import os; os.unlink({str(outside)!r})",
        "open('scratch.txt', 'w').write('ok'); print(open('scratch.txt').read())",
    ]
    *attacks, scratch = run_cells(cells)
    assert all(result.error for result in attacks), [r.output for r in attacks]
    after = os.stat(outside)
    assert outside.read_text() == "mine"
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)
    assert scratch.output == "ok\n"  # its own temporary directory is writable


@pytest.mark.slow
def test_multiprocessing_works_inside_and_shared_pages_count_once() -> None:
    """A pool of forks over a large context is legitimate: its locks need the private /dev/shm,
    and the pages the forks share must not count once per fork against the memory limit."""
    cell = (
        "import multiprocessing as mp\n"
        "with mp.get_context('fork').Pool(4) as pool:\n"
        "    print(sum(pool.map(len, [context[i::4] for i in range(4)])))"
    )
    size = 400_000_000  # 4 forks x 400 MB of RSS each would be over the 2 GiB limit
    (result,) = run_cells([cell], "x" * size, timeout=60)
    assert result.output == f"{size}\n" and not result.restarted


@pytest.mark.slow
def test_a_fork_bomb_is_stopped_at_the_process_limit() -> None:
    """The kernel refuses forks past RLIMIT_NPROC (as root too: the worker's real uid is
    `nobody` on the host); where it could not, the host's watch replaces the worker."""
    bomb = (
        "import os, time\n"
        "started = 0\n"
        "for _ in range(2000):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    started += 1\n"
        "print(started)"
    )
    bombed, after = run_cells([bomb, "print(context)"], "c", timeout=30)
    if bombed.restarted:
        assert "processes" in bombed.output or "MiB of memory" in bombed.output
    else:
        assert int(bombed.output) < PROCESSES
    assert after.output == "c\n"


def test_memory_no_process_shows_cannot_be_taken() -> None:
    """memfd and SysV shared memory count in no process's RSS, so neither the address-space
    limit nor the host's watch would see them: the calls are refused."""
    shm = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.shmget(0, 1 << 30, 0o1600), ctypes.get_errno())"
    )
    memfd, sysv = run_cells(["import os; os.memfd_create('x')", shm])
    assert memfd.error and "PermissionError" in memfd.output
    assert sysv.output == "-1 1\n"  # EPERM


def test_threads_count_against_the_process_limit() -> None:
    cell = (
        "import threading\n"
        "threading.stack_size(65536)\n"
        "stop, started = threading.Event(), 0\n"
        "try:\n"
        "    for _ in range(5000):\n"
        "        threading.Thread(target=stop.wait).start()\n"
        "        started += 1\n"
        "except RuntimeError:\n"
        "    pass\n"
        "stop.set()\n"
        "print(started)"
    )
    (result,) = run_cells([cell], timeout=30)
    assert result.restarted or int(result.output) < PROCESSES


def test_a_child_context_that_cannot_be_written_leaves_no_file(tmp_path: Path) -> None:
    import tempfile

    from rlm_cli.errors import UsageError

    before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(UsageError):
        rlm_inputs.from_value(["fine", "\udc80"])  # a lone surrogate, as a forged frame may hold
    assert {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("rlm-context-")} <= before


def test_the_worker_cannot_change_its_ids() -> None:
    """As root the worker's real uid is `nobody` so that the process limit holds; setting it back
    (any set*id call) is refused."""
    (result,) = run_cells(["import os; os.setresuid(0, 0, 0)"])
    assert result.error and "PermissionError" in result.output


def test_a_cell_can_start_the_python_it_runs_in() -> None:
    """In a virtual environment too (CI's): that Python reads its pyvenv.cfg as it starts."""
    cell = (
        "import subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True)\n"
        "print(done.stdout.decode().strip(), done.returncode)"
    )
    (result,) = run_cells([cell], timeout=30)
    assert result.output == "42 0\n"
