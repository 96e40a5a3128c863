"""The gateway's authorization decisions: who may call what, and what they may read back."""
