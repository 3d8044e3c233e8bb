"""The ``lever-transfer`` command line, one module per command group: ``runs`` (train, resume,
pretrain, finetune, sweep, tasks, recipes, flops), ``data`` (collect, pretrain-offline),
``measure`` (eval, probe, report, benchmark) and ``zoo``; ``common`` holds the group, the shared
options and the one-line errors.

Every user mistake surfaces as one line, ``error: ...`` (exit status 2), that says how to fix it;
tracebacks are for bugs. Commands import what they run inside their bodies, so ``--help`` stays
fast (no torch).
"""

from . import data, measure, runs, zoo  # noqa: F401  (each registers its commands on main)
from .common import main

__all__ = ["main"]
