"""Train one config of an experiment file without Ray: metrics.csv and a checkpoint in a folder.

python -m grok.train EXPERIMENT.yaml [--set k=v ...] [--trial NAME|INDEX] [--out DIR] [--resume]

The Trainer (grok/train.py) runs with `RunWriter` as its callback; the grid point is chosen with
`--trial` when the file has several.
"""

from __future__ import annotations

import csv
import itertools
import logging
import sys
from pathlib import Path

from grok.checkpoint import CheckpointError
from grok.cli import Parser, add_experiment, fail, full_disk, pipe_safe, resume_command
from grok.config import Config
from grok.display import ProgressDisplay
from grok.experiment import Experiment, load_experiment, trial_name
from grok.overrides import dump_config
from grok.schema import ConfigError, shown
from grok.train import EvalEvent, Trainer


def pick_trial(exp: Experiment, which: str | None) -> tuple[str, Config]:
    """The one config of an experiment file to run alone: the only grid point, or the named one
    (the grid is walked point by point, never built whole)."""
    n = exp.num_points
    first = next(exp.points())
    if which is None:
        if n > 1:
            raise ConfigError(
                f"{exp.source}: the grid has {n} points; choose one with --trial "
                f"(a name such as {trial_name(first)!r} or an index 0..{n - 1}), "
                "or run the whole grid with tune_main.py"
            )
        return trial_name(first), exp.config(first)
    if which.isdigit() and int(which) < n:
        point = exp.point(int(which))
        return trial_name(point), exp.config(point)
    for point in exp.points():
        if trial_name(point) == which:
            return which, exp.config(point)
    names = [trial_name(p) for p in itertools.islice(exp.points(), 5)]
    more = f", ... ({n} in all)" if n > len(names) else ""
    raise ConfigError(
        f"--trial {shown(which)}: not in the grid; allowed: {', '.join(names)}{more} or an index"
    )


class RunWriter:
    """The callback of a run without Ray: metrics.csv, the latest checkpoint under out/, and
    the progress shown."""

    def __init__(self, out: Path, resumed_at: int | None = None):
        self.out = out
        self.csv_path = out / "metrics.csv"
        self.fields: list[str] | None = None
        self.progress = ProgressDisplay()  # a bar on a terminal, plain lines in a log
        if resumed_at is not None and self.csv_path.exists():
            # Rows after the checkpoint (an interrupt or a full disk came before the next one)
            # are made again by the resumed run: one row per evaluation.
            with open(self.csv_path, newline="") as f:
                rows = list(csv.reader(f))
            self.fields = rows[0] if rows else None
            kept = [r for r in rows[1:] if r and int(float(r[0])) <= resumed_at]
            with open(self.csv_path, "w", newline="") as f:
                csv.writer(f).writerows(rows[:1] + kept)

    def __call__(self, event: EvalEvent) -> None:
        m = event.metrics
        if self.fields is None:
            self.fields = list(m)
            with open(self.csv_path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        with open(self.csv_path, "a", newline="") as f:
            csv.writer(f).writerow(["" if m.get(k) is None else m.get(k) for k in self.fields])
        if event.checkpoint_due:
            event.save(self.out / "checkpoint")
        self.progress.update(event.step, m, event.trainer.cfg.train.steps, event.final)


@pipe_safe
def main(argv: list[str] | None = None) -> int:
    ap = Parser(description="Train one config of an experiment file, without Ray.")
    add_experiment(ap, "experiment YAML file", "")
    ap.add_argument("--trial", help="grid point to run (name or index) when the grid has several")
    ap.add_argument("--out", help="output folder (default runs/<name>[/<trial>])")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        exp = load_experiment(args.experiment, args.set)
        name, cfg = pick_trial(exp, args.trial)
        out = (
            Path(args.out)
            if args.out
            else Path("runs") / exp.name / (name if exp.num_points > 1 else "")
        )
        if not args.resume and (out / "checkpoint").exists():
            raise ConfigError(
                f"{out}: holds an earlier run; pass --resume to continue it, "
                "or choose another --out"
            )
        trainer = Trainer(cfg)
        if args.resume:
            if not (out / "checkpoint").exists():
                raise ConfigError(f"--resume: {out}/checkpoint does not exist")
            trainer.load_checkpoint(out / "checkpoint")
    except (ConfigError, CheckpointError) as err:
        return fail(err)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(cfg))
    if exp.search:
        print(f"{exp.name}: the search section is for tune_main.py; this runs its base config")
    print(
        f"{exp.name}: {sum(p.numel() for p in trainer.model.parameters())} parameters, "
        f"{len(trainer.splits['train'])} training examples, batch {trainer.batch_size}, "
        f"device {trainer.device}; writing to {out}"
    )
    words = argv if argv is not None else sys.argv[1:]
    extra = () if args.out else ("--out", str(out))
    again = "continue with: " + resume_command(["python", "-m", "grok.train"], words, *extra)
    try:
        final = trainer.fit(RunWriter(out, trainer.step if args.resume else None))
    except KeyboardInterrupt:
        print(f"interrupted at step {trainer.step}; {again}", file=sys.stderr)
        return 130
    except OSError as err:
        return full_disk(out, err, again)
    print(
        f"done: {final.get('status', trainer.status)} at step {trainer.step}; "
        f"test acc 99% at step {final.get('grok/test_acc_99_step')}; "
        f"checkpoint {out / 'checkpoint'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
