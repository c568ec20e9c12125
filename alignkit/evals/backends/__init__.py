"""TEMPORARY: the old home of :mod:`alignkit.inference`, kept only while running processes may still import it.

Names here are the objects of ``alignkit.inference`` (each submodule file makes its old name an alias of the new
module), so nothing is duplicated. tests/test_layering.py lists this package as a shim to delete.
"""

from alignkit.inference import (  # noqa: F401
    BACKENDS, Backend, LoglikResult, ModelSpec, Prompt, SamplingConfig, adapter_fingerprint, default_backend,
    encode_pair, encode_prompt, get_backend, truncate_at_stop,
)
