"""The transfer policy engine: one policy file, compiled once, deciding every REFER.

Pure and stdlib-only, like :mod:`referee.sip`: Kamailio's embedded python3, the AGI
scripts and the orchestrator all import it. A decision does no I/O and compiles nothing.
"""

from referee.policy.engine import Policy
from referee.policy.loader import load_policy, parse_policy
from referee.policy.model import Decision, Dialog, PolicyError, TraceStep

__all__ = ["Decision", "Dialog", "Policy", "PolicyError", "TraceStep", "load_policy", "parse_policy"]
