"""Complete a prompt, or measure greedy accuracy, with a trained model: `python infer.py PATH
--prompt TEXT`, the same command as `grok-infer` once the package is installed (the code:
grok/commands/infer.py).
"""

from __future__ import annotations

import sys

from grok.commands.infer import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
