"""alignkit: preference alignment that is robust to noisy and flipped labels.

Stages (one sub-package each): ``alignkit.data`` (the preference-record contract), ``alignkit.builders`` and
``alignkit.judges`` (datasets), ``alignkit.losses`` and ``alignkit.trainers`` (training), ``alignkit.evals``
(evaluation and reports), ``alignkit.models`` (model resolution, including the embedded default).
"""

__version__ = "0.1.0"
