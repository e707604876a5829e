"""An archive -> the members to load and the members left out, read without extracting.

Members pass the same filter chain as walked files (`Filters.check_below`: a member inside a
folder that a walk would not enter is left out with one skip for that folder), with the
archive's own .gitignore/.rlmignore files as its ignore rules. A zip is read through its central
directory; a tar in one streaming pass (`r|*`, so a compressed tar is decompressed once), which
is why each member is scanned as it streams by, and the ignore files, known only at the end, are
applied after the listing.
"""

from __future__ import annotations

import io
import posixpath
from dataclasses import dataclass, replace
from typing import IO, cast

from rlm_cli.inputs import archives, rejections, tokens
from rlm_cli.inputs.ignore import IGNORE_FILE_LIMIT, IGNORE_FILES, Filters, IgnoreRules
from rlm_cli.inputs.model import ArchiveKind, Skip
from rlm_cli.inputs.rejections import Rejected
from rlm_cli.inputs.scan import Readable, Scan, scan
from rlm_cli.inputs.sniff import archive_of, compression_of

# Archive members keep token samples up to this many bytes in all (over every archive of one
# resolve); members past it are estimated at the overall tokens-per-byte ratio.
SAMPLE_BUDGET = 8 << 20
MEMBER_WHOLE = 64 << 10  # members this small keep their whole text as their sample


@dataclass
class Expanded:
    """What an archive holds: the members to load with their scans, sorted by name; the skips,
    in the order found; and how many entries it has (links and the like count, folders do
    not), to tell an empty archive from a filtered one."""

    loadable: list[tuple[archives.Member, Scan]]
    skipped: list[Skip]
    entries: int


@dataclass
class _Scanned:
    """A member that may load, with what its scan found (or why it cannot load)."""

    member: archives.Member
    result: Scan | None
    rejected: Rejected | None


class MemberReader:
    """Reads the archives of one resolve: the filters, the per-file cap, and the token-sample
    budget that all its archives share."""

    def __init__(self, filters: Filters, max_file_bytes: int) -> None:
        self.filters = filters
        self.max_file_bytes = max_file_bytes
        self.sample_budget = SAMPLE_BUDGET

    def expand(self, path: str, display: str, kind: ArchiveKind, *, root: str) -> Expanded:
        """The members of the archive at `path`, shown as `display/<member>`. `root` is the
        archive's path relative to the walked folder ("" when it was named): the --include and
        --exclude globs see members as `root/<member>`. Errors reading the archive propagate
        (`rejections.reading_packed` turns them into rejections)."""
        rules = IgnoreRules()
        skipped: list[Skip] = []
        listed = self._zip if kind == "zip" else self._tar
        entries, scanned = listed(path, display, root, rules, skipped)
        files = sorted((m for m in entries if m.kind == "file"), key=lambda m: m.name)
        loadable: list[tuple[archives.Member, Scan]] = []
        shown_folders: set[str] = set()
        for member in files:
            shown = f"{display}/{member.name}"
            verdict = self.filters.check_below(root, member.name, False, rules)
            if verdict is not None:
                folder, reason, detail = verdict
                if folder is None:
                    skipped.append(Skip(shown, reason, detail))
                elif folder not in shown_folders:  # one skip for a whole .git/, not one per object
                    shown_folders.add(folder)
                    skipped.append(Skip(f"{display}/{folder}/", reason, detail, folder=True))
                continue
            # What fails the chain with the ignore rules failed it without them, so every member
            # that passes here was scanned.
            candidate = scanned[member.name]
            if candidate.rejected is not None:
                skipped.append(Skip(shown, candidate.rejected.reason, candidate.rejected.detail))
                continue
            assert candidate.result is not None
            loadable.append((member, candidate.result))
        return Expanded(loadable, skipped, len(entries))

    # ----- listing -----

    def _zip(
        self, path: str, display: str, root: str, rules: IgnoreRules, skipped: list[Skip]
    ) -> tuple[list[archives.Member], dict[str, _Scanned]]:
        import zipfile

        members = archives.list_zip(path)
        entries: list[archives.Member] = []
        scanned: dict[str, _Scanned] = {}
        with zipfile.ZipFile(path) as archive:
            for member in members:
                if _is_ignore_file(member):
                    _add_ignore_file(rules, root, display, member, archive.read(member.stored))
            for member in members:
                if self._listed(member, display, root, entries, skipped):
                    with archive.open(member.stored) as stream:
                        scanned[member.name] = self._scan(member, stream)
        return entries, scanned

    def _tar(
        self, path: str, display: str, root: str, rules: IgnoreRules, skipped: list[Skip]
    ) -> tuple[list[archives.Member], dict[str, _Scanned]]:
        entries: list[archives.Member] = []
        scanned: dict[str, _Scanned] = {}
        for member, stream in archives.iter_tar(path):
            if stream is None:  # not a plain file
                self._listed(member, display, root, entries, skipped)
                continue
            if not self._listed(member, display, root, entries, skipped):
                if _is_ignore_file(member):  # filtered out itself, its rules still apply
                    _add_ignore_file(rules, root, display, member, stream.read())
                continue
            if _is_ignore_file(member):
                data = stream.read()
                _add_ignore_file(rules, root, display, member, data)
                scanned[member.name] = self._scan(member, io.BytesIO(data))
            else:
                scanned[member.name] = self._scan(member, stream)
        return entries, scanned

    def _listed(
        self,
        member: archives.Member,
        display: str,
        root: str,
        entries: list[archives.Member],
        skipped: list[Skip],
    ) -> bool:
        """Count `member` (folders aside) and skip it unless it is a plain file; True when it is
        worth scanning: a file that passes the filters known before the ignore files are (what
        fails those can never load)."""
        if member.kind == "dir":
            return False
        entries.append(member)
        if member.kind != "file":
            skipped.append(Skip(f"{display}/{member.name}", *rejections.MEMBER_KINDS[member.kind]))
            return False
        return self.filters.check_below(root, member.name, False, None) is None

    # ----- scanning -----

    def _scan(self, member: archives.Member, stream: IO[bytes]) -> _Scanned:
        cap = self.max_file_bytes
        if member.size > cap:
            return _Scanned(member, None, rejections.too_large(member.size, cap))
        if archive_of(member.name) is not None:
            return _Scanned(member, None, rejections.nested())
        if member.size <= MEMBER_WHOLE and self.sample_budget >= member.size:
            data = stream.read()
            self.sample_budget -= len(data)
            result = scan(io.BytesIO(data))
            if result.encoding is not None:
                result = replace(result, samples=(data,))
        else:
            result = scan(cast(Readable, stream), samples=self._samples(member.size))
        if compression_of(result.head) is not None:
            return _Scanned(member, None, rejections.nested())
        if result.encoding is None:
            return _Scanned(member, None, rejections.binary(""))
        return _Scanned(member, result, None)

    def _samples(self, size: int) -> int:
        """How many token samples a member too large to keep whole keeps: about one per 64 KiB,
        at most 64, none once the budget is spent."""
        if self.sample_budget <= 0:
            return 0
        count = max(1, min(size // (64 << 10), 64))
        self.sample_budget -= 2 * count * tokens.SAMPLE_BYTES  # scan keeps up to twice as many
        return count


def _is_ignore_file(member: archives.Member) -> bool:
    return (
        member.kind == "file"
        and posixpath.basename(member.name) in IGNORE_FILES
        and member.size <= IGNORE_FILE_LIMIT
    )


def _add_ignore_file(
    rules: IgnoreRules, root: str, display: str, member: archives.Member, data: bytes
) -> None:
    """Rules are kept by the folder they apply to, in the globs' terms (`root/<member folder>`),
    so `Filters.check` asks the same `IgnoreRules` a walk does."""
    folder = posixpath.dirname(member.name)
    directory = "/".join(part for part in (root, folder) if part)
    label = f"{display}/{member.name}"
    rules.add(directory, label, data.decode("utf-8", "replace").splitlines())
