"""The ``stellate`` command line (console script ``stellate``, and ``python -m stellate``).

Everything that parses arguments, prints to a terminal or installs signal handlers lives in
this package; the library modules it calls stay free of all three.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
