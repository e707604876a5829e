"""A directory -> the files to load and the entries left out, without opening a file.

Depth first, sorted, following symlinks: each folder's (st_dev, st_ino) is remembered, so a link
back to a folder already read is a `symlink loop` skip rather than an endless walk. Every entry
goes through `Filters.check` (the chain archive members pass too); a folder that fails is not
entered, and is one skip, as git never looks inside an ignored folder.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from rlm_cli.errors import UsageError
from rlm_cli.inputs import rejections
from rlm_cli.inputs.ignore import IGNORE_FILES, Filters, IgnoreRules, read_ignore_file
from rlm_cli.inputs.model import Skip


@dataclass
class Listing:
    """What a walk found: regular files that passed the filters, sorted by their path relative
    to the root, as (relative path, path on disk, size); the skips in the order met; and how
    many entries it saw (folders included), to tell an empty folder from a filtered one."""

    files: list[tuple[str, str, int]]
    skipped: list[Skip]
    entries: int


def walk(arg: str, filters: Filters) -> Listing:
    """List the directory `arg` (as the user gave it: skips are shown under it). Raises
    UsageError when `arg` itself cannot be listed; a folder below it that cannot is a skip."""
    root = os.path.abspath(arg)
    rules = IgnoreRules()
    rules.load_outer(root)
    listing = Listing(files=[], skipped=[], entries=0)
    skip = listing.skipped.append
    root_info = os.stat(root)
    visited = {(root_info.st_dev, root_info.st_ino)}
    stack = [("", root)]
    while stack:
        rel_dir, dir_path = stack.pop()
        try:
            with os.scandir(dir_path) as entries:
                children = sorted(entries, key=lambda entry: entry.name)
        except OSError as exc:
            why = rejections.why(exc)
            if not rel_dir:
                raise UsageError(
                    f"{arg}: cannot list the directory ({why}); check its permissions"
                ) from None
            skip(Skip(os.path.join(arg, rel_dir) + "/", "unreadable", why, folder=True))
            continue
        for filename in IGNORE_FILES:
            if any(child.name == filename for child in children):
                label = os.path.join(arg, rel_dir, filename)
                rules.add(rel_dir, label, read_ignore_file(os.path.join(dir_path, filename)))
        subdirs = []
        for child in children:
            listing.entries += 1
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            shown = os.path.join(arg, rel)
            try:
                info = child.stat()  # follows symlinks
            except OSError as exc:
                skip(_unstatable(shown, child, exc))
                continue
            is_dir = stat.S_ISDIR(info.st_mode)
            verdict = filters.check(rel, is_dir, rules, on_disk=child.path)
            if verdict is not None:
                skip(Skip(shown + ("/" if is_dir else ""), *verdict, folder=is_dir))
            elif is_dir:
                key = (info.st_dev, info.st_ino)
                if key in visited:
                    detail = "a symbolic link to a folder already read"
                    skip(Skip(shown + "/", "symlink loop", detail, folder=True))
                else:
                    visited.add(key)
                    subdirs.append((rel, child.path))
            elif not stat.S_ISREG(info.st_mode):
                skip(Skip(shown, "not a regular file", f"a {rejections.file_type(info.st_mode)}"))
            else:
                listing.files.append((rel, child.path, info.st_size))
        stack.extend(reversed(subdirs))
    listing.files.sort()
    return listing


def _unstatable(shown: str, child: os.DirEntry[str], exc: OSError) -> Skip:
    """An entry whose stat failed: a link that leads back to itself, a broken link, or one the
    system refused."""
    if exc.errno == errno.ELOOP:
        return Skip(shown, "symlink loop", "the link leads back to itself")
    detail = "a broken symbolic link" if child.is_symlink() else rejections.why(exc)
    return Skip(shown, "unreadable", detail)
