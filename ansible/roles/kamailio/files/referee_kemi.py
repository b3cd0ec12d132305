"""Kamailio KEMI entry script for referee, loaded by app_python3 (``cfgengine "python"``).

It only bootstraps: puts the referee package on ``sys.path`` (from ``#!define
REFEREE_PYTHONPATH`` when the package is not installed system-wide) and returns the
handler built by :func:`referee.kemi.make_handler`. All logic lives in ``referee.kemi``.

If the package cannot be imported or the defines are wrong, ``mod_init`` raises: Kamailio
logs the traceback and refuses to start, rather than run a proxy without a REFER policy.
"""

import sys

import KSR  # type: ignore[import-not-found]  # provided by app_python3 inside Kamailio


def _pythonpath() -> str:
    value = KSR.kx.get_def("REFEREE_PYTHONPATH")
    return str(value).strip().strip('"') if value else ""


def mod_init():  # type: ignore[no-untyped-def]
    extra = _pythonpath()
    if extra and extra not in sys.path:
        sys.path.insert(0, extra)
    from referee.kemi import make_handler  # noqa: PLC0415 - importable only once sys.path is set

    return make_handler(KSR)
