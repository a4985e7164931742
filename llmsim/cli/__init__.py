"""The ``llmsim`` command line, one module per verb group.

- :mod:`llmsim.cli.run`: ``run`` and ``validate``
- :mod:`llmsim.cli.catalog`: ``hardware`` and ``models``
- :mod:`llmsim.cli.calibrate`: ``calibrate`` and ``profile``
- :mod:`llmsim.cli.fidelity` (with :mod:`llmsim.cli.serving`): ``fidelity``
"""

from __future__ import annotations

import io
import sys

import typer

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


def main() -> None:
    """The ``llmsim`` command: the typer app, made safe for narrow encodings.

    Output to a console whose encoding cannot show a character (``PYTHONIOENCODING=ascii``)
    shows a replacement character instead of failing. (A closed pipe is handled by the
    consoles: see :mod:`llmsim.cli.common`.)
    """
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and not _is_utf(stream.encoding):
            stream.reconfigure(errors="replace")
    app(prog_name="llmsim")


def _is_utf(encoding: str | None) -> bool:
    return (encoding or "").lower().replace("-", "").startswith("utf")
