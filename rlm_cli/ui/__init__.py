"""Views: event subscribers that show a run on stderr."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from rlm_cli.events import AnyEvent


class ViewName(enum.StrEnum):
    auto = "auto"
    tree = "tree"
    plain = "plain"
    none = "none"


class View(Protocol):
    def __call__(self, event: AnyEvent) -> None: ...

    def close(self) -> None: ...


class NoView:
    def __call__(self, event: AnyEvent) -> None:
        pass

    def close(self) -> None:
        pass


def open_view(name: str, stream: TextIO) -> View:
    """The view called `name`; `auto` is the live tree on a terminal and plain lines elsewhere."""
    name = ViewName(name).value
    if name == "auto":
        name = "tree" if stream.isatty() else "plain"
    if name == "none":
        return NoView()
    if name == "plain":
        from rlm_cli.ui.plain import PlainView

        return PlainView(stream)
    from rlm_cli.ui.tree import LiveTreeView  # imports rich: only when drawing a tree

    return LiveTreeView(stream)
