"""The ``llmsim`` command line, one module per verb group.

- :mod:`llmsim.cli.run`: ``run`` and ``validate``
- :mod:`llmsim.cli.catalog`: ``hardware`` and ``models``
- :mod:`llmsim.cli.calibrate`: ``calibrate`` and ``profile``
- :mod:`llmsim.cli.fidelity` (with :mod:`llmsim.cli.serving`): ``fidelity``
- :mod:`llmsim.cli.sweep`: ``sweep``
- :mod:`llmsim.cli.check`: ``check``
- :mod:`llmsim.cli.plan`: ``plan``
"""

from __future__ import annotations

import typer

from llmsim.cli.calibrate import calibrate, profile
from llmsim.cli.catalog import hardware, models
from llmsim.cli.check import check
from llmsim.cli.fidelity import fidelity
from llmsim.cli.plan import plan
from llmsim.cli.run import run, validate
from llmsim.cli.sweep import sweep

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Simulate LLM serving: latency and throughput of models, GPUs and batching policies.",
)
for verb in (run, validate, sweep, check, plan, hardware, models, calibrate, fidelity, profile):
    app.command()(verb)


def main() -> None:  # pragma: no cover - entry point
    app()
