"""Figures written as small PNGs: the report ships dozens of them in the repository.

Line plots use few colours, so a 256-colour palette (Pillow's median cut, deterministic) keeps
them as they look at about 40% of the bytes of matplotlib's full-colour PNG.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image

COLOURS = 256


def save_png(fig: Figure, path: Path, dpi: int) -> Path:
    """Render `fig` at `dpi` and write it to `path` as a palette PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    with Image.open(buf) as image:
        image.convert("RGB").quantize(COLOURS).save(path, format="PNG", optimize=True)
    return path
