"""TEMPORARY alias of :mod:`alignkit.inference.prefix_scorer` (see this package's docstring)."""

import sys

import alignkit.inference.prefix_scorer as _module

sys.modules[__name__] = _module
