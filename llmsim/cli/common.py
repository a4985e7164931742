"""What every ``llmsim`` verb shares: the two consoles, the one-line error exit, and the
scenario argument and ``--set`` option."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from llmsim.errors import LlmsimError

if TYPE_CHECKING:
    from llmsim.scenario import Scenario

out_console = Console()
err_console = Console(stderr=True)

ScenarioArg = Annotated[
    Path, typer.Argument(help="Scenario YAML file.", show_default=False, dir_okay=False)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a field by dotted path, e.g. --set workload.rate=12 "
        "--set policy.max_num_seqs=64. Repeatable.",
    ),
]


def fail(exc: LlmsimError) -> typer.Exit:
    """Print a user error on one line; the caller raises the returned exit (code 2)."""
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


_written = False  # whether a command has written all it writes (see ``all_written``)


def all_written() -> None:
    """Say that the command has written every file and line it writes (files atomically):
    nothing is left for the interpreter's teardown, so the ``llmsim`` program may end at once
    (:func:`llmsim.cli.main`). For commands that start no threads, processes or temporary
    folders."""
    global _written
    _written = True


def teardown_skippable() -> bool:
    return _written


def load(path: Path, overrides: list[str] | None) -> Scenario:
    from llmsim.scenario import load_scenario

    return load_scenario(path, overrides or None)
