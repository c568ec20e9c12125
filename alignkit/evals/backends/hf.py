"""TEMPORARY alias of :mod:`alignkit.inference.hf` (see this package's docstring)."""

import sys

import alignkit.inference.hf as _module

sys.modules[__name__] = _module
