"""The command lines that the package installs (grok-sweep, grok-infer); `tune_main.py` and
`infer.py` at the repository root run the same code."""
