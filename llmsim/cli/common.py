"""What every ``llmsim`` verb shares: the two consoles, the one-line error exit, and the
scenario argument and ``--set`` option."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from llmsim.errors import LlmsimError
from llmsim.scenario import Scenario, load_scenario

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


def load(path: Path, overrides: list[str] | None) -> Scenario:
    return load_scenario(path, overrides or None)


class Steps:
    """Progress of a long command, one line per step on stderr: ``[2/5] H100-SXM (41 s)``.

    Lines rather than a live bar, so that a log or a CI job shows them too; ``total`` may be
    None when the count is not known in advance.
    """

    def __init__(self, total: int | None = None) -> None:
        self.total = total
        self.done = 0
        self.started = time.perf_counter()

    def __call__(self, label: str) -> None:
        self.done += 1
        of = f"/{self.total}" if self.total else ""
        took = time.perf_counter() - self.started
        err_console.print(f"  [{self.done}{of}] {label} ({took:.0f} s)", highlight=False)
