"""Speed benchmark: the project's training step against a plain reference loop, and Tune's cost.

    python -m grok.bench [--steps N] [--device cpu|cuda] [--skip-tune] [--compile] [--out FILE]

Every figure comes from this one run, on this machine: compare ratios, not absolute rates, across
machines. The reference loop is a straightforward implementation of the same model
(nn.MultiheadAttention, logits at every position, evaluation of the full train and test splits
every 100 steps, torch.optim.AdamW's defaults).
"""

from __future__ import annotations

import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from grok.cli import Parser
from grok.config import Config, apply_overrides
from grok.train import Trainer, next_eval_step

REFERENCE_EVAL_EVERY = 100


class ReferenceModel(nn.Module):
    """The same transformer written the plain way: full-sequence logits, nn.MultiheadAttention."""

    def __init__(
        self,
        vocab: int,
        d: int = 128,
        heads: int = 4,
        ff: int = 512,
        layers: int = 2,
        max_len: int = 64,
    ):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        self.ln1 = nn.ModuleList(nn.LayerNorm(d) for _ in range(layers))
        self.attn = nn.ModuleList(
            nn.MultiheadAttention(d, heads, batch_first=True) for _ in range(layers)
        )
        self.ln2 = nn.ModuleList(nn.LayerNorm(d) for _ in range(layers))
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d)) for _ in range(layers)
        )
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(T, device=idx.device))
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=idx.device), 1)
        for ln1, attn, ln2, mlp in zip(self.ln1, self.attn, self.ln2, self.mlp):
            h = ln1(x)
            x = x + attn(h, h, h, attn_mask=mask, need_weights=False)[0]
            x = x + mlp(ln2(x))
        return self.head(self.ln_f(x))  # (B, T, V): every position


class ReferenceLoop:
    def __init__(self, trainer: Trainer):
        torch.manual_seed(0)
        self.device = trainer.device
        self.train = trainer.splits["train"]
        self.test = trainer.splits["test"]
        self.batch = trainer.batch_size
        self.model = ReferenceModel(trainer.tokenizer.vocab_size).to(self.device)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=1.0
        )

    def _loss(self, x, y):
        logits = self.model(x)[:, -1]  # the answer position (number-level: one token)
        return F.cross_entropy(logits, y[:, -1]), logits

    def train_step(self) -> None:
        rows = torch.randint(len(self.train), (self.batch,), device=self.device)
        loss, _ = self._loss(self.train.x[rows], self.train.y[rows])
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    @torch.no_grad()
    def evaluate(self) -> None:
        for split in (self.train, self.test):
            _, logits = self._loss(split.x, split.y)
            (logits.argmax(-1) == split.y[:, -1]).float().mean().item()


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
    """A whole project run (its evaluation schedule included) and the reference loop over the
    same steps (evaluating every 100), advanced in lockstep, one step of each in turn, so the
    machine's changing load falls on both alike. Seconds spent by each, and in evaluation."""
    trainer = Trainer(cfg, reference.device)
    spent = {"reference": 0.0, "evaluation": 0.0}
    train_step, evaluate_split = trainer.train_step, trainer.evaluate_split

    def step_both():
        train_step()
        sync(reference.device)
        start = time.perf_counter()
        reference.train_step()
        if trainer.step % REFERENCE_EVAL_EVERY == 0:
            reference.evaluate()
        sync(reference.device)
        spent["reference"] += time.perf_counter() - start

    def timed_split(name):
        start = time.perf_counter()
        out = evaluate_split(name)
        spent["evaluation"] += time.perf_counter() - start
        return out

    trainer.train_step, trainer.evaluate_split = step_both, timed_split
    start = time.perf_counter()
    trainer.fit()
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
    cfg: Config, seq: int, answer_cols: int, vocab: int, batch: int, project: bool
) -> float:
    """FLOPs of one training step (forward + backward = 3 x forward) by counting products."""
    m = cfg.model
    d, ff = m.d_model, m.d_ff
    macs = 0
    for layer in range(m.n_layer):
        last = layer == m.n_layer - 1
        q = answer_cols if (project and last) else seq
        macs += seq * 2 * d * d + q * (2 * d * d + 2 * d * ff)  # kv; q, proj, mlp
        macs += 2 * q * seq * d  # scores and weighted values
    macs += (answer_cols if project else seq) * d * vocab
    return 3 * 2 * macs * batch


def peak_rss_mb(cfg_overrides: list[str], steps: int) -> float:
    """Peak resident memory of a bare trial process training `steps` steps."""
    code = (
        "import sys; from grok.config import Config, apply_overrides; from grok.train import "
        "Trainer; cfg = apply_overrides(Config(), dict(a.split('=', 1) for a in sys.argv[1:]), "
        "'bench'); Trainer(cfg, 'cpu').fit()"
    )
    args = [f"train.steps={steps}", "train.threads=1", *cfg_overrides]
    subprocess.run(
        [sys.executable, "-c", code, *args], check=True, cwd=Path(__file__).resolve().parents[1]
    )
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def tune_figures(steps: int, device: torch.device, sharing: int) -> dict[str, float]:
    """Tune's overhead on one trial; on a CPU, 2 x 1-CPU trials against 1 x 2-CPU trial; on a
    GPU, `sharing` trials with 1/sharing of the GPU each against 1 trial with all of it."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import tune

    from grok.tune import train_trial

    cuda = device.type == "cuda"
    base = apply_overrides(
        Config(),
        {"train.steps": steps, "train.checkpoint_every": steps, "train.device": device.type},
        "bench",
    )
    ray.init(
        address="local",
        num_cpus=max(2, sharing) if cuda else 2,
        num_gpus=1 if cuda else 0,
        include_dashboard=False,
        log_to_driver=False,
    )

    def sweep(seeds: list[int], cpus: int, storage: str, gpus: float = 0) -> tuple[float, float]:
        """Steps/s of the whole sweep (trial start included), and the first trial's steady
        rate: from its step-0 report to its last, as Tune timed them."""
        trainable = tune.with_resources(
            tune.with_parameters(train_trial, base=base.to_dict()), {"cpu": cpus, "gpu": gpus}
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"seed": tune.grid_search(seeds)},
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        start = time.perf_counter()
        grid = tuner.fit()
        wall = time.perf_counter() - start
        if grid.errors:
            raise RuntimeError(f"benchmark trial failed: {grid.errors[0]}")
        df = grid[0].metrics_dataframe
        steady = (df["step"].iloc[-1] - df["step"].iloc[0]) / (
            df["time_total_s"].iloc[-1] - df["time_total_s"].iloc[0]
        )
        return len(seeds) * steps / wall, float(steady)

    def bare(threads: int) -> tuple[float, float]:
        """Steps/s from building the trainer to the end, and from its step-0 report to its last."""
        torch.set_num_threads(threads)
        start = time.perf_counter()
        trainer = Trainer(base, device)
        seen: list[tuple[int, float]] = []
        trainer.fit(lambda event: seen.append((event.step, time.perf_counter())))
        whole = steps / (time.perf_counter() - start)
        (s0, t0), (s1, t1) = seen[0], seen[-1]
        return whole, (s1 - s0) / (t1 - t0)

    with tempfile.TemporaryDirectory() as tmp:
        bare_1, bare_steady = bare(1)
        if cuda:
            tune_1, tune_steady = sweep([0], 1, tmp, gpus=1)
            shared, _ = sweep(list(range(sharing)), 1, tmp, gpus=1 / sharing)
            together, alone = shared, tune_1
        else:
            tune_1, tune_steady = sweep([0], 1, tmp)
            together, _ = sweep([0, 1], 1, tmp)
            alone, _ = sweep([0], 2, tmp)
    ray.shutdown()
    return {
        "bare": bare_1,
        "bare_steady": bare_steady,
        "tune": tune_1,
        "tune_steady": tune_steady,
        "together": together,
        "alone": alone,
    }


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


def main(argv: list[str] | None = None) -> int:
    ap = Parser(description="Benchmark the training step against a plain reference loop.")
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
    ap.add_argument("--out", help="also write the table to this file, with the date and machine")
    args = ap.parse_args(argv)
    if args.sharing < 1:
        ap.error("--sharing must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no GPU is available here")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = Config()
    trainer = Trainer(cfg, device)
    reference = ReferenceLoop(trainer)
    for _ in range(10):  # warm up both
        trainer.train_step()
        reference.train_step()
    steps = {"project": trainer.train_step, "reference": reference.train_step}
    t = interleaved(steps, args.steps, args.rounds, device)
    t_eval = timed(trainer.evaluate, 3, device)
    t_ref_eval = timed(reference.evaluate, 3, device)

    # A whole run each, evaluation included, long enough that the project's run memorizes and
    # generalizes on the way: the refinement of its crossings is paid for too.
    run_cfg = apply_overrides(cfg, {"train.steps": args.run_steps}, "bench")
    run = paired_runs(run_cfg, ReferenceLoop(trainer))
    project_wall, reference_wall = run["project"], run["reference"]
    eval_share = run["evaluation"] / project_wall
    budget = cfg.train.steps
    n_evals = evals_in(cfg, budget)
    budget_share = n_evals * t_eval / (budget * t["project"] + n_evals * t_eval)

    rate = matmul_rate(device)
    train = trainer.splits["train"]
    vocab = trainer.tokenizer.vocab_size
    seq, cols, batch = train.x.shape[1], len(train.cols), trainer.batch_size
    flops = model_flops(cfg, seq, cols, vocab, batch, project=True)
    ref_flops = model_flops(cfg, seq, cols, vocab, batch, project=False)

    head = [
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}: python -m grok.bench "
        + " ".join(sys.argv[1:] if argv is None else argv),
        f"machine: {machine(device)}",
        f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"x/y mod 97, batch {batch}, model 2x128, 4 heads, d_ff 512",
    ]
    rows = [
        (
            "project: training step",
            f"{t['project'] * 1e3:.1f} ms",
            f"{1 / t['project']:.1f} steps/s",
        ),
        (
            "reference: training step",
            f"{t['reference'] * 1e3:.1f} ms",
            f"{1 / t['reference']:.1f} steps/s",
        ),
        (
            "project: one full evaluation",
            f"{t_eval * 1e3:.0f} ms",
            f"{t_eval / t['project']:.1f} steps",
        ),
        (
            "reference: one evaluation (train+test)",
            f"{t_ref_eval * 1e3:.0f} ms",
            f"{t_ref_eval / t['reference']:.1f} steps",
        ),
        (
            f"project: a {args.run_steps}-step run, evaluation included",
            f"{args.run_steps / project_wall:.1f} steps/s",
            f"evaluation {eval_share:.1%} of its time",
        ),
        (
            f"reference: a {args.run_steps}-step run, evaluating every {REFERENCE_EVAL_EVERY}",
            f"{args.run_steps / reference_wall:.1f} steps/s",
            "run in lockstep with the project's",
        ),
        (
            f"project: evaluation share over the default {budget} steps",
            f"{budget_share:.1%}",
            f"{n_evals} full evaluations",
        ),
        ("fp32 matmul rate (model shapes)", f"{rate:.0f} GFLOP/s", ""),
        (
            "project: model FLOP rate",
            f"{flops / t['project'] / 1e9:.0f} GFLOP/s",
            f"{flops / t['project'] / 1e9 / rate:.0%} of matmul, {flops / 1e9:.2f} GFLOP/step",
        ),
        (
            "reference: model FLOP rate",
            f"{ref_flops / t['reference'] / 1e9:.0f} GFLOP/s",
            f"{ref_flops / t['reference'] / 1e9 / rate:.0%} of matmul, "
            f"{ref_flops / 1e9:.2f} GFLOP/step",
        ),
    ]
    if args.compile:
        compile_s, t_compiled, t_eager = compiled_step(
            cfg, device, trainer, args.steps, args.rounds
        )
        rows += [
            (
                "project: torch.compile'd training step",
                f"{t_compiled * 1e3:.1f} ms",
                f"{t_eager / t_compiled:.2f}x eager ({t_eager * 1e3:.1f} ms); "
                f"{compile_s:.0f} s to compile",
            )
        ]
    if not args.skip_tune:
        tf = tune_figures(args.tune_steps, device, args.sharing)
        where = "1 GPU" if device.type == "cuda" else "1 CPU"
        rows += [
            (
                f"bare trial, {where}, {args.tune_steps} steps, start to end",
                f"{tf['bare']:.1f} steps/s",
                "data, model and evaluations included",
            ),
            (
                "the same trial under Ray Tune, start to end",
                f"{tf['tune']:.1f} steps/s",
                f"overhead {1 - tf['tune'] / tf['bare']:.1%}: "
                f"{args.tune_steps / tf['tune'] - args.tune_steps / tf['bare']:.1f} s "
                "more, mostly the trial's process and imports",
            ),
            (
                "bare trial, step 0 to the end",
                f"{tf['bare_steady']:.1f} steps/s",
                "evaluations and checkpoints included",
            ),
            (
                "the same under Ray Tune (reports, checkpoints)",
                f"{tf['tune_steady']:.1f} steps/s",
                f"overhead {1 - tf['tune_steady'] / tf['bare_steady']:.1%} once running",
            ),
        ]
        if device.type == "cuda":
            rows += [
                (
                    f"{args.sharing} trials sharing the GPU (gpu 1/{args.sharing}), total",
                    f"{tf['together']:.1f} steps/s",
                    f"{tf['together'] / tf['alone']:.2f}x one trial with the whole GPU",
                ),
                ("1 trial with the whole GPU", f"{tf['alone']:.1f} steps/s", ""),
            ]
        else:
            rows += [
                (
                    "2 concurrent 1-CPU trials, total",
                    f"{tf['together']:.1f} steps/s",
                    f"{tf['together'] / tf['alone']:.2f}x one 2-CPU trial",
                ),
                ("1 trial with 2 CPUs", f"{tf['alone']:.1f} steps/s", ""),
            ]
        rows += [("peak memory of a trial process", f"{peak_rss_mb([], 200):.0f} MB", "")]
    width = max(len(r[0]) for r in rows)
    lines = head + [
        f"{name.ljust(width)}  {value:>16}  {note}".rstrip() for name, value, note in rows
    ]
    ratio = reference_wall / project_wall
    lines += [
        f"project vs reference loop, training step alone: {t['reference'] / t['project']:.2f}x",
        f"project vs reference loop: {ratio:.2f}x",
    ]
    print("\n".join(lines))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0 if math.isfinite(ratio) else 1


if __name__ == "__main__":
    sys.exit(main())
