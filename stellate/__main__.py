"""``python -m stellate``: the ``stellate`` command."""

import sys

from .cli import main

sys.exit(main())
