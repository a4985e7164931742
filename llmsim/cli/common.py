"""What every ``llmsim`` verb shares: the two consoles, the one-line error exit, and the
scenario argument and ``--set`` option."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmsim.errors import LlmsimError

if TYPE_CHECKING:  # the simulator and fitting code load when a command runs
    from llmsim.scenario import Scenario


class _Console(Console):
    """A rich console that ends the command as the standard Unix tools end when the reader
    of its pipe goes away (``llmsim run ... | head -2``): quietly, killed by SIGPIPE, where
    rich would exit with status 1."""

    def on_broken_pipe(self) -> None:
        if hasattr(signal, "SIGPIPE"):
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGPIPE)
        # Where there is no SIGPIPE: nothing left to flush at exit, and the status a shell
        # reports for one.
        os.dup2(os.open(os.devnull, os.O_WRONLY), self.file.fileno())
        raise SystemExit(141)


out_console = _Console()
err_console = _Console(stderr=True)


def print_table(table: Table) -> None:
    """Print ``table`` on stdout: on a terminal within its width, piped to a file or another
    program at the table's full width (no value cut or wrapped)."""
    console = out_console if out_console.is_terminal else _Console(width=10_000)
    console.print(table)


ScenarioArg = Annotated[Path, typer.Argument(help="Scenario YAML file.", show_default=False)]
JobsOpt = Annotated[
    int | None, typer.Option("--jobs", "-j", help="Runs at once (default: the CPUs).")
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


def progress_bar(counts: str, *, disable: bool = False) -> Progress:
    """A progress bar on stderr that goes away when done: the task's description, the bar,
    ``counts`` (the task's fields in rich's format, e.g. ``{task.completed}/{task.total}``) and
    the time elapsed."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn(counts),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=disable,
    )


def warn(text: str) -> None:
    """Print a warning about a result on stderr: as text, never as markup."""
    err_console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False)


def fail(exc: LlmsimError) -> typer.Exit:
    """Print a user error on one line; the caller raises the returned exit (code 2).

    The message is printed as text, never as markup, with line breaks and other control
    characters (which a bad value may carry) shown escaped, so it stays one line."""
    text = "".join(_CONTROL.get(c, c) for c in str(exc))
    err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


_CONTROL = {chr(i): repr(chr(i))[1:-1] for i in [*range(32), 127]}


def load(path: Path, overrides: list[str] | None) -> Scenario:
    from llmsim.scenario import load_scenario

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
