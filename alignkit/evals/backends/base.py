"""TEMPORARY alias of :mod:`alignkit.inference.base` (see this package's docstring)."""

import sys

import alignkit.inference.base as _module

sys.modules[__name__] = _module
