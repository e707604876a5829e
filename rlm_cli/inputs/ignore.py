"""Which paths to leave out: .gitignore and .rlmignore files, VCS folders, --include/--exclude.

Paths are relative to the root being walked (a directory, or an archive), with `/` separators.
Ignore files follow git's rules: each applies below its own directory, a deeper file overrides a
shallower one, the last matching pattern wins (`!pattern` re-includes), and nothing below an
ignored folder can be re-included. `.rlmignore` has the same syntax and is read after
`.gitignore` in the same folder, so it can both add patterns and re-include what git ignores.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rlm_cli.errors import UsageError
from rlm_cli.inputs.secret_files import names_secrets, secret_kind

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

IGNORE_FILES = (".gitignore", ".rlmignore")
VCS_NAMES = frozenset({".git", ".hg", ".svn", ".bzr", ".jj", "CVS", "_darcs"})
IGNORE_FILE_LIMIT = 1 << 20  # larger "ignore files" are not ignore files


@dataclass
class _Spec:
    label: str  # the ignore file, as shown in a skip's detail
    spec: GitIgnoreSpec


@dataclass
class IgnoreRules:
    """The ignore files found so far, by the folder they sit in ('' is the root)."""

    _by_dir: dict[str, list[_Spec]] = field(default_factory=dict)
    # Ignore files in folders above the root (up to its repository's top), nearest first, with
    # the root's path relative to each.
    _outer: list[tuple[str, _Spec]] = field(default_factory=list)

    def add(self, directory: str, label: str, lines: Iterable[str]) -> None:
        spec = _gitignore(lines)
        self._by_dir.setdefault(directory, []).append(_Spec(label, spec))

    def add_outer(
        self, prefix: str, label: str, lines: Iterable[str], *, first: bool = False
    ) -> None:
        spec = _Spec(label, _gitignore(lines))
        if first:
            self._outer.insert(0, (prefix, spec))
        else:
            self._outer.append((prefix, spec))

    def check(self, path: str, is_dir: bool) -> str | None:
        """Why `path` is ignored (`sub/.gitignore:3 *.log`), or None when it is not."""
        parts = path.split("/")
        suffix = "/" if is_dir else ""
        for depth in range(len(parts) - 1, -1, -1):
            specs = self._by_dir.get("/".join(parts[:depth]))
            if specs:
                decided = _decide(specs, "/".join(parts[depth:]) + suffix)
                if decided is not None:
                    return decided or None
        for prefix, spec in self._outer:
            decided = _decide([spec], f"{prefix}/{path}{suffix}")
            if decided is not None:
                return decided or None
        return None

    def load_outer(self, root: str) -> None:
        """Read the ignore files of the folders above `root`, up to its git repository's top,
        and that repository's .git/info/exclude: git applies them to `root`'s files too."""
        here = os.path.abspath(root)
        prefix_parts: list[str] = []
        while True:
            parent, name = os.path.split(here)
            if os.path.exists(os.path.join(here, ".git")):
                exclude = os.path.join(here, ".git", "info", "exclude")
                lines = read_ignore_file(exclude)
                if lines:
                    self.add_outer("/".join(reversed(prefix_parts)) or ".", exclude, lines)
                if self._root_ignored():
                    # The user named an ignored folder (say node_modules/) on purpose: the
                    # rules that ignore it do not apply inside it.
                    self._outer.clear()
                return
            if not name or parent == here:
                # Not inside a repository: folders above the root do not apply.
                self._outer.clear()
                return
            prefix_parts.append(name)
            for filename in reversed(IGNORE_FILES):
                path = os.path.join(parent, filename)
                lines = read_ignore_file(path)
                if lines:
                    self.add_outer("/".join(reversed(prefix_parts)), path, lines)
            here = parent

    def _root_ignored(self) -> bool:
        for prefix, spec in self._outer:
            parts = [part for part in prefix.split("/") if part not in ("", ".")]
            for depth in range(1, len(parts) + 1):
                if _decide([spec], "/".join(parts[:depth]) + "/"):
                    return True
        return False


def _decide(specs: list[_Spec], path: str) -> str | None:
    """'' when the last matching pattern re-includes `path`, the reason when it ignores it, None
    when no pattern of `specs` matches."""
    path = path.removeprefix("./")
    for spec in reversed(specs):
        result = spec.spec.check_file(path)
        if result.include is not None and result.index is not None:
            if not result.include:
                return ""
            pattern = spec.spec.patterns[result.index]
            text = getattr(pattern, "pattern", None) or ""
            return f"{spec.label}:{result.index + 1} {text}".rstrip()
    return None


def read_ignore_file(path: str) -> list[str]:
    try:
        with open(path, "rb") as handle:
            data = handle.read(IGNORE_FILE_LIMIT + 1)
    except OSError:
        return []
    if len(data) > IGNORE_FILE_LIMIT:
        return []
    return data.decode("utf-8", "replace").splitlines()


# What a filter says about a path it leaves out: (reason, detail), as a Skip shows them.
Verdict = tuple[str, str]


class Filters:
    """The name filters every walked file and archive member passes, in one chain (`check`):
    VCS folders, ignore files, then --exclude and --include globs (.gitignore syntax: `*.py`,
    `docs/`, `/src/**/*.ts`), then well-known secret files."""

    def __init__(self, include: Iterable[str], exclude: Iterable[str]) -> None:
        include = list(include)
        self.include = _compile("--include", include)
        self.exclude = _compile("--exclude", list(exclude))
        # The --include globs that name secret files themselves (`.env`, `*.pem`): the user asked
        # for those files, so a walk loads them (a broad `*` or `src/**` does not).
        self.secret_include = _compile("--include", [p for p in include if names_secrets(p)])

    def check(
        self, path: str, is_dir: bool, rules: IgnoreRules | None, *, on_disk: str | None = None
    ) -> Verdict | None:
        """Why `path` is left out, or None when it passes. `path` is relative to the root the
        globs apply to (the walked folder, or the folder an archive sits in, with the archive's
        name as a folder: `data/bundle.zip/src/a.py`). Folders above `path` are not looked at: a
        walk never enters a folder that fails, and archive members go through `check_below`.

        `rules` None leaves the ignore files out (an archive's are not all known while it is
        still being listed); what fails without them fails with them too. `on_disk` is the file's
        own path for a walked file: secret names are matched on it (so walking ~/.aws itself
        still finds .aws/credentials), and such a file can be named to load it anyway."""
        if posixpath.basename(path) in VCS_NAMES:
            return "version control", ""
        why = rules.check(path, is_dir) if rules is not None else None
        if why:
            return "ignored", why
        why = self.excluded(path, is_dir)
        if why:
            return "excluded", why
        if is_dir:
            return None
        why = self.not_included(path)
        if why:
            return "not included", why
        if on_disk is None:
            kind = self.secret(path, path)
            hint = "--include it by name to load it"
        else:
            kind = self.secret(path, on_disk.replace(os.sep, "/"))
            hint = "name it, or --include it by name, to load it"
        return ("secret", f"{kind}; {hint}") if kind else None

    def check_below(
        self, root: str, path: str, is_dir: bool, rules: IgnoreRules | None
    ) -> tuple[str | None, str, str] | None:
        """`check` for `path` inside a container at `root` (an archive; "" when it was named),
        with each folder between them checked first, as a walk checks a folder before it enters
        it: (that folder, relative to `root`, reason, detail) for the first folder that fails,
        (None, reason, detail) when only `path` does, None when it passes."""
        prefix = f"{root}/" if root else ""
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            verdict = self.check(prefix + folder, True, rules)
            if verdict is not None:
                return folder, *verdict
        verdict = self.check(prefix + path, is_dir, rules)
        return None if verdict is None else (None, *verdict)

    def excluded(self, path: str, is_dir: bool) -> str | None:
        if self.exclude is None:
            return None
        result = self.exclude.check_file(path + ("/" if is_dir else ""))
        if result.include and result.index is not None:
            pattern = self.exclude.patterns[result.index]
            return f"--exclude {getattr(pattern, 'pattern', '')}"
        return None

    def secret(self, path: str, full_path: str) -> str | None:
        """What secret file `full_path` (its path on disk or in its archive: its folder's name
        counts) looks like, unless an --include glob names it (`path`, relative to the root, is
        what the globs match); None for an ordinary file."""
        kind = secret_kind(full_path)
        if kind is None:
            return None
        if self.secret_include is not None and self.secret_include.match_file(path):
            return None
        return kind

    def not_included(self, path: str) -> str | None:
        if self.include is None or self.include.match_file(path):
            return None
        return "matches no --include"


def _compile(flag: str, patterns: list[str]) -> GitIgnoreSpec | None:
    if not patterns:
        return None
    for pattern in patterns:
        try:
            _gitignore([pattern])
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{flag} {pattern!r}: not a valid glob ({exc})") from None
    return _gitignore(patterns)


def _gitignore(lines: Iterable[str]) -> GitIgnoreSpec:
    # pathspec loads on the first pattern: a run over files named one by one, with no ignore
    # file and no --include/--exclude, never pays its ~15 ms.
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(list(lines))
