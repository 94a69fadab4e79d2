"""Copy a trained model's weights and config out of a sweep, checked, as a weights-only
checkpoint: a few MB that `infer.py` loads (no optimizer state, so not a resume point).

python -m grok.export results/division_grokking --trial seed=0 --out report/weights/division
python infer.py report/weights/division --prompt "1/14="
"""

from __future__ import annotations

import sys

from grok import storage
from grok.checkpoint import CheckpointError, export_weights
from grok.cli import Parser, fail
from grok.results import SelectionError, find_checkpoint


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m grok.export", description=__doc__.split("\n")[0])
    ap.add_argument(
        "path",
        help="a checkpoint folder, a run folder, or a sweep's results folder (a path or a URI)",
    )
    ap.add_argument("--out", required=True, help="the folder to write (replaced if a checkpoint)")
    ap.add_argument("--trial", help="sweeps: this trial instead of the best")
    ap.add_argument("--metric", help="sweeps: rank trials and checkpoints by this metric")
    ap.add_argument("--mode", choices=["max", "min"], help="default max for acc, else min")
    args = ap.parse_args(argv)
    try:
        found = find_checkpoint(storage.local_view(args.path), args.metric, args.mode, args.trial)
        storage.fetch(found.checkpoint)  # a mirror of a remote folder holds no tensors until asked
        out = export_weights(found.checkpoint, args.out)
    except (CheckpointError, SelectionError, storage.StorageError, OSError) as err:
        return fail(err)
    if found.note:
        print(found.note)
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"{found.checkpoint} -> {out} ({size:.1f} MB, weights only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
