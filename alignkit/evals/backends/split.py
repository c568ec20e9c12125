"""TEMPORARY alias of :mod:`alignkit.inference.split` (see this package's docstring)."""

import sys

import alignkit.inference.split as _module

sys.modules[__name__] = _module
