"""``python -m pathcond``: the command line (also what ``torchrun ... -m pathcond train``
runs in every process)."""

from .cli import main

main()
