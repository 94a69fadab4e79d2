"""Speed benchmark: the project's training step against a plain reference loop, and Tune's cost.

    python -m benchmarks.bench [--steps N] [--device cpu|cuda] [--skip-tune] [--compile]
        [--out FILE]

Every figure comes from this one run, on this machine: compare ratios, not absolute rates, across
machines. The reference loop (benchmarks/reference.py) trains the same model and task the way the
popular plain-PyTorch reimplementation of the paper does. The whole-run comparison times the
project's Trainer through its `fit` hooks (a callback after every step, one at every evaluation)
and the calls of its `train_step`; nothing of the Trainer is replaced. The last lines: the step
alone, a 1e5-step run projected from the whole run's costs per step and per evaluation, the share
of the project's run spent outside its training steps, and the whole run end to end.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.progress_cost import measure_cost
from benchmarks.reference import REFERENCE_EVAL_EVERY, ReferenceLoop
from benchmarks.tune_cost import Row, tune_rows
from grok.cli import Parser
from grok.config import Config
from grok.overrides import apply_overrides
from grok.train import EvalEvent, Trainer, next_eval_step

PROJECTED_STEPS = 100_000  # the default budget, train.steps


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, n: int, device: torch.device) -> float:
    """Seconds per call of fn, over n calls."""
    sync(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - start) / n


def interleaved(fns: dict, n: int, rounds: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each fn, measured in alternating rounds (drift cancels)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(timed(fn, n, device))
    return {k: statistics.median(v) for k, v in times.items()}


def evals_in(cfg: Config, steps: int) -> int:
    """How many full evaluations the project's schedule makes in `steps` steps (no stop rule)."""
    cfg = apply_overrides(cfg, {"train.steps": steps}, "bench")
    step, count = 0, 1
    while step < steps:
        step = next_eval_step(cfg, step)
        count += 1
    return count


def paired_runs(cfg: Config, reference: ReferenceLoop) -> dict[str, float]:
    """A whole project run (its own evaluation schedule, snapshots and crossing refinement
    included) and the reference loop over the same steps (evaluating every 100), advanced in
    lockstep, one step of each in turn, so the machine's changing load falls on both alike.
    Seconds spent by each side, by the reference in its evaluations, by the project in its
    training steps (the calls of `train_step`) and in evaluation (from the end of the last step
    before an evaluation to the evaluation's callback)."""
    trainer = Trainer(cfg, reference.device)
    spent = dict.fromkeys(("reference", "reference_eval", "project_steps", "evaluation"), 0.0)
    last_step_end = time.perf_counter()
    step = trainer.train_step

    def timed_step() -> None:  # the Trainer's own step, its time recorded
        start = time.perf_counter()
        step()
        sync(reference.device)
        spent["project_steps"] += time.perf_counter() - start

    def after_step(t: Trainer) -> None:
        nonlocal last_step_end
        sync(reference.device)
        start = time.perf_counter()
        reference.train_step()
        if t.step % REFERENCE_EVAL_EVERY == 0:
            sync(reference.device)
            eval_start = time.perf_counter()
            reference.evaluate()
            sync(reference.device)
            spent["reference_eval"] += time.perf_counter() - eval_start
        sync(reference.device)
        last_step_end = time.perf_counter()
        spent["reference"] += last_step_end - start

    def on_eval(event: EvalEvent) -> None:
        sync(reference.device)
        spent["evaluation"] += time.perf_counter() - last_step_end

    trainer.train_step = timed_step
    start = last_step_end = time.perf_counter()
    trainer.fit(on_eval, after_step)
    sync(reference.device)
    spent["project"] = time.perf_counter() - start - spent["reference"]
    return spent


def matmul_rate(device: torch.device) -> float:
    """fp32 GFLOP/s of matrix products shaped like the model's (batch 512 x 4 tokens)."""
    a, w1 = torch.randn(2048, 128, device=device), torch.randn(128, 512, device=device)
    b, w2 = torch.randn(2048, 512, device=device), torch.randn(512, 128, device=device)
    seconds = min(timed(lambda: (a @ w1, b @ w2), 100, device) for _ in range(5))  # best of 5
    return 2 * 2 * 2048 * 128 * 512 / seconds / 1e9


def model_flops(
    cfg: Config,
    seq: int,
    answer_cols: int,
    vocab: int,
    batch: int,
    project: bool,
    prefix: tuple[int, int] = (0, 0),
) -> float:
    """FLOPs of one training step (forward + backward = 3 x forward) by counting the products
    each side computes: the project runs the first P positions once for each of the U distinct
    prefixes of the batch (`prefix` = (U, P); grok/model.py), its first block projects V x seq
    (token, position) pairs when that is fewer than the batch's rows, and its last block and
    head run at the answer columns only; the reference runs everything at every position."""
    m = cfg.model
    d, ff = m.d_model, m.d_ff
    shared, P = prefix if project else (0, 0)
    rest = seq - P  # positions computed for every row
    rows = batch * rest
    macs = 0
    for layer in range(m.n_layer):
        last = layer == m.n_layer - 1
        # The prefixes: keys and values for every block, the rest of the block but the last.
        macs += shared * P * (2 * d * d if last else 5 * d * d + d * d + 2 * d * ff + 2 * P * d)
        q = batch * (answer_cols if (project and last) else rest)
        if project and layer == 0 and batch > vocab:
            macs += vocab * rest * 3 * d * d  # q, k, v from the (token, position) table
        elif project and last:
            macs += rows * 2 * d * d + q * d * d  # k, v everywhere; q at the answers
        else:
            macs += rows * 3 * d * d
        macs += q * (d * d + 2 * d * ff)  # attention's projection, the MLP
        macs += 2 * q * seq * d  # scores and weighted values
    macs += batch * (answer_cols if project else seq) * d * vocab
    return 3 * 2 * macs


def compiled_step(cfg: Config, device: torch.device, trainer: Trainer, steps: int, rounds: int):
    """torch.compile'd model (CUDA graphs too, on a GPU): (compile seconds, its step, eager's)."""
    fast = Trainer(cfg, device)
    fast.model = torch.compile(
        fast.model, mode="reduce-overhead" if device.type == "cuda" else None
    )
    start = time.perf_counter()
    for _ in range(3):  # the first calls compile (and record graphs)
        fast.train_step()
    sync(device)
    compile_s = time.perf_counter() - start
    t = interleaved(
        {"compiled": fast.train_step, "eager": trainer.train_step}, steps, rounds, device
    )
    return compile_s, t["compiled"], t["eager"]


def machine(device: torch.device) -> str:
    """The machine in one line: CPU model and count, and the GPU when one is used."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} CPUs"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


def parse_args(argv: list[str] | None):
    ap = Parser(
        prog="python -m benchmarks.bench",
        description="Benchmark the training step against a plain reference loop.",
    )
    ap.add_argument("--steps", type=int, default=100, help="steps per timing round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--skip-tune", action="store_true", help="leave out the Ray Tune figures")
    ap.add_argument("--run-steps", type=int, default=2000, help="steps of the whole runs compared")
    ap.add_argument("--tune-steps", type=int, default=600, help="steps of each Tune trial")
    ap.add_argument(
        "--sharing", type=int, default=4, help="GPU: trials sharing one GPU (gpu: 1/N each)"
    )
    ap.add_argument(
        "--compile", action="store_true", help="also time a torch.compile'd step (slow to build)"
    )
    ap.add_argument(
        "--progress-cost",
        action="store_true",
        help="also time the progress measures (analysis.progress) against a default run",
    )
    ap.add_argument("--out", help="also write the table to this file, with the date and machine")
    args = ap.parse_args(argv)
    if args.sharing < 1:
        ap.error("--sharing must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no GPU is available here")
    return args


def step_rows(trainer: Trainer, args) -> tuple[list[Row], dict[str, float]]:
    """The training step and one evaluation, each alone, project and reference."""
    device = trainer.device
    reference = ReferenceLoop(trainer)
    for _ in range(10):  # warm up both
        trainer.train_step()
        reference.train_step()
    steps = {"project": trainer.train_step, "reference": reference.train_step}
    t = interleaved(steps, args.steps, args.rounds, device)
    t["project_eval"] = timed(trainer.evaluate, 3, device)
    t["reference_eval"] = timed(reference.evaluate, 3, device)
    rows = [
        (f"{who}: training step", f"{t[who] * 1e3:.1f} ms", f"{1 / t[who]:.1f} steps/s")
        for who in ("project", "reference")
    ]
    for who, what in (
        ("project", "one full evaluation"),
        ("reference", "one evaluation (train, held-out)"),
    ):
        seconds = t[f"{who}_eval"]
        rows.append((f"{who}: {what}", f"{seconds * 1e3:.0f} ms", f"{seconds / t[who]:.1f} steps"))
    return rows, t


def run_rows(trainer: Trainer, args) -> tuple[list[Row], dict[str, float]]:
    """A whole run each, evaluation included, long enough that the project's run memorizes and
    generalizes on the way (the refinement of its crossings is paid for too); and from its
    costs, per step and per evaluation, the projection to a run of PROJECTED_STEPS. The rows and
    the figures of the last lines."""
    cfg = trainer.cfg
    n = args.run_steps
    run_cfg = apply_overrides(cfg, {"train.steps": n}, "bench")
    run = paired_runs(run_cfg, ReferenceLoop(trainer))
    ref_evals = n // REFERENCE_EVAL_EVERY
    n_evals = evals_in(run_cfg, n)
    # Per step and per evaluation, as the run paid them; the project's per-evaluation cost holds
    # its crossings' refinement, spread over more evaluations in a longer run (so it is high).
    ref_step = (run["reference"] - run["reference_eval"]) / n
    ref_eval = run["reference_eval"] / max(1, ref_evals)
    proj_step = (run["project"] - run["evaluation"]) / n
    proj_eval = run["evaluation"] / n_evals
    big_cfg = apply_overrides(cfg, {"train.steps": PROJECTED_STEPS}, "bench")
    big_evals = evals_in(big_cfg, PROJECTED_STEPS)
    big_ref_evals = PROJECTED_STEPS // REFERENCE_EVAL_EVERY
    project_big = PROJECTED_STEPS * proj_step + big_evals * proj_eval
    reference_big = PROJECTED_STEPS * ref_step + big_ref_evals * ref_eval
    overhead = 1 - run["project_steps"] / run["project"]
    rows = [
        (
            f"project: a {n}-step run, evaluation included",
            f"{n / run['project']:.1f} steps/s",
            f"{n_evals} evaluations: {run['evaluation'] / run['project']:.1%} of its time; "
            f"all but training steps {overhead:.1%}",
        ),
        (
            f"reference: a {n}-step run, evaluating every {REFERENCE_EVAL_EVERY}",
            f"{n / run['reference']:.1f} steps/s",
            f"{ref_evals} evaluations: {run['reference_eval'] / run['reference']:.1%} of its "
            "time; run in lockstep with the project's",
        ),
        (
            f"project: a {PROJECTED_STEPS:,}-step run (projected)",
            f"{project_big / 3600:.2f} h",
            f"{big_evals} evaluations at {proj_eval * 1e3:.0f} ms, steps at "
            f"{proj_step * 1e3:.1f} ms",
        ),
        (
            f"reference: a {PROJECTED_STEPS:,}-step run (projected)",
            f"{reference_big / 3600:.2f} h",
            f"{big_ref_evals} evaluations at {ref_eval * 1e3:.0f} ms, steps at "
            f"{ref_step * 1e3:.1f} ms",
        ),
    ]
    figures = {
        "run": run["reference"] / run["project"],
        "projected": reference_big / project_big,
        "overhead": overhead,
    }
    return rows, figures


def flop_rows(trainer: Trainer, t: dict[str, float]) -> list[Row]:
    """The model's FLOP rate against the machine's matmul rate, project and reference."""
    rate = matmul_rate(trainer.device)
    train = trainer.splits["train"]
    shape = (train.x.shape[1], len(train.cols), trainer.tokenizer.vocab_size, trainer.batch_size)
    rows = [("fp32 matmul rate (model shapes)", f"{rate:.0f} GFLOP/s", "")]
    batch = train.x[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))]
    shared = trainer.model.shared_prefix(batch[: trainer.batch_size], trainer.cols["train"])
    prefix = (0, 0) if shared is None else tuple(shared[0].shape)
    for who in ("project", "reference"):
        flops = model_flops(trainer.cfg, *shape, project=who == "project", prefix=prefix)
        achieved = flops / t[who] / 1e9
        rows.append(
            (
                f"{who}: model FLOP rate",
                f"{achieved:.0f} GFLOP/s",
                f"{achieved / rate:.0%} of matmul, {flops / 1e9:.2f} GFLOP/step",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    trainer = Trainer(Config(), device)
    rows, t = step_rows(trainer, args)
    more, figures = run_rows(trainer, args)
    ratio = figures["run"]
    rows += more + flop_rows(trainer, t)
    if args.compile:
        compile_s, t_compiled, t_eager = compiled_step(
            trainer.cfg, device, trainer, args.steps, args.rounds
        )
        rows.append(
            (
                "project: torch.compile'd training step",
                f"{t_compiled * 1e3:.1f} ms",
                f"{t_eager / t_compiled:.2f}x eager ({t_eager * 1e3:.1f} ms); "
                f"{compile_s:.0f} s to compile",
            )
        )
    if not args.skip_tune:
        rows += tune_rows(args.tune_steps, device, args.sharing)
    if args.progress_cost:
        cost = measure_cost(repeats=args.rounds)
        rows.append(
            (
                "progress measures, share of a default run",
                f"{100 * cost['share_of_run']:.2f}%",
                f"{cost['measures'] * 1e3:.0f} ms at each of {cost['evaluations']} evaluations "
                f"of {cost['steps']:,} steps (1 thread)",
            )
        )
    width = max(len(r[0]) for r in rows)
    lines = [
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}: python -m benchmarks.bench "
        + " ".join(sys.argv[1:] if argv is None else argv),
        f"machine: {machine(device)}",
        f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"x/y mod 97, batch {trainer.batch_size}, model 2x128, 4 heads, d_ff 512",
    ]
    lines += [f"{name.ljust(width)}  {value:>16}  {note}".rstrip() for name, value, note in rows]
    lines += [
        f"project vs reference loop, training step alone: {t['reference'] / t['project']:.2f}x",
        f"project vs reference loop, a {PROJECTED_STEPS:,}-step run (projected): "
        f"{figures['projected']:.2f}x",
        f"project: evaluation and bookkeeping, share of its {args.run_steps}-step run: "
        f"{figures['overhead']:.1%}",
        f"project vs reference loop: {ratio:.2f}x",
    ]
    print("\n".join(lines))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0 if math.isfinite(ratio) else 1


if __name__ == "__main__":
    sys.exit(main())
