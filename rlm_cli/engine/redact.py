"""Mask obvious secrets in text before it leaves the machine (`--redact-secrets`).

Only secrets with a recognisable shape are masked: vendor key formats, `Authorization: Bearer`
values, `aws_secret_access_key = ...` lines, PEM private key blocks and JWTs. A password in an
ordinary `password = hunter2` line is not: there is no telling it from any other value.

Each secret becomes `[REDACTED:kind]`. A fan-out can send 100 MB of prompts, so the patterns are
compiled once, each starts with a literal the regex engine can scan for, and a pattern runs only
when its literal occurs in the text (a `str` search, far faster than a regex pass): text with no
secrets costs one fast search per pattern, and the cost stays linear in the text's length.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

_B64 = r"[A-Za-z0-9+/=]"
_URLSAFE = r"[A-Za-z0-9_-]"


@dataclass(frozen=True)
class _Rule:
    kind: str
    hints: tuple[str, ...]  # the pattern can only match where one of these occurs
    pattern: re.Pattern[str]
    keep: bool = False  # group 1 (a label such as `Authorization: Bearer `) stays in the text


# Order matters: the first rule to mask a span wins, and markers never match a later rule.
RULES: tuple[_Rule, ...] = (
    # A PEM private key block, whole (RSA, EC, DSA, OPENSSH, ENCRYPTED, PKCS#8): its body is
    # base64 and `Proc-Type:`/`DEK-Info:` headers, read possessively up to the next `-----`,
    # which must begin the END line. A prompt cut from a longer text may end inside the block,
    # so the end of the prompt ends it too. A BEGIN line followed by anything else is left
    # alone, and costs one scan to the next `-----` (never a backtrack): linear however many.
    _Rule(
        "private-key",
        ("PRIVATE KEY-----",),
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[A-Za-z0-9+/=\s:,]|-(?!----))*+"
            r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z)"
        ),
    ),
    # Anthropic keys (sk-ant-api03-...), before OpenAI's, whose shape they share.
    _Rule("anthropic-key", ("sk-ant-",), re.compile(r"sk-ant-[A-Za-z0-9_-]{20,}")),
    # OpenAI keys: sk-..., sk-proj-..., sk-svcacct-..., sk-admin-... The look-behind keeps
    # `task-...`, `disk-...` out; it comes after the literal so the engine can scan for `sk-`.
    _Rule("openai-key", ("sk-",), re.compile(r"sk-(?<![A-Za-z0-9_-]sk-)[A-Za-z0-9_-]{20,}")),
    # AWS access key ids: long-term (AKIA) and temporary (ASIA).
    _Rule(
        "aws-access-key",
        ("AKIA", "ASIA"),
        re.compile(r"A(?<![A-Za-z0-9]A)(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
    ),
    # AWS secret keys have no prefix of their own: masked after their name, in credentials
    # files (`aws_secret_access_key = ...`), environment lines and JSON (`"SecretAccessKey": "`).
    # The match starts inside the name, at its literal spellings, so the engine can scan for
    # them (a case-insensitive start would try the pattern at every character: 5x slower).
    _Rule(
        "aws-secret-key",
        _SECRET_NAMES := ("ecret_access_key", "ECRET_ACCESS_KEY", "ecretAccessKey"),
        re.compile(rf"((?:{'|'.join(_SECRET_NAMES)})[\"']?\s*[:=]\s*[\"']?){_B64}{{40}}(?!{_B64})"),
        keep=True,
    ),
    # GitHub tokens: personal (ghp_), OAuth (gho_), user-to-server (ghu_), server (ghs_), refresh
    # (ghr_), fine-grained personal (github_pat_).
    _Rule(
        "github-token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        re.compile(r"g(?:h[pousr]_[A-Za-z0-9]{36,}|ithub_pat_[A-Za-z0-9_]{22,})"),
    ),
    # Slack tokens: bot, app, user, refresh, legacy (xoxb-, xoxa-, xoxp-, xoxr-, xoxs-).
    _Rule("slack-token", ("xox",), re.compile(r"xox[baprs]-[A-Za-z0-9-]{10,}")),
    # Google API keys.
    _Rule("google-api-key", ("AIza",), re.compile(rf"AIza{_URLSAFE}{{35,}}")),
    # JSON Web Tokens: header and payload are base64url JSON, so both begin with `eyJ` (`{"`).
    # Possessive runs, and no start inside a run (`eyJeyJ...` would otherwise be quadratic).
    _Rule(
        "jwt",
        ("eyJ",),
        re.compile(rf"eyJ(?<!{_URLSAFE}eyJ){_URLSAFE}{{8,}}+\.eyJ{_URLSAFE}{{8,}}+\.{_URLSAFE}*+"),
    ),
    # Whatever follows `Authorization: Bearer` (HTTP logs, curl commands, header dicts); the
    # match starts inside the header's name, as above.
    _Rule(
        "bearer-token",
        ("uthorization", "UTHORIZATION"),
        re.compile(
            r"((?:uthorization|UTHORIZATION)[\"']?\s*[:=]\s*[\"']?(?:[Bb]earer|BEARER)\s+)"
            r"[A-Za-z0-9._~+/=-]+"
        ),
        keep=True,
    ),
)


def redact(text: str) -> tuple[str, Counter[str]]:
    """`text` with each secret replaced by `[REDACTED:kind]`, and how many of each kind. The
    text is returned as it is (the same object) when nothing is masked."""
    counts: Counter[str] = Counter()
    for rule in RULES:
        if not any(hint in text for hint in rule.hints):
            continue
        marker = f"[REDACTED:{rule.kind}]"
        text, count = rule.pattern.subn(rf"\1{marker}" if rule.keep else marker, text)
        if count:
            counts[rule.kind] += count
    return text, counts
