"""binary_cross_entropy and binary_cross_entropy_with_logits (forward, backward, fused)."""

from __future__ import annotations

__all__: list[str] = []
