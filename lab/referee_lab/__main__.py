"""``python -m referee_lab ACTION``: the same as ``referee lab ACTION``."""

import sys

from referee_lab.cli import main

sys.exit(main())
