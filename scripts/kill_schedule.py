"""Kill a real sweep with SIGKILL at seeded moments, resume it, and check that every trial ends
as in the uninterrupted run, to the bit.

    python scripts/kill_schedule.py --points 100 [--seed 0] [--start K] [--address HOST:PORT]
        [--out DIR]

`--start K` runs points K.. only, to split a long schedule over several sittings.

One uninterrupted run of a small two-trial experiment (keep-1 pruning, Tune's state saved at
every step) is the reference; it also counts how often each phase below happens. Each kill
point then runs the same sweep and kills it at the k-th entry of one phase (k drawn from the
seeded generator), part-way through what the phase writes or deletes, or at a seeded time
("anytime"); then `tune_main.py --resume` must end with no trial errored, each trial's
result.json holding one report per step, and every report equal to the reference's but for
Tune's bookkeeping and timings. A table shows each point: phase aimed at, where the kill
landed, whether the resume ended well and whether the metrics are equal.

The phases, and where the kill is made (patches installed in the sweep's processes by this
script, never by the library):

- checkpoint-write: a trial's worker copying a checkpoint into storage (Tune's
  `persist_current_checkpoint`): some files copied, one cut off, then the driver and the worker
  killed;
- state-save: the driver writing Tune's experiment state (`TuneController.save_to_dir`), the
  file cut off where the kill stops the write;
- backup: the driver copying that state into `.resume-state/` (grok/resume.py), some files
  written, the next one left as a cut-off temporary file;
- pruning: the driver deleting a checkpoint keep-N no longer keeps, some of its files deleted;
- result-copy: the driver's background copy of the trial folders (result.json, progress.csv,
  Tune's state) into storage, some files copied, one cut off;
- anytime: no patch; the driver is killed after a seeded time, and the trace tells in which
  phase each process was (phases entered and not left).

Each run's patched processes append `time pid phase enter|exit|kill` lines to a trace file.
Worker processes get the patches through Ray's `worker_process_setup_hook`.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("checkpoint-write", "state-save", "backup", "pruning", "result-copy", "anytime")
NAME = "killed"
VOLATILE = {  # Tune's bookkeeping and timings: everything else is the run's own numbers
    "config", "timestamp", "date", "done", "should_checkpoint", "trial_id", "pid", "hostname",
    "node_ip", "node_id", "time_this_iter_s", "time_total_s", "time_since_restore",
    "iterations_since_restore", "training_iteration", "experiment_tag", "checkpoint_dir_name",
    "steps_per_s",
}  # fmt: skip
EXPERIMENT = {
    "name": NAME,
    "config": {
        "task": {"op": "+", "p": 11, "train_fraction": 0.6, "val_fraction": 0.2},
        "model": {"n_layer": 1, "d_model": 32, "n_head": 2, "d_ff": 64},
        "optim": {"lr": 3e-3},
        "train": {"steps": 300, "checkpoint_every": 30, "batch_size": 16, "threads": 1},
        "eval": {"min_every": 10, "max_every": 30},
    },
    "grid": {"seed": [0, 1]},
    "tune": {"num_to_keep": 1},  # pruning at every checkpoint
}
ENV = {"TUNE_GLOBAL_CHECKPOINT_S": "0", "RAY_AUTH_MODE": "disabled"}  # Tune's state each step


# ---------------------------------------------------------------- in the sweep's processes


_calls: Counter = Counter()


def _trace(phase: str, event: str) -> None:
    with open(os.environ["KILL_TRACE"], "a") as f:
        f.write(f"{time.time():.6f} {os.getpid()} {phase} {event}\n")


def _due(phase: str) -> float | None:
    """Whether this call of `phase` is the one to kill at: the plan's cut, else None."""
    _calls[phase] += 1
    plan = json.loads(os.environ["KILL_PLAN"])
    if plan["phase"] == phase and _calls[phase] == plan["at"]:
        return plan["cut"]
    return None


def _kill(phase: str) -> None:
    _trace(phase, "kill")
    driver = int(os.environ["KILL_DRIVER"])
    if driver != os.getpid():
        os.kill(driver, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _traced(phase: str, run, cut_then_kill) -> object:
    _trace(phase, "enter")
    cut = _due(phase)
    if cut is not None:
        cut_then_kill(cut)
        _kill(phase)
    result = run()
    _trace(phase, "exit")
    return result


def _copy_part(src: str, fs, dest: str, cut: float, exclude=()) -> None:
    """What a kill leaves of copying folder `src` to `dest` on `fs`: the first files whole, the
    next one cut off (a local copy writes in place; an object store shows no part)."""
    import pyarrow.fs as pafs

    files = sorted(
        os.path.relpath(os.path.join(d, n), src) for d, _, names in os.walk(src) for n in names
    )
    files = [f for f in files if not any(fnmatch.fnmatch(f, e) for e in exclude)]
    done = int(cut * len(files))
    for i, rel in enumerate(files[: done + 1]):
        data = Path(src, rel).read_bytes()
        target = f"{dest}/{rel}"
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        if i == done:
            if not isinstance(fs, pafs.LocalFileSystem):
                break
            data = data[: len(data) // 2]
        with fs.open_output_stream(target) as out:
            out.write(data)


def install_worker() -> None:
    """Patches in a trial's worker: checkpoint copies into storage."""
    from ray.train._internal.storage import StorageContext

    persist = StorageContext.persist_current_checkpoint

    def patched(self, checkpoint):
        def cut(c):
            self.storage_filesystem.create_dir(self.checkpoint_fs_path)
            _copy_part(checkpoint.path, self.storage_filesystem, self.checkpoint_fs_path, c)

        return _traced("checkpoint-write", lambda: persist(self, checkpoint), cut)

    StorageContext.persist_current_checkpoint = patched


def install_driver() -> None:
    """Patches in the driver: Tune's state saves, the backup, pruning and result copies; and
    the worker patches passed on through Ray's runtime environment."""
    import ray
    from ray.train._internal import checkpoint_manager, storage
    from ray.tune.execution.tune_controller import TuneController

    import grok.resume
    from grok import callbacks

    save = TuneController.save_to_dir

    def save_to_dir(self):
        def cut(c):
            save(self)
            path = Path(self._storage.experiment_driver_staging_path)
            state = path / self.experiment_state_file_name
            state.write_bytes(state.read_bytes()[: int(c * state.stat().st_size)])

        return _traced("state-save", lambda: save(self), cut)

    upload = storage._upload_to_fs_path

    def upload_to_fs_path(local_path, fs, fs_path, exclude=None):
        def cut(c):
            if os.path.isdir(local_path):
                _copy_part(local_path, fs, fs_path, c, exclude or ())

        return _traced("result-copy", lambda: upload(local_path, fs, fs_path, exclude), cut)

    delete = checkpoint_manager._delete_fs_path

    def delete_fs_path(fs, fs_path):
        def cut(c):
            import pyarrow.fs as pafs

            infos = fs.get_file_info(pafs.FileSelector(fs_path, recursive=True))
            files = sorted(i.path for i in infos if i.type == pafs.FileType.File)
            for path in files[: max(1, int(c * len(files)))]:
                fs.delete_file(path)

        return _traced("pruning", lambda: delete(fs, fs_path), cut)

    back_up = callbacks.back_up_state

    def back_up_state(staging, experiment):
        def cut(c):
            files = grok.resume.newest_state_files(staging)
            names = sorted(f.name for f in files.values())
            for name in names[: int(c * len(names))]:
                (grok.resume.at(experiment) / grok.resume.BACKUP / name).write_bytes(
                    files_bytes(files, name)
                )
            if names:  # the next file's temporary copy, cut off
                tmp = grok.resume.at(experiment) / grok.resume.BACKUP / f".tmp-0-{names[-1]}"
                with tmp.fs.open_output_stream(tmp.path) as out:
                    out.write(files_bytes(files, names[-1])[:10])

        return _traced("backup", lambda: back_up(staging, experiment), cut)

    def files_bytes(files, name):
        return next(f for f in files.values() if f.name == name).read_bytes()

    init = ray.init

    def ray_init(*args, **kwargs):
        env = {k: os.environ[k] for k in ("KILL_PLAN", "KILL_TRACE")}
        env["KILL_DRIVER"] = str(os.getpid())
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "scripts"), str(ROOT)])
        kwargs["runtime_env"] = {
            "env_vars": env,
            "worker_process_setup_hook": "kill_schedule.install_worker",
        }
        return init(*args, **kwargs)

    TuneController.save_to_dir = save_to_dir
    storage._upload_to_fs_path = upload_to_fs_path
    checkpoint_manager._delete_fs_path = delete_fs_path
    callbacks.back_up_state = back_up_state
    ray.init = ray_init


def drive(argv: list[str]) -> int:
    """`tune_main.py ARGV` in this process, with the driver's patches."""
    os.environ["KILL_DRIVER"] = str(os.getpid())
    sys.path.insert(0, str(ROOT))
    install_driver()
    import tune_main

    return tune_main.main(argv)


# ---------------------------------------------------------------- the schedule


@dataclass
class Point:
    phase: str
    at: int = 0  # the call of the phase killed at (1: the first); for anytime, none
    cut: float = 0.0  # how far into the phase's writes (for anytime: into the run's time)


@dataclass
class Outcome:
    kills: list[Point]  # the kills of one sweep: of its first run, then of its resumes
    landed: list[str]  # for each: the phases open when it came, "training", or "not killed"
    resumed: bool  # the last --resume ended with status 0 and no trial errored
    equal: bool  # every trial's reports equal the reference's, one per step
    restarts: dict[str, list[int]]  # per trial, the step of each run's first report
    note: str = ""


def schedule(seed: int, points: int, counts: Counter, seconds: float) -> list[list[Point]]:
    """`points` kill points, the phases in turn, each at a seeded call of its phase (in the
    first half of the calls the reference made, so that it comes) and a seeded cut, or at a
    seeded time of a run as long as the reference; one point in four kills the sweep's resume
    too, early in it. A phase the reference never entered is left out."""
    rng = random.Random(seed)
    phases = [p for p in PHASES if p == "anytime" or counts[p] > 0]

    def point(phase: str, calls: int, span: float) -> Point:
        if phase == "anytime":
            return Point(phase, 0, round(rng.uniform(0.1, 1.0) * span, 2))
        return Point(phase, rng.randint(1, max(1, calls // 2)), round(rng.random(), 3))

    plan = []
    for i in range(points):
        kills = [point(phases[i % len(phases)], counts[phases[i % len(phases)]], seconds)]
        if rng.random() < 0.25:
            again = rng.choice(phases)
            kills.append(point(again, min(counts[again], 4), seconds / 2))
        plan.append(kills)
    return plan


def write_experiment(folder: Path) -> Path:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT, sort_keys=False))
    return path


def sweep_command(experiment: Path, storage: Path, address: str, traced: bool) -> list[str]:
    args = [str(experiment), "--storage", str(storage), "--address", address]
    if traced:
        return [sys.executable, str(Path(__file__).resolve()), "--drive", *args]
    return [sys.executable, "tune_main.py", *args]


def sweep_processes(trace: Path) -> list[int]:
    """The processes of the sweep that traces into `trace` (its driver and trial workers)."""
    mark = f"KILL_TRACE={trace}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if mark in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def run_traced(experiment: Path, storage: Path, address: str, point: Point, trace: Path, extra=()):
    """The sweep (`extra`: --resume), killed as `point` says: (killed, seconds, exit status)."""
    env = {**os.environ, **ENV, "KILL_TRACE": str(trace)}
    env["KILL_PLAN"] = json.dumps({"phase": point.phase, "at": point.at, "cut": point.cut})
    cmd = [*sweep_command(experiment, storage, address, traced=True), *extra]
    start = time.monotonic()
    out = open(trace.with_suffix(".log"), "w")
    driver = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
    )
    killed = False
    if point.phase == "anytime":
        try:
            driver.wait(timeout=point.cut)
        except subprocess.TimeoutExpired:
            os.killpg(driver.pid, signal.SIGKILL)
            killed = True
    driver.wait()
    out.close()
    killed = killed or driver.returncode == -signal.SIGKILL
    seconds = time.monotonic() - start
    # Whatever the kill left running of this sweep dies too: a machine lost, not a driver.
    deadline = time.monotonic() + 120
    while workers := sweep_processes(trace):
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"trial workers {workers} outlived the kill")
        time.sleep(0.05)
    return killed, seconds, driver.returncode


def landed(trace: Path) -> str:
    """Where the kill landed: the phase a process killed itself in, or the phases entered and
    not left when all was killed, or "training"."""
    open_phases: dict[str, list[str]] = {}
    if not trace.is_file():
        return "startup"  # before the first traced phase
    for line in trace.read_text().splitlines():
        _, pid, phase, event = line.split()
        if event == "kill":
            return phase
        stack = open_phases.setdefault(pid, [])
        if event == "enter":
            stack.append(phase)
        elif phase in stack:
            stack.remove(phase)
    active = sorted({p for stack in open_phases.values() for p in stack})
    return "+".join(active) or "training"


def reports(folder: Path) -> dict[str, list[dict]]:
    """Each trial's reports, less Tune's bookkeeping and timings."""
    out = {}
    trials = folder.iterdir() if folder.is_dir() else []
    for trial in sorted(p for p in trials if (p / "params.json").is_file()):
        rows = []
        result = trial / "result.json"
        for line in result.read_text().splitlines() if result.is_file() else []:
            rows.append({k: v for k, v in json.loads(line).items() if k not in VOLATILE})
        out[trial.name] = rows
    return out


def check(kills: list[Point], work: Path, address: str, reference: dict) -> Outcome:
    """Run the sweep, killed as `kills` says (the first run, then its resumes), resume it to its
    end and compare its reports with the reference's."""
    experiment = write_experiment(work)
    storage = work / "results"
    landed_in = []
    for i, kill in enumerate(kills):
        trace = work / f"trace-{i}.txt"
        resume = ["--resume"] if i else []
        killed, _, status = run_traced(experiment, storage, address, kill, trace, resume)
        if not killed:  # the run ended first (or refused to start): see below
            landed_in.append("not killed" if status == 0 else f"not killed: exit {status}")
            break
        landed_in.append(landed(trace))
    ended = subprocess.CompletedProcess([], 0, "", "")
    note = ""
    if landed_in[-1] != "not killed":
        cmd = sweep_command(experiment, storage, address, traced=False)
        # No kill is aimed at this run: Tune saves its state at its own pace.
        env = {**os.environ, **ENV, "TUNE_GLOBAL_CHECKPOINT_S": "auto"}
        ended = subprocess.run(
            [*cmd, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        before_first_save = ("does not exist", "before its first save completed")
        if ended.returncode == 2 and any(why in ended.stderr for why in before_first_save):
            # Killed before Tune's first save: nothing to resume, and --resume says to start
            # anew, which is what a user does.
            note = "nothing saved yet: started anew with --fresh"
            cmd.append("--fresh")
            ended = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    ok = ended.returncode == 0 and "errored" not in ended.stdout + ended.stderr
    got = reports(storage / NAME)
    if not ok:
        note = (ended.stderr.strip().splitlines() or ["no output"])[-1][:200]
    if ok and got != reference:
        note = next(
            f"{name}: steps {[r['step'] for r in got.get(name, [])]}"
            for name in reference
            if got.get(name) != reference[name]
        )
    return Outcome(kills, landed_in, ok, got == reference, restarts(storage / NAME), note)


def restarts(folder: Path) -> dict[str, list[int]]:
    """Per trial, the step of the first report of each of its runs: 0 where it started anew,
    a checkpoint's next evaluation where it resumed from one."""
    out = {}
    for trial in sorted(p for p in folder.iterdir() if (p / "result.json").is_file()):
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        out[trial.name] = [r["step"] for r in rows if r.get("iterations_since_restore") == 1]
    return out


def reference_run(work: Path, address: str) -> tuple[dict, Counter, float]:
    """The uninterrupted sweep: its reports, each phase's count, and how long it ran."""
    experiment = write_experiment(work)
    trace = work / "trace.txt"
    killed, seconds, _ = run_traced(experiment, work / "results", address, Point("none"), trace)
    if killed or not (work / "results" / NAME).is_dir():
        raise RuntimeError(f"the reference sweep failed; see {trace.with_suffix('.log')}")
    per_process = Counter(
        tuple(line.split()[1:3])
        for line in trace.read_text().splitlines()
        if line.endswith(" enter")
    )
    counts: Counter = Counter()
    for (_, phase), n in per_process.items():  # the kill counts a phase's calls per process
        counts[phase] = max(counts[phase], n)
    return reports(work / "results" / NAME), counts, seconds


def expected_reports(work: Path) -> dict[str, list[dict]]:
    """The uninterrupted run's reports computed in this process by the Trainer, with no Ray:
    the trainable reports each evaluation's metrics and Tune adds only what `reports` leaves
    out, so a sweep's reports equal these (checked by the test that uses them, at a fraction
    of a reference sweep's cost). The schedule itself runs a reference sweep: it needs the
    phases' counts."""
    import torch

    sys.path.insert(0, str(ROOT))
    from grok.experiment import load_experiment, trial_name
    from grok.train import Trainer

    threads = torch.get_num_threads()
    out = {}
    try:
        for values, cfg in load_experiment(write_experiment(work)).trials():
            torch.set_num_threads(cfg.train.threads)
            rows: list[dict] = []
            Trainer(cfg).fit(lambda event, rows=rows: rows.append(event.metrics))
            out[trial_name(values)] = [
                {k: v for k, v in json.loads(json.dumps(r)).items() if k not in VOLATILE}
                for r in rows
            ]
    finally:
        torch.set_num_threads(threads)
    return dict(sorted(out.items()))


def run_schedule(
    points: int, seed: int, address: str, out: Path, log=print, start: int = 0
) -> list[Outcome]:
    """Points `start`.. of the seeded schedule of `points` (a long schedule in parts). The same
    seed and count draw the same phases in the same order; which call of a phase, and when an
    "anytime" kill comes, scale with this run's reference (its phase counts and its time)."""
    reference, counts, seconds = reference_run(out / "reference", address)
    log(f"reference: {seconds:.1f} s; phase entries: {dict(sorted(counts.items()))}")
    same = reference == expected_reports(out / "in-process")
    log(f"reference sweep's reports equal the Trainer's run without Ray: {same}")
    outcomes = []
    for i, kills in enumerate(schedule(seed, points, counts, seconds)):
        if i < start:
            continue
        outcome = check(kills, out / f"point-{i:03d}", address, reference)
        outcomes.append(outcome)
        log(row(i, outcome))
    return outcomes


def row(i: int, o: Outcome) -> str:
    """A line of the table: the point, each kill (aimed at -> landed in), resumed, equal."""
    said = []
    for p, where in zip(o.kills, o.landed, strict=False):
        aim = f"{p.phase} #{p.at} cut {p.cut}" if p.phase != "anytime" else f"anytime {p.cut} s"
        said.append(f"{aim} -> {where}")
    kills = "; then ".join(said)
    resumed, equal = ("yes" if o.resumed else "NO"), ("yes" if o.equal else "NO")
    return f"{i:5d}  {kills:70s} {resumed:7s} {equal:5s} {o.note}"


def start_head(temp: Path) -> tuple[subprocess.Popen, str]:
    """A one-node Ray cluster of 2 CPUs for the schedule (`ray start --head --block`)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = str(Path(sys.executable).with_name("ray"))
    cmd = [ray, "start", "--head", f"--port={port}", "--num-cpus=2", f"--temp-dir={temp}"]
    head = subprocess.Popen(
        [*cmd, "--include-dashboard=false", "--block"],
        env={**os.environ, **ENV, "RAY_TMPDIR": str(temp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while True:  # until its GCS port answers
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return head, f"127.0.0.1:{port}"
        except OSError:
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Ray head did not start") from None
            time.sleep(0.5)


def stop_head(head: subprocess.Popen) -> None:
    """SIGTERM to the `ray start --block` process alone: it drains its node and stops the
    node's processes in seconds (sent to its whole process group, it kills the GCS first and
    then waits 30 s for it to answer the drain). What is left of the group is then killed."""
    head.send_signal(signal.SIGTERM)
    try:
        head.wait(timeout=300)
    finally:
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:  # every process of the group has ended
            pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--drive"]:
        return drive(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="the first point to run (0-based)")
    parser.add_argument("--address", help="a running Ray cluster (default: start one)")
    parser.add_argument("--out", type=Path, help="where the runs go (default: a temp folder)")
    args = parser.parse_args(argv)
    if args.points < 1:
        parser.error("--points must be at least 1")
    if not 0 <= args.start < args.points:
        parser.error(f"--start must be 0..{args.points - 1} (--points {args.points})")
    out = args.out or Path(tempfile.mkdtemp(prefix="kill-schedule-"))
    head = None
    address = args.address
    if address is None:
        head, address = start_head(Path(tempfile.mkdtemp(prefix="ks", dir="/tmp")))
    try:
        print(f"runs in {out}; Ray at {address}")
        print(f"{'point':>5s}  {'kills: aimed at -> landed in':70s} {'resumed':7s} {'equal':5s}")
        outcomes = run_schedule(args.points, args.seed, address, out, start=args.start)
    finally:
        if head is not None:
            stop_head(head)
    by_phase = Counter(where for o in outcomes for where in o.landed)
    good = sum(o.resumed and o.equal for o in outcomes)
    kills = sum(n for where, n in by_phase.items() if not where.startswith("not killed"))
    print(f"{len(outcomes)} kill points, {kills} kills; landed: {dict(sorted(by_phase.items()))}")
    print(
        f"{good}/{len(outcomes)} resumed with no trial errored and reports equal to the reference"
    )
    return 0 if good == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
