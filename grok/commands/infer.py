"""Complete a prompt, or measure greedy accuracy, with a trained model.

`grok-infer` once installed, `python infer.py` in a clone:

python infer.py CHECKPOINT_DIR --prompt "12/5="
python infer.py runs/sanity_memorize --prompt ""          # a run folder: its checkpoint
python infer.py results/quickstart --prompt "12/5="       # a sweep: its best trial
python infer.py runs/s5 --prompt "10234.02134="           # any operation (docs/operations.md)
python infer.py CHECKPOINT_DIR --eval
"""

from __future__ import annotations

import math
import sys

from grok import storage
from grok.checkpoint import CheckpointError, load_model
from grok.cli import Parser, fail, pipe_safe
from grok.config import ConfigError
from grok.inference import complete, evaluate_splits, outside_training
from grok.results import SelectionError, find_checkpoint
from grok.schema import shown


@pipe_safe
def main(argv: list[str] | None = None) -> int:
    ap = Parser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "path",
        help="a checkpoint folder, a run folder, or a sweep's results folder (a path or a URI)",
    )
    ap.add_argument(
        "--prompt",
        action="append",
        default=[],
        help="text to complete, e.g. '12/5=' (repeatable; '' for the empty prompt)",
    )
    ap.add_argument("--eval", action="store_true", help="greedy exact-match accuracy per split")
    ap.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed when temperature > 0")
    ap.add_argument(
        "--metric",
        help="sweeps: pick the trial best in this (default: what the sweep ranked its "
        "checkpoints by: val/acc, or train/acc when it had no val split)",
    )
    ap.add_argument("--mode", choices=["max", "min"], help="sweeps: default max for acc, else min")
    ap.add_argument("--trial", help="sweeps: use this trial instead of the best")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if not args.prompt and not args.eval:
        ap.error("give --prompt TEXT and/or --eval")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        ap.error("--temperature must be a number >= 0")
    try:
        found = find_checkpoint(storage.local_view(args.path), args.metric, args.mode, args.trial)
        if found.note:
            print(found.note)
        storage.fetch(found.checkpoint)  # a mirror of a remote folder holds no tensors until asked
        model, cfg = load_model(found.checkpoint, args.device)
        completions = complete(model, cfg, args.prompt, args.temperature, args.seed)
    except (CheckpointError, SelectionError, ConfigError, ValueError, OSError) as err:
        return fail(err)
    for prompt, answer in zip(args.prompt, completions):
        why = outside_training(cfg, prompt)
        if why:
            note = f"note: {shown(prompt, 80)} is outside the training distribution ({why})"
            print(note, file=sys.stderr)
        print(prompt + answer)
    if args.eval:
        for split, acc in evaluate_splits(model, cfg).items():
            print(f"{split}: exact match {acc:.4f}" if acc == acc else f"{split}: empty")
    return 0


if __name__ == "__main__":
    sys.exit(main())
