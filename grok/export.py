"""Copy a trained model's weights and config out of a sweep, checked, as a weights-only
checkpoint: a few MB that `infer.py` loads (no optimizer state, so not a resume point); or as a
folder that TransformerLens opens (`--format transformer-lens`, grok/lens.py).

python -m grok.export results/division_grokking --trial seed=0 --out report/weights/division
python infer.py report/weights/division --prompt "1/14="
python -m grok.export report/weights/division --format transformer-lens --out lens/division

In a notebook: `model = load_transformer_lens("lens/division")`, a HookedTransformer
(docs/interp.md).
"""

from __future__ import annotations

import sys

from grok import storage
from grok.checkpoint import CheckpointError, export_weights
from grok.cli import Parser, fail
from grok.lens import MappingError, export_transformer_lens, load_transformer_lens
from grok.results import SelectionError, find_checkpoint

__all__ = ["export_transformer_lens", "load_transformer_lens", "main"]


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m grok.export", description=__doc__.split("\n")[0])
    ap.add_argument(
        "path",
        help="a checkpoint folder, a run folder, or a sweep's results folder (a path or a URI)",
    )
    ap.add_argument("--out", required=True, help="the folder to write (replaced if a checkpoint)")
    ap.add_argument(
        "--format",
        choices=["checkpoint", "transformer-lens"],
        default="checkpoint",
        help="a weights-only checkpoint (default), or TransformerLens's HookedTransformer config "
        "and weights",
    )
    ap.add_argument("--trial", help="sweeps: this trial instead of the best")
    ap.add_argument("--metric", help="sweeps: rank trials and checkpoints by this metric")
    ap.add_argument("--mode", choices=["max", "min"], help="default max for acc, else min")
    args = ap.parse_args(argv)
    try:
        found = find_checkpoint(storage.local_view(args.path), args.metric, args.mode, args.trial)
        storage.fetch(found.checkpoint)  # a mirror of a remote folder holds no tensors until asked
        if args.format == "transformer-lens":
            out, what = export_transformer_lens(found.checkpoint, args.out), "TransformerLens"
        else:
            out, what = export_weights(found.checkpoint, args.out), "weights only"
    except (CheckpointError, MappingError, SelectionError, storage.StorageError, OSError) as err:
        return fail(err)
    if found.note:
        print(found.note)
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"{found.checkpoint} -> {out} ({size:.1f} MB, {what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
