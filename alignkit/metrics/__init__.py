"""Pure metrics shared by several layers (no torch, no alignkit imports): rater agreement."""

from alignkit.metrics.agreement import fleiss_kappa, fleiss_observed_agreement, fleiss_p_i

__all__ = ["fleiss_kappa", "fleiss_observed_agreement", "fleiss_p_i"]
