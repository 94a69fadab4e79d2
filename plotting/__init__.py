"""Figures, tables and the report, read from Ray Tune result folders with pandas (no Ray needed)."""
