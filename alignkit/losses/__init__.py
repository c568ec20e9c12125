"""Pure loss functions: pairwise preference losses (DPO family) and F²C consistency losses (``alignkit.losses.f2c``)."""

from alignkit.losses.preference import cdpo_loss, dpo_loss, fdpo_loss, ipo_loss, rdpo_loss

__all__ = ["cdpo_loss", "dpo_loss", "fdpo_loss", "ipo_loss", "rdpo_loss"]
