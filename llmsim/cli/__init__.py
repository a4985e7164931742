"""The ``llmsim`` command line, one module per verb group.

- :mod:`llmsim.cli.run`: ``run`` and ``validate``
- :mod:`llmsim.cli.catalog`: ``hardware``, ``models`` and ``presets``
- :mod:`llmsim.cli.calibrate`: ``calibrate`` and ``profile``
- :mod:`llmsim.cli.fidelity` (with :mod:`llmsim.cli.serving`): ``fidelity``
- :mod:`llmsim.cli.sweep`: ``sweep``
- :mod:`llmsim.cli.check`: ``check``
- :mod:`llmsim.cli.plan`: ``plan`` and ``recommend``
"""

from __future__ import annotations

import io
import os
import sys
from typing import Annotated

import typer

import llmsim
from llmsim.cli import common
from llmsim.cli.calibrate import calibrate, profile
from llmsim.cli.catalog import hardware, models, presets
from llmsim.cli.check import check
from llmsim.cli.fidelity import fidelity
from llmsim.cli.plan import plan, recommend
from llmsim.cli.run import run, validate
from llmsim.cli.sweep import sweep

app = typer.Typer(
    add_completion=False,
    rich_markup_mode="markdown",
    no_args_is_help=True,
)
for verb in (run, validate, sweep, check, plan, recommend, hardware, models, presets, calibrate,
             fidelity, profile):  # fmt: skip
    app.command()(verb)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmsim {llmsim.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Simulate LLM serving: latency and throughput of models, GPUs and batching policies.

    Start with: llmsim run scenarios/quickstart.yaml
    """


def main() -> None:  # pragma: no cover - entry point
    """The ``llmsim`` program: the typer app, made safe for narrow encodings, and quick to end.

    Output to a console whose encoding cannot show a character (``PYTHONIOENCODING=ascii``)
    shows a replacement character instead of failing; a closed pipe is handled by the
    consoles (:mod:`llmsim.cli.common`). Once ``run`` has written its files and summary, the
    process ends without the interpreter's teardown, which would free a large run's millions of
    objects one by one (seconds at a million requests): the files are complete and renamed into
    place, the output is flushed here, and the command leaves no threads, child processes or
    temporary folders behind. Any other ending (an error, another verb) takes the ordinary way
    out.
    """
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and not _is_utf(stream.encoding):
            stream.reconfigure(errors="replace")
    try:
        app(prog_name="llmsim")
    except SystemExit as done:
        if done.code not in (0, None) or not common.teardown_skippable():
            raise
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # a closed pipe: let the interpreter report it as usual
            raise done from None
        os._exit(0)


def _is_utf(encoding: str | None) -> bool:
    return (encoding or "").lower().replace("-", "").startswith("utf")
