"""plotting: loading Tune folders, steps-to-grok with censoring, the CLIs and the report.

The result folders are written here in Tune's layout (experiment.yaml, <trial>/params.json,
result.json one report per line, error.txt) with curves whose crossings are known by hand.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, TINY
from PIL import Image

from grok.checkpoint import export_weights
from grok.config import Config
from grok.data import build_splits
from grok.experiment import trial_name
from grok.metrics import THRESHOLDS, crossing_key, grok_key
from grok.overrides import apply_overrides
from grok.train import Trainer
from plotting import curves, grok_steps, report, sections, tables
from plotting.frames import load
from plotting.study import load_study

STUDY = ROOT / "report" / "study.yaml"  # the committed study: its parts and experiments

STEPS = list(range(0, 1100, 100))


def write_experiment(root: Path, name: str, grid: dict, config: dict | None = None) -> Path:
    base = apply_overrides(Config(), config or {}, "test")
    record = {
        "name": name,
        "description": f"{name} made by the tests",
        "source": f"experiments/{name}.yaml",
        "grid": grid,
        "resources": {"cpu": 1.0, "gpu": 0.0},
        "tune": {},
        "config": base.to_dict(),
    }
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "experiment.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    return folder


def report_row(params: dict, step: int, train: float, test: float, status: str, n: int) -> dict:
    """One report as the trainer and Tune write it (crossings left null: plotting recomputes)."""
    loss = lambda acc: -math.log(max(acc, 1e-3)) if not math.isnan(acc) else math.nan
    row = {
        "step": step,
        "train/loss": loss(train),
        "train/acc": train,
        "val/loss": loss(test),
        "val/acc": test,
        "test/loss": loss(test),
        "test/acc": test,
        "lr": 1e-3,
        "param_norm": 150.0 - step / 20,
        "steps_per_s": 100.0,
    }
    row.update({crossing_key(m, t): None for m in ("train/acc", "test/acc") for t in THRESHOLDS})
    row.update({grok_key(t): None for t in THRESHOLDS})
    row.update(status=status, checkpoint_dir_name=None, done=False, training_iteration=n)
    row.update(trial_id="abc_00000", time_total_s=float(n), config=params)
    return row


def write_trial(
    exp: Path,
    params: dict,
    train: list[float],
    test: list[float],
    final: str = "finished",
    steps: list[int] = STEPS,
    error: bool = False,
    tail: str = "",
) -> Path:
    """A trial folder; the last report gets status `final` ('running': none does)."""
    folder = exp / trial_name(params)
    folder.mkdir()
    (folder / "params.json").write_text(json.dumps(params))
    rows = [
        report_row(params, s, a, b, final if i == len(train) - 1 else "running", i + 1)
        for i, (s, a, b) in enumerate(zip(steps, train, test))
    ]
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    if error:
        (folder / "error.txt").write_text("Failure # 1 (occurred at ...)\nRuntimeError: boom\n")
    return folder


def wd_experiment(root: Path) -> Path:
    """Six trials with hand-known crossings: finished, censored, grokked, resumed, errored."""
    wd = "optim.weight_decay"
    exp = write_experiment(root, "ablation_wd", {wd: [0.1, 1.0], "seed": [0, 1, 2]})
    ones = [1.0] * 11
    # 99%: train 200, test 900 -> 700; 100%: train 300, test never -> censored at 1000.
    write_trial(
        exp,
        {wd: 0.1, "seed": 0},
        [0, 0.5, 0.99, 1, *ones[4:]],
        [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.99, 0.995],
    )
    # Train 99% at 200, 100% at 400; test never: censored at 1000 for both thresholds.
    write_trial(exp, {wd: 0.1, "seed": 1}, [0, 0.6, 0.995, 0.995, *ones[4:]], [0.5] * 11)
    # Errored before its first report: kept, censored, no step.
    t6 = exp / trial_name({wd: 0.1, "seed": 2})
    t6.mkdir()
    (t6 / "params.json").write_text(json.dumps({wd: 0.1, "seed": 2}))
    (t6 / "result.json").write_text("")
    (t6 / "error.txt").write_text("RuntimeError: boom\n")
    # Stopped after grokking at 600. 99%: 100 -> 300 (200); 100%: 200 -> 400 (200).
    write_trial(
        exp,
        {wd: 1.0, "seed": 0},
        [0, 0.99, 1, 1, 1, 1, 1],
        [0, 0.3, 0.6, 0.99, 1, 1, 1],
        final="grokked",
        steps=STEPS[:7],
    )
    # Still running, resumed from a checkpoint at 200: steps 300 and 400 were reported twice.
    # Keeping the last reports, 99%: 100 -> 400 (300); 100%: 200 -> 500 (300).
    resumed = write_trial(
        exp,
        {wd: 1.0, "seed": 1},
        [0, 0.99, 1, 1, 1],
        [0, 0.2, 0.4, 0.995, 1.0],
        final="running",
        steps=STEPS[:5],
    )
    again = [
        report_row({}, 300, 1.0, 0.9, "running", 6),
        report_row({}, 400, 1.0, 0.99, "running", 7),
        report_row({}, 500, 1.0, 1.0, "running", 8),
    ]
    with open(resumed / "result.json", "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in again) + '{"step": 600, "train/lo')
    # Errored at 200 after train reached 99%: 99% censored at 200; 100% never reached by train.
    write_trial(
        exp,
        {wd: 1.0, "seed": 2},
        [0, 0.99, 0.99],
        [0, 0.1, 0.2],
        final="running",
        steps=STEPS[:3],
        error=True,
    )
    return exp


def sanity_experiment(root: Path, with_checkpoint: bool = True) -> Path:
    """sanity_memorize: train loss only (val and test are NaN), and a real tiny checkpoint."""
    config = {
        "task.kind": "text",
        "task.text": "I love machine learning",
        "task.tokenizer": "char",
        "task.train_fraction": 1.0,
        "task.val_fraction": 0.0,
        "model.n_layer": 1,
        "model.d_model": 16,
        "model.n_head": 2,
        "model.d_ff": 32,
        "train.steps": 3,
    }
    exp = write_experiment(root, "sanity_memorize", {}, config)
    nan = [math.nan] * 4
    trial = write_trial(exp, {}, [0.0, 0.5, 0.9, 1.0], nan, steps=[0, 1, 2, 3])
    if with_checkpoint:
        cfg = apply_overrides(Config(), config, "test")
        Trainer(cfg, device="cpu").save_checkpoint(trial / "checkpoint_000000")
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        rows[-1]["checkpoint_dir_name"] = "checkpoint_000000"
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return exp


ADDSUB_TEST_ACC = {("+", 1): [0.9, 0.8, 0.7], ("+", 2): [1.0, 1.0, 1.0], ("-", 1): [0.5, 0.6, 0.4]}


def addsub_experiment(root: Path) -> Path:
    grid = {"task.op": ["+", "-"], "model.n_layer": [1, 2], "task.p": [97], "seed": [0, 1, 2]}
    exp = write_experiment(root, "addsub", grid, {"train.steps": 200})
    for (op, layers), accs in ADDSUB_TEST_ACC.items():  # ("-", 2) not started yet
        for seed, acc in enumerate(accs):
            params = {"task.op": op, "model.n_layer": layers, "task.p": 97, "seed": seed}
            write_trial(exp, params, [0.1, 0.9, 1.0], [0.0, acc / 2, acc], steps=[0, 100, 200])
    return exp


@pytest.fixture
def wd(tmp_path: Path) -> Path:
    return wd_experiment(tmp_path / "results")


def by_trial(cross, threshold: int) -> dict:
    """trial -> (train step, test step, steps-to-grok, censored); None where not reached."""
    rows = cross[cross["threshold"] == threshold]
    plain = lambda v: None if pd.isna(v) else int(v)
    return {
        r["trial"]: (plain(r["train_step"]), plain(r["test_step"]), plain(r["steps_to_grok"]))
        + (r["censored"],)
        for r in rows.to_dict("records")
    }


def test_steps_to_grok_equals_hand_computed(wd):
    cross = grok_steps.crossings(load(wd))
    na = None
    assert by_trial(cross, 99) == {
        "wd=0.1,seed=0": (200, 900, 700, False),
        "wd=0.1,seed=1": (200, na, na, True),
        "wd=0.1,seed=2": (na, na, na, True),
        "wd=1,seed=0": (100, 300, 200, False),
        "wd=1,seed=1": (100, 400, 300, False),
        "wd=1,seed=2": (100, na, na, True),
    }


def test_thresholds_99_and_100_differ_where_they_should(wd):
    cross = grok_steps.crossings(load(wd))
    hundred = by_trial(cross, 100)
    assert hundred["wd=0.1,seed=0"][:2] == (300, None) and hundred["wd=0.1,seed=0"][3]
    assert hundred["wd=0.1,seed=1"][0] == 400
    assert hundred["wd=1,seed=0"] == (200, 400, 200, False)
    assert hundred["wd=1,seed=1"] == (200, 500, 300, False)
    assert hundred["wd=1,seed=2"][0] is None


def test_censored_runs_are_counted_marked_and_not_averaged(wd):
    res = load(wd)
    cross = grok_steps.crossings(res)
    summary = grok_steps.summarize(res, cross).set_index(["group", "threshold"])
    low, high = summary.loc[("wd=0.1", 99)], summary.loc[("wd=1", 99)]
    assert (low["runs"], low["grokked"], low["censored"]) == (3, 1, 2)
    assert low["steps_to_grok_mean"] == 700 and math.isnan(low["steps_to_grok_sd"])
    assert (high["runs"], high["grokked"], high["censored"]) == (3, 2, 1)
    assert high["steps_to_grok_mean"] == 250 and high["censored_at"] == "200"
    size = int(cross["test_size"].iloc[0])
    wrong = size - round(0.2 * size)  # wd=1,seed=2: test accuracy 0.2 at best
    assert high["censored_best"] == f"0.2000 ({wrong} of {size} wrong)"
    assert summary.loc[("wd=0.1", 100), "grokked"] == 0
    assert summary.loc[("wd=0.1", 100), "censored"] == 3
    md = grok_steps.markdown(res, summary.reset_index(), cross)
    assert "2: not by step 1000, no report" in md
    assert "censored at 200" in md and "250 ± 71" in md


def test_ranking_puts_the_larger_share_of_grokked_runs_first(wd):
    res = load(wd)
    lines = grok_steps.ranking(res, grok_steps.crossings(res)).splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [r[0] for r in rows] == ["1.0", "0.1"]  # 2 of 3 grokked before 1 of 3
    assert rows[0][1:5] == ["2 of 3", "100 ± 0", "350 ± 71", "250 ± 71"]
    assert rows[1][1] == "1 of 3" and rows[1][3] == "900"  # the censored not averaged in
    assert rows[0][5] == "2 of 3" and rows[1][5] == "0 of 3"  # the 100% measure beside


def test_running_resumed_and_errored_trials_load(wd):
    res = load(wd)
    status = dict(zip(res.trials["trial"], res.trials["status"]))
    assert status == {
        "wd=0.1,seed=0": "finished",
        "wd=0.1,seed=1": "finished",
        "wd=0.1,seed=2": "errored",
        "wd=1,seed=0": "grokked",
        "wd=1,seed=1": "running",
        "wd=1,seed=2": "errored",
    }
    resumed = res.frame[res.frame["trial"] == "wd=1,seed=1"]
    assert resumed["step"].tolist() == [0, 100, 200, 300, 400, 500]  # partial line skipped
    assert resumed.set_index("step").loc[300, "test/acc"] == 0.9  # the re-report kept
    assert res.trials.set_index("trial").loc["wd=0.1,seed=2", "reports"] == 0
    assert res.keys == ["optim.weight_decay", "seed"] and res.groups == ["optim.weight_decay"]
    assert set(res.frame.columns) >= {"trial", "optim.weight_decay", "seed", "step", "test/acc"}
    assert "config" not in res.frame and "trial_id" not in res.frame


def test_a_trial_that_tune_retried_to_its_end_is_not_errored(tmp_path):
    """Tune keeps the failed attempt's error.txt; the reports after it say how the trial ended."""
    exp = write_experiment(tmp_path, "retried", {"seed": [0, 1]})
    write_trial(exp, {"seed": 0}, [0, 0.5, 0.99], [0, 0.1, 0.2], steps=STEPS[:3], error=True)
    write_trial(exp, {"seed": 1}, [0, 0.5], [0, 0.1], final="running", steps=STEPS[:2], error=True)
    trials = load(exp).trials
    status = dict(zip(trials["trial"], trials["status"]))
    assert status == {"seed=0": "finished", "seed=1": "errored"}


def test_folder_without_experiment_yaml_still_loads(wd):
    (wd / "experiment.yaml").unlink()
    res = load(wd)
    assert res.keys == ["optim.weight_decay", "seed"] and len(res.trials) == 6
    assert res.trials["budget"].isna().all()


def test_not_an_experiment_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    for cli in (curves, grok_steps, tables):
        assert cli.main([str(tmp_path / "notes")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a Tune experiment" in err
    done = subprocess.run(
        [sys.executable, "-m", "plotting.curves", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def is_png(path: Path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


def test_clis_write_pngs_and_tables(wd, tmp_path):
    out = tmp_path / "plots"
    assert curves.main([str(wd), "-o", str(out)]) == 0
    assert grok_steps.main([str(wd), "-o", str(out)]) == 0
    assert tables.main([str(wd), "-o", str(out)]) == 0
    for name in ("curves.png", "grok_steps.png"):
        assert is_png(out / name)
        with Image.open(out / name) as image:  # a palette PNG, the report ships many
            assert image.mode == "P" and image.size[0] > 400
    for name in ("grok_steps.csv", "grok_steps_summary.csv", "final_metrics.csv"):
        assert len((out / name).read_text().splitlines()) > 2
    assert (out / "grok_steps.md").read_text().count("| wd=1,seed=1 |") == 2
    assert not (wd / "plots").exists()  # -o respected
    assert curves.main([str(wd)]) == 0 and is_png(wd / "plots" / "curves.png")


def test_division_over_seeds_gets_the_fig1_figure(tmp_path):
    exp = write_experiment(tmp_path, "division_grokking", {"seed": [0, 1]})
    write_trial(exp, {"seed": 0}, [0, 0.5, *[1.0] * 9], [0.0] * 5 + [1.0] * 6)
    write_trial(exp, {"seed": 1}, [0, 0.6, *[1.0] * 9], [0.0] * 6 + [1.0] * 5)
    paths = curves.write(load(exp), tmp_path / "out")
    assert set(paths) == {"curves", "fig1"} and all(is_png(p) for p in paths.values())
    # train 99% at 200 on both; test 99% at 500 and 600: log10(2.5) and log10(3)
    (tmp_path / "report").mkdir()
    section = report.experiment_section(load(exp), tmp_path / "report")
    assert "0.44 decades of steps on average (0.40, 0.48; 2 of 2 seeds reached both)" in section


def test_addsub_table_has_mean_and_sd_over_seeds(tmp_path):
    res = load(addsub_experiment(tmp_path))
    table = tables.final_table(res).set_index("group")
    row = table.loc["op=add,layers=1,p=97"]
    assert row["runs"] == 3 and row["test/acc_mean"] == pytest.approx(0.8)
    assert row["test/acc_sd"] == pytest.approx(0.1)
    assert row["train/loss_mean"] == pytest.approx(0.0) and row["states"] == "3 finished"
    assert len(table) == 3  # op=sub,layers=2 has no trial yet
    md = tables.markdown(res, table.reset_index())
    assert "| op | layers | p | runs |" in md and "| - | 1 | 97 | 3 | 3 finished | 200 |" in md
    assert "0.8000 ± 0.1000" in md


def test_report_states_a_cut_budget_ships_weights_metrics_and_the_discussion(tmp_path):
    root = tmp_path / "results"
    exp = write_experiment(
        root, "division_grokking", {"seed": [0]}, {"task.op": "/", "train.steps": 1000}
    )
    write_trial(exp, {"seed": 0}, [0, 1.0, *[1.0] * 9], [0, 0, 1.0, *[1.0] * 8])
    out = tmp_path / "report"
    trainer = Trainer(Config.from_dict(TINY), device="cpu")  # x+y mod 11, untrained
    weights = export_weights(
        trainer.save_checkpoint(tmp_path / "ckpt"), out / "weights" / "division_grokking"
    )
    (out / "discussion.md").write_text("Seeds agree to within 3%.\n")
    assert report.main([str(root), "--out", str(out), "--study", str(STUDY)]) == 0
    text = (out / "REPORT.md").read_text()
    # The file asks for 1e5 steps; this run had 1000: said, with the command for the full budget.
    assert "Budget: 1000 steps per trial here, below the file's 100000" in text
    assert "The full budget: `python tune_main.py experiments/division_grokking.yaml`" in text
    # The shipped model and a held-out equation it is asked, from the test split of its data.
    test = build_splits(trainer.cfg.task)["test"]
    line = next(x for x in text.splitlines() if x.startswith("Shipped model"))
    prompt = line.split('--prompt "')[1].split('"')[0]
    example = next(e for e in test.examples if e.prompt == prompt)
    assert example.a > 1 and example.b > 1
    assert f"should answer `{prompt}{example.answer}`" in line
    assert f"python infer.py {weights}" in line
    # Every metric of every report, as loaded.
    metrics = pd.read_csv(out / "division_grokking_metrics.csv")
    frame = load(exp).frame
    assert len(metrics) == len(frame) == 11
    assert metrics["test/acc"].tolist() == frame["test/acc"].tolist()
    assert text.rstrip().endswith(
        f"## {len(load_study(STUDY).parts) + 2}. Discussion\n\nSeeds agree to within 3%."
    )


def test_spikes_count_runs_that_fall_back_after_memorizing(tmp_path):
    exp = write_experiment(tmp_path, "spiky", {"seed": [0, 1, 2]})
    late = [0.5] * 11
    write_trial(exp, {"seed": 0}, [0, 0.99, 1, 0.5, *[1.0] * 7], late)  # spike at step 300
    write_trial(exp, {"seed": 1}, [0, 0.5, 0.85, 0.89, *[1.0] * 7], late)  # slow, no spike
    write_trial(exp, {"seed": 2}, [0, 1, 1, 0.95, *[1.0] * 7], late)  # a dip above 90%
    assert sections.spikes_text(load(exp)) == (
        "Spikes: 1 of 3 runs fell back below 90% train accuracy at an evaluation after first "
        "reaching 99%: `seed=0` (0.50 at step 300)."
    )


def test_report_has_every_section_names_missing_and_matches_the_frame(tmp_path):
    root = tmp_path / "results"
    wd_experiment(root)
    sanity_experiment(root)
    addsub_experiment(root)
    other = write_experiment(root, "quickstart", {"seed": [0]})
    write_trial(other, {"seed": 0}, [0, 1.0, *[1.0] * 9], [0, 0, 1.0, *[1.0] * 8])
    aside = write_experiment(root, "quickstart.old-20260101-000000", {"seed": [0]})
    write_trial(aside, {"seed": 0}, [0.5] * 11, [0.5] * 11)
    out = tmp_path / "report"
    assert report.main([str(root), "--out", str(out), "--study", str(STUDY)]) == 0
    text = (out / "REPORT.md").read_text()
    parts = load_study(STUDY).parts
    titles = [part.title for part in parts] + [f"{len(parts) + 1}. Other experiments"]
    positions = [text.index(f"## {t}") for t in titles]
    assert positions == sorted(positions)
    for name in ("sanity_mask3", "division_grokking", "ablation_data_fraction", "ablation_dropout"):
        assert f"### {name}\n\n**Missing:**" in text
        assert f"python tune_main.py experiments/{name}.yaml" in text
    assert "### quickstart" in text and "old-2026" not in text
    assert "Command: `python tune_main.py experiments/ablation_wd.yaml`" in text
    # Numbers in the text are the frame's.
    res = load(root / "sanity_memorize")
    final_loss = res.frame["train/loss"].iloc[-1]
    assert f"final train loss {final_loss:.3g} at step 3" in text
    assert "`python infer.py" in text and "--metric train/acc` (trial" in text
    summary = grok_steps.summarize(
        load(root / "ablation_wd"), grok_steps.crossings(load(root / "ablation_wd"))
    )
    high = summary[(summary["group"] == "wd=1") & (summary["threshold"] == 99)].iloc[0]
    assert (
        f"`wd=1`, 99%: 2 of 3 runs grokked, steps-to-grok {high['steps_to_grok_mean']:.0f}" in text
    )
    addsub = load(root / "addsub").frame
    final = addsub[(addsub["task.op"] == "-") & (addsub["step"] == 200)]["test/acc"]
    assert f"| {final.mean():.4f} ± {final.std():.4f} |" in text
    assert "| a+b mod 97 | 0.5 | 0.1 | 0 | 9409 | 4704 | 941 | 3764 | addsub |" in text
    for image in [
        line[line.index("(") + 1 : -1] for line in text.splitlines() if line.startswith("![")
    ]:
        assert is_png(out / image)


def test_report_on_an_empty_root_names_everything_missing(tmp_path):
    (tmp_path / "results").mkdir()
    study = load_study(STUDY)
    path = report.build(tmp_path / "results", tmp_path / "report", study)
    text = path.read_text()
    assert text.count("**Missing:**") == len(study.entries)
    # The assignment's six datasets are described even before any experiment ran.
    assert "| a/b mod 113 | 0.5 | 0.1 | 0 | 12656 | 6328 | 1266 | 5062 | (none here) |" in text
    assert "| a-b mod 97 | 0.5 | 0.1 | 0 | 9409 | 4704 | 941 | 3764 | (none here) |" in text


def test_the_mean_curve_runs_to_the_end_of_the_longest_run_and_fig1_names_the_recipe(tmp_path):
    """A seed that stopped early carries its last value: the mean ends where the last run ends,
    not inside the shortest; the Fig. 1 title names optimizer, weight decay and budget."""
    from matplotlib.figure import Figure

    from plotting.curves import draw, recipe

    exp = write_experiment(tmp_path, "div", {"seed": [0, 1]}, {"task": {"op": "/"}})
    write_trial(exp, {"seed": 0}, [0.1, 1, 1], [0.0, 0.5, 1.0], "grokked", steps=[0, 100, 200])
    write_trial(exp, {"seed": 1}, [0.1, 1, 1, 1], [0.0, 0.2, 0.4, 1.0], steps=[0, 100, 200, 400])
    res = load(exp)
    ax = Figure().subplots()
    draw(ax, res.frame, "test/acc", "tab:green", "test")
    mean = next(line for line in ax.get_lines() if line.get_label() == "test (mean)")
    assert list(mean.get_xdata()) == [100, 200, 400]
    assert list(mean.get_ydata()) == [0.35, 0.7, 1.0]  # seed 0 holds 1.0 at step 400
    assert recipe(res) == "AdamW, lr 0.001, weight decay 1, budget 100,000 steps"
