"""What the library says: the ``lever_transfer`` logger, silent unless logging is configured
(the CLI shows it on stderr). ``Say`` is how long-running functions take their messages' sink."""

from __future__ import annotations

import logging
from typing import Callable

Say = Callable[[str], None]
log = logging.getLogger("lever_transfer")


def info(message: str) -> None:
    """The library's default ``say``: the ``lever_transfer`` logger at INFO."""
    log.info(message)
