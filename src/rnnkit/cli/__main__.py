"""``python -m rnnkit.cli`` = ``python -m rnnkit`` = the ``rnnkit`` command."""

import sys

from rnnkit.cli import console

sys.exit(console())
