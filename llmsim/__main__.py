"""``python -m llmsim``: the command line, for environments where llmsim runs from a source
tree without being installed (``PYTHONPATH`` pointing at it)."""

from llmsim.cli import main

main()
