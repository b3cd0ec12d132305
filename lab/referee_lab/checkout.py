"""Where the referee checkout is: the lab runs the checkout's playbooks and scenario folders.

The lab is installed (editable) from a checkout only; it finds the checkout from its own location by
looking for the files it needs, not by counting parent directories, and ``REFEREE_CHECKOUT`` overrides.
"""

from __future__ import annotations

import os
from pathlib import Path

MARKERS = ("ansible/site.yml", "tests/scenarios")


class NoCheckout(RuntimeError):
    pass


def is_checkout(path: Path) -> bool:
    return all((path / marker).exists() for marker in MARKERS)


def root(start: Path | None = None) -> Path:
    """The checkout holding ``start`` (default: this package), or ``$REFEREE_CHECKOUT``."""
    override = os.environ.get("REFEREE_CHECKOUT")
    if override:
        path = Path(override).resolve()
        if not is_checkout(path):
            raise NoCheckout(
                f"REFEREE_CHECKOUT={override} is not a referee checkout (no {' or '.join(MARKERS)})"
            )
        return path
    here = (start or Path(__file__)).resolve()
    for candidate in (here, *here.parents):
        if is_checkout(candidate):
            return candidate
    raise NoCheckout(
        f"the lab runs from a referee checkout, and none holds {here}; set REFEREE_CHECKOUT to one"
    )
