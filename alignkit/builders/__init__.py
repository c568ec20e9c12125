"""Dataset builders: factuality labelling, hallucinated variants, the F-DPO mix, the grounded-QA fact world.

Registry contract — adding a builder is one line in :data:`BUILDERS`, ``"name": "module.path:function"``:

- the function is called as ``function(config: dict, *, progress: bool = True) -> dict``;
- ``config`` is the YAML file's mapping, with ``--set key=value`` overrides applied on top (values parsed as YAML,
  dotted keys reach into nested mappings) and ``--output``/``--seed`` shorthands (``alignkit build NAME --config
  FILE.yaml``, :mod:`alignkit.cli.build`);
- the function validates the dict itself (a config dataclass with ``help`` metadata, read with
  :func:`alignkit.builders.common.config_from_dict`, i.e. :func:`alignkit.config.load_config`), writes its outputs
  atomically with a dataset card beside them, and returns a small JSON-serialisable summary that the CLI prints;
- bad input raises ``DataError`` (file, line, field) or ``ValueError``; the CLI prints it and exits 1.

A module may also expose ``CONFIG_CLASS`` (its dataclass) so that ``--show-config`` can list its fields.
"""

from alignkit.registry import Registry

BUILDERS = Registry("builder", {
    "factworld": "alignkit.builders.factworld:main",
    "factuality": "alignkit.builders.factuality:main",
    "hallucinate": "alignkit.builders.hallucinate:main",
    "fdpo-mix": "alignkit.builders.fdpo_mix:main",
    "consistency": "alignkit.builders.consistency:main",
    "truthfulqa-pairs": "alignkit.builders.truthfulqa:main",
    "icl": "alignkit.builders.icl:main",
    "sycophancy": "alignkit.builders.sycophancy:main",
})
BUILDER_TARGETS = BUILDERS.targets()  # name -> "module:function" (no import)


def resolve(name: str):
    """The entry function of builder ``name`` (imported now)."""
    return BUILDERS[name]


def config_class(name: str) -> type | None:
    """The ``CONFIG_CLASS`` of builder ``name``'s module, if it declares one."""
    import importlib

    return getattr(importlib.import_module(BUILDERS.target(name).split(":")[0]), "CONFIG_CLASS", None)
