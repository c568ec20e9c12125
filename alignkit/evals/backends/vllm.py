"""TEMPORARY alias of :mod:`alignkit.inference.vllm` (see this package's docstring)."""

import sys

import alignkit.inference.vllm as _module

sys.modules[__name__] = _module
