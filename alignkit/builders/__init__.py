"""Dataset builders: factuality labelling, hallucinated variants, the F-DPO mix, the grounded-QA fact world.

Each builder is a module with a typed config dataclass and a ``main(config: dict, *, progress=True) -> dict``
entry point registered in :data:`alignkit.builders.cli.BUILDERS` (``alignkit build NAME --config FILE.yaml``).
"""
