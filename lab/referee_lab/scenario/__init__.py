"""The lab's scenarios (tests/scenarios/): SIPp phones against the running lab, judged by check plug-ins.

- :mod:`~referee_lab.scenario.model`: ``scenario.toml`` loaded (the phones; the checks its tables choose);
- :mod:`~referee_lab.scenario.runner`: one run (registration, phones, checks, capture, ladder);
- :mod:`~referee_lab.scenario.sipp`, :mod:`~referee_lab.scenario.capture`: the SIPp and tcpdump processes;
- :mod:`~referee_lab.scenario.proxy_log`: the proxy's event file, read back as :mod:`referee.events`;
- :mod:`~referee_lab.scenario.checks`: ``sip``, ``ami``, ``audit``, ``operator``, one module each.

docs/lab.md is the reference of ``scenario.toml``.
"""

from referee_lab.scenario.model import SCENARIOS_DIR, PhoneSpec, Scenario, discover, load
from referee_lab.scenario.runner import RUNS_DIR, PhoneResult, ScenarioResult, run

__all__ = [
    "RUNS_DIR",
    "SCENARIOS_DIR",
    "PhoneResult",
    "PhoneSpec",
    "Scenario",
    "ScenarioResult",
    "discover",
    "load",
    "run",
]
