#!/usr/bin/python3
"""Process AGI transfer guard: ``AGI(referee_transfer_guard.py,?QUERY)`` in the transfer context.

The fallback for the FastAGI guard (``referee fastagi``): same policy, same answer, one process per
call. It needs only the referee package importable by /usr/bin/python3 (the standard library does
the rest: no pyst2); the policy file is $REFEREE_POLICY, else /etc/referee/policy.toml.
"""

import sys

from referee.agi.process import main

if __name__ == "__main__":
    sys.exit(main())
