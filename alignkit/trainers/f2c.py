"""Retired path (issue 12): ``alignkit.trainers.f2c_config``, ``f2c_trainer``, ``data`` and ``alignkit.losses.f2c``.
An alias kept while long-running processes may import it; nothing in the repository imports it
(tests/test_layering.py)."""

from alignkit.losses.f2c import (  # noqa: F401
                                 ClassQuota,
                                 F2CControls,
                                 answer_logprobs,
                                 cce_loss,
                                 class_shares,
                                 consensus_controls,
                                 f2c_batch_loss,
                                 format_jsd,
                                 sequence_scores,
                                 teacher_student_kl,
)
from alignkit.trainers.data import consistency_dev_split as _dev_set  # noqa: F401
from alignkit.trainers.data import load_consistency_set  # noqa: F401
from alignkit.trainers.f2c_config import CLASS_BALANCE, F2CConfig  # noqa: F401
from alignkit.trainers.f2c_trainer import (  # noqa: F401
                                 CONFIG_CLASS,
                                 DevLossEarlyStopping,
                                 F2CCollator,
                                 F2CTrainer,
                                 answer_forward,
                                 run,
)
