"""app_python3 script for referee inside an operator's native kamailio.cfg (the existing-mode drop-in).

No ``cfgengine``: the operator's cfg routes; its ``route[REFEREE]`` calls this object's methods with
``python_exec`` (see :mod:`referee.kemi.native`). Like ``referee_kemi.py`` it only bootstraps:
``#!define REFEREE_PYTHONPATH`` goes on ``sys.path`` when the package is not installed system-wide.
A package that cannot be imported or wrong defines make ``mod_init`` raise: Kamailio refuses to
start (and ``kamailio -c`` fails) rather than run without a REFER policy.
"""

import sys

import KSR  # type: ignore[import-not-found]  # provided by app_python3 inside Kamailio


def mod_init():  # type: ignore[no-untyped-def]
    value = KSR.kx.get_def("REFEREE_PYTHONPATH")
    extra = str(value).strip().strip('"') if value else ""
    if extra and extra not in sys.path:
        sys.path.insert(0, extra)
    from referee.kemi.native import make_native_hooks  # noqa: PLC0415 - importable only once sys.path is set

    return make_native_hooks(KSR)
