"""The scripted provider: replays a YAML/JSON script, for tests, demos and reproducible runs.

Format (exact; other tools rely on it):

    root:                 # reply k answers the k-th root call
      - "text with a ```repl``` block"
    sub:                  # the first rule whose `match` (re.search, DOTALL) hits the prompt wins
      - match: 'code is (\\w+)'
        reply: 'found \\1'      # expanded with re.Match.expand
      - reply: 'nothing here'  # no `match`: always matches
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from rlm_cli.errors import ConfigError, ProviderError
from rlm_cli.inputs.model import CHARS_PER_TOKEN
from rlm_cli.providers.base import Completion, ModelRequest, ServedWindow, TextCallback, Usage


@dataclass(frozen=True)
class SubRule:
    pattern: re.Pattern[str] | None
    reply: str


class ScriptedProvider:
    """Replies from a script (see the module docstring); free, instant and needing no key."""

    name = "scripted"
    # Its replies are free, instant and change with the script: storing them saves nothing and
    # would replay an old script's reply after the script changed.
    cacheable: ClassVar[bool] = False
    needs_key: ClassVar[bool] = False

    def __init__(self, root: list[str], sub: list[SubRule], source: str = "script") -> None:
        self._root = root
        self._sub = sub
        self._source = source
        self._root_calls = 0

    def cache_identity(self) -> dict[str, Any]:
        """The provider and its script's source (a path, or "script"); it is never cached."""
        return {"provider": self.name, "script": self._source}

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedProvider:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot read the script ({exc.strerror}); check --script"
            ) from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"{path}: not valid YAML or JSON: {first}") from None
        return cls.from_data(data, str(path))

    @classmethod
    def from_data(cls, data: Any, source: str = "script") -> ScriptedProvider:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a script is a mapping with the keys 'root' and 'sub'")
        unknown = set(data) - {"root", "sub"}
        if unknown:
            raise ConfigError(
                f"{source}: unknown key {sorted(unknown)[0]!r}; a script has only 'root' and 'sub'"
            )
        root = data.get("root") or []
        if not isinstance(root, list) or not all(isinstance(r, str) for r in root):
            raise ConfigError(
                f"{source}: 'root' must be a list of strings (the root model's replies)"
            )
        rules = []
        for index, rule in enumerate(data.get("sub") or []):
            if not isinstance(rule, dict) or not isinstance(rule.get("reply"), str):
                raise ConfigError(f"{source}: sub rule {index + 1} needs a string 'reply'")
            pattern = rule.get("match")
            try:
                compiled = re.compile(pattern, re.DOTALL) if pattern is not None else None
            except (re.error, TypeError) as exc:
                raise ConfigError(
                    f"{source}: sub rule {index + 1} has a bad 'match' regex: {exc}"
                ) from None
            rules.append(SubRule(compiled, rule["reply"]))
        return cls(root, rules, source)

    async def complete(self, request: ModelRequest) -> Completion:
        if request.purpose == "root":
            text = self._next_root()
        else:
            text = self._sub_reply(request.messages[-1].content)
        prompt_chars = sum(len(m.content) for m in request.messages)
        usage = Usage(
            input_tokens=-(-prompt_chars // CHARS_PER_TOKEN),
            output_tokens=-(-len(text) // CHARS_PER_TOKEN),
        )
        return Completion(
            text=text, model=request.model, usage=usage, finish_reason="stop", cost_usd=0.0
        )

    async def stream(self, request: ModelRequest, on_text: TextCallback) -> Completion:
        completion = await self.complete(request)
        for line in completion.text.splitlines(keepends=True):
            on_text(line)
        return completion

    async def aclose(self) -> None:
        pass

    async def served_window(self, model: str) -> ServedWindow | None:
        """No server to ask: a scripted worker's window is the catalog's, --sub-window's or the
        default."""
        return None

    def _next_root(self) -> str:
        self._root_calls += 1
        if self._root_calls > len(self._root):
            raise ProviderError(
                f"{self._source}: the script has {len(self._root)} root replies but the run asked for "
                f"reply {self._root_calls}; add more replies under 'root'"
            )
        return self._root[self._root_calls - 1]

    def _sub_reply(self, prompt: str) -> str:
        for rule in self._sub:
            if rule.pattern is None:
                return rule.reply
            match = rule.pattern.search(prompt)
            if match:
                return match.expand(rule.reply)
        raise ProviderError(f"{self._source}: no 'sub' rule matches the prompt {prompt[:60]!r}")
