"""The ``llmsim`` command line, one module per verb group.

- :mod:`llmsim.cli.run`: ``run`` and ``validate``
- :mod:`llmsim.cli.catalog`: ``hardware`` and ``models``
- :mod:`llmsim.cli.calibrate`: ``calibrate`` and ``profile``
- :mod:`llmsim.cli.fidelity` (with :mod:`llmsim.cli.serving`): ``fidelity``
"""

from __future__ import annotations

import os
import sys

import typer

from llmsim.cli import common
from llmsim.cli.calibrate import calibrate, profile
from llmsim.cli.catalog import hardware, models
from llmsim.cli.fidelity import fidelity
from llmsim.cli.run import run, validate

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Simulate LLM serving: latency and throughput of models, GPUs and batching policies.",
)
for verb in (run, validate, hardware, models, calibrate, fidelity, profile):
    app.command()(verb)


def main() -> None:  # pragma: no cover - entry point
    """The ``llmsim`` program. Once ``run`` has written its files and summary, the process ends
    without the interpreter's teardown, which would free a large run's millions of objects one
    by one (seconds at a million requests): the files are complete and renamed into place, the
    output is flushed here, and the command leaves no threads, child processes or temporary
    folders behind. Any other ending (an error, another verb) takes the ordinary way out."""
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
