"""cross_entropy and nll_loss (forward, backward, fused)."""

from __future__ import annotations

__all__: list[str] = []
