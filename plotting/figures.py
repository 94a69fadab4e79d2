"""Figures written as small PNGs: the report ships dozens of them in the repository.

Line plots use few colours, so a 256-colour palette (Pillow's fast octree, deterministic) keeps
them as they look at about a third of the bytes of matplotlib's full-colour PNG.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from PIL import Image

COLOURS = 256


def panel_grid(rows: int, cols: int, width: float, height: float, title: str) -> Figure:
    """A figure for rows x cols panels of `width` x `height` inches each, with fixed margins
    for tick labels, axis labels, each panel's title and the figure's `title` (one or two
    lines). Fixed margins, not a layout engine: constrained layout measures every tick label
    of every panel at each draw, which was most of the time the report spent on its curves."""
    left, right, bottom, wgap, hgap = 0.75, 0.2, 0.55, 0.8, 0.65
    top = 0.3 + 0.25 * (title.count("\n") + 1)
    w = left + right + cols * width + (cols - 1) * wgap
    h = bottom + top + rows * height + (rows - 1) * hgap
    fig = Figure(figsize=(w, h))
    fig.subplots_adjust(
        left=left / w,
        right=1 - right / w,
        bottom=bottom / h,
        top=1 - top / h,
        wspace=wgap / width,
        hspace=hgap / height,
    )
    fig.suptitle(title, y=1 - 0.12 / h, va="top")
    return fig


def panel_title(ax: Axes, text: str, **kwargs) -> None:
    """`text` as the title of `ax`, just above it. Placed, not left to matplotlib: to place a
    title itself, each draw measures the panel's tick labels (on a log axis, every minor tick
    too) to see whether the title clears them, which was a fifth of the time a report spent.
    The figures' ticks are below and left of their panels, so the title never meets them."""
    ax.set_title(text, y=1.0, **kwargs)


def log_scale(ax: Axes, *which: str, minor_labels: bool = False) -> None:
    """Log scales on `which` ("x", "y") of `ax`, with minor ticks at 2 and 5 times each power of
    ten: enough to read a decade by, and a quarter of matplotlib's eight per decade, each an
    object made and measured at every draw (they were most of the time a report spent drawing
    its curves). Labelled at powers of ten only, unless `minor_labels` (matplotlib then labels
    the minor ticks of an axis that spans too few decades to read otherwise)."""
    for name in which:
        getattr(ax, f"set_{name}scale")("log", subs=(2.0, 5.0))
        if not minor_labels:
            getattr(ax, f"{name}axis").set_minor_formatter(NullFormatter())


def save_png(fig: Figure, path: Path, dpi: int) -> Path:
    """Render `fig` at `dpi` and write it to `path` as a palette PNG. Agg's pixels go straight
    to Pillow (savefig would write a PNG only to have it read back), quantized by fast octree
    and deflated at zlib's default level: a third of the time median cut and the highest level
    took for the report's figures, and smaller files (docs/speed.md)."""
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    size = canvas.get_width_height(physical=True)
    image = Image.frombuffer("RGBA", size, canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    palette = image.convert("RGB").quantize(COLOURS, method=Image.Quantize.FASTOCTREE)
    palette.save(path, format="PNG", compress_level=6)
    return path
