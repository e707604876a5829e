"""`rlm doctor`: which layers of the sandbox this system gives the worker, and why not."""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Annotated

import typer

from rlm_cli.cli.common import errors_exit
from rlm_cli.errors import SandboxUnavailable


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check the sandbox: start a worker as `rlm ask` would and report each layer.

    Exit 0 when every layer is active; 3 when some is unavailable (then `rlm ask` refuses to
    run unless given --allow-weaker-sandbox).
    """
    import asyncio

    from rlm_cli.sandbox.host import probe

    with errors_exit():
        layers = asyncio.run(probe())
    missing = [name for name, layer in layers.items() if not layer["active"]]
    system = {
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": sys.version.split()[0],
        "user": "root" if os.geteuid() == 0 else str(os.geteuid()),
    }
    if as_json:
        data = {**system, "layers": layers, "ok": not missing}
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        typer.echo(f"{system['system']} · Python {system['python']} · user {system['user']}")
        width = max(len(name) for name in layers)
        for name, layer in layers.items():
            mark = "active     " if layer["active"] else "UNAVAILABLE"
            typer.echo(f"  {name:<{width}}  {mark}  {layer['detail']}")
        if missing:
            typer.echo(
                f"The sandbox is weaker here: {', '.join(missing)}. `rlm ask` stops with exit "
                f"code {SandboxUnavailable.exit_code} unless given --allow-weaker-sandbox.",
            )
        else:
            typer.echo(
                "Every layer is active: cells cannot reach your keys, files, network or terminal."
            )
    raise typer.Exit(SandboxUnavailable.exit_code if missing else 0)
