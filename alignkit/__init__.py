"""alignkit: preference alignment that is robust to noisy and flipped labels.

Stages (one sub-package each): ``alignkit.data`` (the preference-record contract), ``alignkit.builders`` and
``alignkit.judges`` (datasets), ``alignkit.losses`` and ``alignkit.trainers`` (training), ``alignkit.evals``
(evaluation and reports), ``alignkit.models`` (model resolution, including the embedded default),
``alignkit.inference`` (generation and log-likelihood backends: vLLM, HF). Imports run one way, from the low layers
(utils, config, registry, resources, metrics → data → models/inference → losses/judges) up to builders, trainers,
evals, experiments, demo and cli; tests/test_layering.py checks it.
"""

__version__ = "0.1.0"
