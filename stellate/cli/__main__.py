"""``python -m stellate.cli``: the ``stellate`` command."""

import sys

from .main import main

sys.exit(main())
