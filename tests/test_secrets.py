"""What leaves the machine: secret files skipped by walks, and --redact-secrets in sub-calls.

Every secret here is fake (AWS's documentation example, `FAKE`/`EXAMPLE` bodies) but has the
shape of the real thing, so the patterns see it as one.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke_rlm, invoke_scripted, read_trace, repl

from rlm_cli.engine.budget import Budget, Limits
from rlm_cli.engine.caching import CachingProvider
from rlm_cli.engine.redact import RULES, redact
from rlm_cli.engine.router import Caller, SubcallRouter
from rlm_cli.engine.usage import UsageLedger
from rlm_cli.events import EventBus, RunFinished
from rlm_cli.inputs import InputOptions, Inputs
from rlm_cli.inputs.model import REASONS
from rlm_cli.inputs.resolve import resolve
from rlm_cli.inputs.secret_files import secret_kind
from rlm_cli.providers.base import Completion, ModelRequest
from rlm_cli.providers.catalog import Catalog
from rlm_cli.sandbox.host import QueryRequest

# One file of each kind a walk must skip, by path inside the walked folder.
SECRET_FILES = [
    ".env",
    ".env.local",
    "config/.env.production",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "keys/server.pem",
    "keys/tls.key",
    "keys/client.p12",
    "keys/client.pfx",
    "android/release.keystore",
    "java/trust.jks",
    "putty.ppk",
    ".npmrc",
    ".pypirc",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".htpasswd",
    ".pgpass",
    "home/.aws/credentials",
    "home/.azure/msal_token_cache.json",
    "home/.config/gcloud/application_default_credentials.json",
    "credentials.json",
    "client_secret_1234.apps.googleusercontent.com.json",
    "home/.docker/config.json",
    "home/.kube/config",
    "secrets.yaml",
    "secrets.yml",
    "secrets.json",
    ".streamlit/secrets.toml",
    "backup/.env.gz",
]
# Close to a secret file's name, and not one.
ORDINARY_FILES = [
    "README.md",
    "src/app.py",
    "id_rsa.pub",
    "id_ed25519.pub",
    ".env.example",
    ".env.sample",
    ".env.template",
    ".envrc",
    "home/.aws/config",
    "home/.azure/cliextensions/ext/readme.txt",
    "config.json",
    "kube/config",
    "keys.md",
    "environment.py",
]

FAKE = {
    "openai-key": "sk-proj-FAKEfakeFAKEfakeFAKEfake0000",
    "anthropic-key": "sk-ant-api03-FAKEfakeFAKEfake-EXAMPLE0000",
    "aws-access-key": "AKIAIOSFODNN7EXAMPLE",
    "aws-secret-key": "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "github-token": "ghp_FAKEexampleFAKEexampleFAKEexample000",
    "slack-token": "xoxb-000000000000-FAKEexample",
    "google-api-key": "AIzaFAKE_example-FAKE_example-FAKE_exam",
    "bearer-token": "Authorization: Bearer FAKE.bearer-token",
    "jwt": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJmYWtlIn0.ZmFrZXNpZ25hdHVyZQ",
    "private-key": (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "FAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKE\n"
        "EXAMPLEEXAMPLEEXAMPLE==\n"
        "-----END RSA PRIVATE KEY-----"
    ),
}
# The secret part of each fake: what must not survive redaction.
SECRET_PART = {
    **FAKE,
    "aws-secret-key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "bearer-token": "FAKE.bearer-token",
    "private-key": "FAKEFAKEFAKE",
}


def make_tree(root: Path, names: list[str]) -> Path:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("value=1\n")
    return root


def walk(*args: str, **options: Any) -> Inputs:
    return resolve(list(args), None, InputOptions(count_tokens=False, **options))


# ----- secret files in walks -----


def test_secret_is_a_reason() -> None:
    assert "secret" in REASONS


def test_a_walk_skips_every_kind_of_secret_file_and_keeps_the_rest(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project", SECRET_FILES + ORDINARY_FILES)
    inputs = walk(str(root))
    loaded = sorted(source.name for source in inputs.sources)
    assert loaded == sorted(ORDINARY_FILES)
    skipped = {os.path.relpath(skip.path, root): skip for skip in inputs.skipped}
    assert sorted(skipped) == sorted(SECRET_FILES)
    assert {skip.reason for skip in skipped.values()} == {"secret"}
    assert skipped[".env"].detail == "a dotenv file; name it, or --include it by name, to load it"
    assert skipped["id_rsa"].detail.startswith("an SSH private key;")
    assert inputs.skip_counts() == {"secret": len(SECRET_FILES)}


def test_walking_a_credentials_folder_itself_still_finds_its_files(tmp_path: Path) -> None:
    """`.aws/credentials` is matched by its path on disk, not only inside the walked folder."""
    aws = make_tree(tmp_path / ".aws", ["credentials", "config"])
    inputs = walk(str(aws))
    assert [source.name for source in inputs.sources] == ["config"]
    assert [(skip.path, skip.reason) for skip in inputs.skipped] == [
        (f"{aws}/credentials", "secret")
    ]


def test_archive_members_are_skipped_as_secrets(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for name in ("proj/.env", "proj/.ssh/id_ed25519", "proj/.ssh/id_ed25519.pub", "proj/a.py"):
            archive.writestr(name, "value=1\n")
    inputs = walk(str(bundle))
    assert sorted(source.display for source in inputs.sources) == [
        f"{bundle}/proj/.ssh/id_ed25519.pub",
        f"{bundle}/proj/a.py",
    ]
    assert [(skip.path, skip.reason) for skip in inputs.skipped] == [
        (f"{bundle}/proj/.env", "secret"),
        (f"{bundle}/proj/.ssh/id_ed25519", "secret"),
    ]
    # A member cannot be named on the command line: the detail says so by not offering it.
    assert inputs.skipped[0].detail == "a dotenv file; --include it by name to load it"


def test_an_include_glob_that_names_secret_files_loads_them(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project", [".env", "keys/server.pem", "src/app.py"])
    inputs = walk(str(root), include=("*.pem", "src/**"))
    assert sorted(source.name for source in inputs.sources) == ["keys/server.pem", "src/app.py"]
    assert not any(source.warning for source in inputs.sources)
    inputs = walk(str(root), include=(".env",))
    assert [source.name for source in inputs.sources] == [".env"]


@pytest.mark.parametrize("glob", ["*", "**", "**/*", "*.*", ".*", "keys/", "!.env"])
def test_a_broad_include_glob_does_not_load_secret_files(tmp_path: Path, glob: str) -> None:
    root = make_tree(tmp_path / "project", [".env", "keys/server.pem", "app.py"])
    inputs = walk(str(root), include=("app.py", glob))
    names = {source.name for source in inputs.sources}
    assert "app.py" in names
    assert not names & {".env", "keys/server.pem"}
    assert {skip.reason for skip in inputs.skipped} <= {"secret", "not included"}


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/home/u/.env", "a dotenv file"),
        ("SERVER.KEY", "a key file"),
        ("/home/u/.aws/credentials", "a cloud credentials file"),
        ("/home/u/.aws/config", None),
        ("/home/u/.ssh/id_rsa.pub", None),
        ("/home/u/.envrc", None),
        ("/home/u/.env.example", None),
        ("notes/credentials.md", None),
    ],
)
def test_secret_kind(path: str, kind: str | None) -> None:
    assert secret_kind(path) == kind


# ----- named secret files, and what people see -----


def no_keys() -> dict[str, str]:
    return {"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "", "RLM_CONFIG": os.devnull}


def test_a_named_secret_file_loads_with_a_warning(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("TOKEN=fake\n")
    warnings: list[str] = []
    inputs = resolve([str(env)], None, InputOptions(count_tokens=False, warn=warnings.append))
    assert [source.path for source in inputs.sources] == [str(env)]
    expected = f"{env}: looks like a secret file (a dotenv file); loaded because it was named"
    assert warnings == [expected]
    assert inputs.warnings == [expected]
    assert inputs.summary()["warnings"] == [expected]


def test_ask_warns_on_stderr_about_a_named_env_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("TOKEN=fake\n")
    proc = invoke_rlm("ask", "--dry-run", str(env), "what is set?", env=no_keys())
    assert proc.exit_code == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == (
        f"rlm: warning: {env}: looks like a secret file (a dotenv file); loaded because it was "
        "named"
    )
    assert f"1 named file(s) look like secrets ({env})" in lines[1]


def test_the_run_summary_counts_secret_skips(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project", [".env", "app.py"])
    proc = invoke_rlm("ask", "--dry-run", str(root), "what is set?", env=no_keys())
    assert proc.exit_code == 0, proc.stderr
    assert "skipped 1 (1 secret)" in proc.stderr
    assert "warning" not in proc.stderr


def test_inspect_shows_the_secret_reason_and_the_warning(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project", [".env", "id_rsa", "id_rsa.pub", "app.py"])
    named_key = make_tree(tmp_path / "elsewhere", ["id_rsa"]) / "id_rsa"
    proc = invoke_rlm("inspect", str(root), str(named_key), "--json", env=no_keys())
    assert proc.exit_code == 0, proc.stderr
    data = json.loads(proc.stdout)
    rows = {row["path"]: row for row in data["files"]}
    assert rows[f"{root}/.env"]["status"] == (
        "skipped: secret: a dotenv file; name it, or --include it by name, to load it"
    )
    assert rows[f"{root}/id_rsa"]["status"].startswith("skipped: secret: an SSH private key")
    assert rows[f"{root}/id_rsa.pub"]["status"] == "loaded"
    named = rows[str(named_key)]
    assert named["status"] == "loaded"
    assert (
        named["warning"]
        == "looks like a secret file (an SSH private key); loaded because it was named"
    )
    assert data["totals"]["skipped_reasons"] == {"secret": 2}
    assert "rlm: warning:" in proc.stderr

    table = invoke_rlm("inspect", str(root), env=no_keys())
    assert table.exit_code == 0, table.stderr
    text = table.stdout
    assert "skipped: secret: a dotenv file" in text
    assert "skipped 2 (2 secret)" in text


# ----- redaction -----


@pytest.mark.parametrize("kind", sorted(FAKE))
def test_each_kind_is_masked(kind: str) -> None:
    text, counts = redact(f"before {FAKE[kind]} after")
    assert SECRET_PART[kind] not in text
    assert f"[REDACTED:{kind}]" in text
    assert text.startswith("before ") and text.endswith(" after")
    assert counts == {kind: 1}


def test_labels_stay_and_lookalikes_are_left_alone() -> None:
    text, _ = redact(FAKE["aws-secret-key"] + "\n" + FAKE["bearer-token"])
    assert text == "aws_secret_access_key = [REDACTED:aws-secret-key]\n" + (
        "Authorization: Bearer [REDACTED:bearer-token]"
    )
    harmless = (
        "task-abcdefghijklmnopqrstuvwxyz0123 disk-abcdefghijklmnopqrstuvwxyz0123 "
        "AKIAIOSFODNN7EXAMPLEX xAKIAIOSFODNN7EXAMPLE "
        "-----BEGIN CERTIFICATE-----\nMIIFAKE\n-----END CERTIFICATE-----\n"
        'if line.startswith("-----BEGIN RSA PRIVATE KEY-----"): pass'
    )
    text, counts = redact(harmless)
    assert text is harmless  # nothing masked: the same object, no copy
    assert not counts


def test_a_private_key_cut_off_by_a_chunk_is_masked_to_the_end() -> None:
    chunk = "config:\n" + FAKE["private-key"][:80]
    assert redact(chunk)[0] == "config:\n[REDACTED:private-key]"


def test_markers_are_not_masked_again() -> None:
    once, counts = redact(" ".join(FAKE.values()))
    assert sum(counts.values()) == len(FAKE)
    again, recount = redact(once)
    assert again == once and not recount


@pytest.mark.parametrize(
    "unit", ["eyJ", "sk-", "AKIA", "-----BEGIN RSA PRIVATE KEY----- ", "Authorization: Bearer "]
)
def test_redaction_stays_linear_on_hostile_text(unit: str) -> None:
    """Text made of nothing but a pattern's start: a backtracking pattern would take minutes."""
    text = unit * (2_000_000 // len(unit))
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 5


def test_ten_megabytes_of_prompts_redact_quickly() -> None:
    """About 40 MB/s with secrets throughout (10 MB in about 0.25 s here); the bound is loose."""
    filler = "def handler(event):\n    return {'status': 200, 'body': event['body']}\n" * 20
    text = (filler + " ".join(FAKE.values()) + "\n") * (10_000_000 // (len(filler) + 600))
    started = time.perf_counter()
    masked, counts = redact(text)
    assert time.perf_counter() - started < 5
    assert counts["aws-access-key"] == text.count(FAKE["aws-access-key"])
    assert "EXAMPLE" not in masked.replace("[REDACTED", "")


def test_every_rule_has_a_test() -> None:
    assert {rule.kind for rule in RULES} == set(FAKE)


# ----- the router -----


class EchoProvider:
    name = "echo"
    cacheable = True
    needs_key = False

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def cache_identity(self) -> dict[str, Any]:
        return {"provider": self.name}

    async def complete(self, request: ModelRequest) -> Completion:
        self.prompts.append(request.messages[-1].content)
        return Completion(text=request.messages[-1].content, model=request.model, cost_usd=0.0)


class RecordingStore:
    def __init__(self) -> None:
        self.keyed: list[str] = []

    def key(self, provider: str, request: ModelRequest, extra: dict[str, Any]) -> str:
        self.keyed.append(request.messages[-1].content)
        return str(len(self.keyed))

    def get(self, key: str) -> Completion | None:
        return None

    def put(self, key: str, completion: Completion) -> None:
        pass


def route(prompts: list[str], *, redact_secrets: bool, kind: str = "llm") -> dict[str, Any]:
    provider, store, bus = EchoProvider(), RecordingStore(), EventBus()
    router = SubcallRouter(
        provider=CachingProvider(provider, store),  # type: ignore[arg-type]
        model="echo-model",
        catalog=Catalog(),
        max_concurrency=4,
        bus=bus,
        budget=Budget(Limits(), bus),
        on_fatal=lambda error: None,
        redact_secrets=redact_secrets,
    )
    questions: list[str] = []

    async def child(question: str, context: Any, model: str | None, cell: int) -> str:
        questions.append(question)
        return "child answer"

    caller = Caller("run", 1, UsageLedger(), child if kind == "rlm" else None)
    request = QueryRequest(prompts=prompts, model=None, batched=True, cell=1, kind=kind)
    replies = asyncio.run(router.handle(caller, request))
    return {
        "replies": replies,
        "sent": provider.prompts,
        "keyed": store.keyed,
        "questions": questions,
        "router": router,
        "caller": caller,
    }


def test_the_router_masks_what_it_sends_and_what_it_caches_under() -> None:
    prompts = [f"chunk {FAKE['aws-access-key']} and {FAKE['github-token']}", "nothing here"]
    masked = route(prompts, redact_secrets=True)
    first = "chunk [REDACTED:aws-access-key] and [REDACTED:github-token]"
    assert masked["sent"] == masked["keyed"] == masked["replies"] == [first, "nothing here"]
    assert masked["router"].redacted == 2
    assert masked["router"].redacted_by_kind == {"aws-access-key": 1, "github-token": 1}
    assert masked["caller"].redacted == 2

    plain = route(prompts, redact_secrets=False)
    assert plain["sent"] == plain["keyed"] == prompts
    assert plain["router"].redacted == 0


def test_a_child_runs_question_is_masked() -> None:
    result = route([f"look up {FAKE['openai-key']}"], redact_secrets=True, kind="rlm")
    assert result["questions"] == ["look up [REDACTED:openai-key]"]
    assert result["router"].redacted == 1


def test_run_finished_has_a_redacted_field() -> None:
    event = RunFinished(
        "r", status="ok", answer="a", iterations=1, subcalls=0, usage={}, elapsed_s=0
    )
    assert event.to_json()["redacted"] == 0


# ----- through the real command line -----


ECHO = [{"match": "(?s)(.*)", "reply": "\\1"}]


def secret_prompt() -> str:
    return "\n".join(f"{kind}: {value}" for kind, value in sorted(FAKE.items()))


def test_redact_secrets_masks_what_the_provider_receives(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    code = f"reply = llm_query({secret_prompt()!r})\nFINAL(reply)"
    script = write_script([repl(code)], ECHO)
    trace = tmp_path / "masked.jsonl"
    proc = invoke_scripted(
        script, "--redact-secrets", "--trace", str(trace), "-q", "what?", stdin=b"context"
    )
    assert proc.exit_code == 0, proc.stderr
    answer = proc.stdout
    for kind in FAKE:
        assert f"[REDACTED:{kind}]" in answer
        assert SECRET_PART[kind] not in answer
    events = read_trace(trace)
    started = [e for e in events if e["type"] == "subcall_started"]
    assert len(started) == 1 and "[REDACTED:aws-access-key]" in started[0]["prompt"]
    assert events[-1]["type"] == "run_finished"
    assert events[-1]["redacted"] == len(FAKE)


def test_without_the_flag_the_prompt_goes_unchanged(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    code = f"reply = llm_query({secret_prompt()!r})\nFINAL(reply)"
    script = write_script([repl(code)], ECHO)
    trace = tmp_path / "plain.jsonl"
    proc = invoke_scripted(script, "--trace", str(trace), "-q", "what?", stdin=b"context")
    assert proc.exit_code == 0, proc.stderr
    assert proc.stdout.rstrip("\n") == secret_prompt()
    assert read_trace(trace)[-1]["redacted"] == 0


def test_a_child_run_gets_a_masked_question(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    question = f"which user owns {FAKE['aws-access-key']}?"
    script = write_script([repl(f"FINAL(rlm_query({question!r}))"), repl("FINAL('nobody')")], ECHO)
    trace = tmp_path / "child.jsonl"
    proc = invoke_scripted(
        script, "--redact-secrets", "--max-depth", "2", "--trace", str(trace), "-q", "who?",
        stdin=b"context",
    )  # fmt: skip
    assert proc.exit_code == 0, proc.stderr
    assert proc.stdout.strip() == "nobody"
    events = read_trace(trace)
    child = [e for e in events if e["type"] == "run_started" and e["depth"] == 1]
    assert [e["question"] for e in child] == ["which user owns [REDACTED:aws-access-key]?"]
    finished = {e["run_id"]: e["redacted"] for e in events if e["type"] == "run_finished"}
    assert finished[child[0]["run_id"]] == 0  # the child's own prompts had none
    assert events[-1]["redacted"] == 1  # the top run counts its tree
