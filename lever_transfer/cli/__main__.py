"""``python -m lever_transfer.cli``: what sweeps and tests start runs with."""

from . import main

main()
