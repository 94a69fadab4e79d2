"""Write an experiment's train/val/test splits as CSV files, with DESCRIPTION.md and the counts.

python -m grok.data EXPERIMENT.yaml --out DIR [--compress] [--set k=v ...]

One folder per distinct task setting of the grid, named by what varies in it; `--compress`
gzips each CSV (the same splits give the same bytes).
"""

from __future__ import annotations

import sys
from pathlib import Path

from grok.cli import Parser, fail
from grok.config import ConfigError
from grok.data import SPLITS, build_splits, write_splits
from grok.experiment import load_experiment, trial_name
from grok.overrides import with_values


def main(argv: list[str] | None = None) -> int:
    ap = Parser(description="Write the train/val/test splits of an experiment.")
    ap.add_argument("experiment", help="experiment YAML file")
    ap.add_argument("--out", required=True, help="folder for the split CSVs and DESCRIPTION.md")
    ap.add_argument("--compress", action="store_true", help="write <split>.csv.gz")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    try:
        exp = load_experiment(args.experiment, args.set)
        # distinct task settings across the grid, named by what varies in them
        task_keys = [k for k in exp.grid if k.startswith("task.")]
        tasks = {
            trial_name(values, default=""): with_values(exp.base, values).task
            for values in exp.combinations(task_keys)
        }
        made = [(label, task, build_splits(task)) for label, task in tasks.items()]
    except ConfigError as err:
        return fail(err)
    for label, task, splits in made:
        folder = Path(args.out) / label if label else Path(args.out)
        write_splits(task, splits, folder, args.compress)
        label = label or exp.name
        counts = ", ".join(f"{s} {len(splits[s])}" for s in SPLITS)
        print(f"{label}: {sum(len(s) for s in splits.values())} examples ({counts}) -> {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
