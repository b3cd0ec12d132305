"""``python -m referee.lab ACTION``: the same as ``referee lab ACTION``."""

import sys

from referee.lab.cli import main

sys.exit(main())
