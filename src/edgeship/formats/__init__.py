"""Neutral helpers per file format, used by sources, quant, analysis and targets alike (they know
no target and no stage)."""
