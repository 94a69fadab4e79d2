"""A grid of two varied keys as a map (plotting/grid_map.py), the `smallest:KEY` measure of a
claim, and the report of a grid too large for a panel per setting."""

from __future__ import annotations

from conftest import run_cli
from test_plotting import STEPS, write_experiment, write_trial

from plotting import claims, grid_map
from plotting.frames import MAX_PANELS, load

OP, FRAC = "task.op", "task.train_fraction"
RISE = [0.0, 0.5, 0.995, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # train: 99% at step 200
FLAT = [0.1] * len(STEPS)


def crossing_at(step: int) -> list[float]:
    """Test accuracy that first reaches 99% at `step`."""
    return [0.995 if s >= step else 0.2 for s in STEPS]


def ops_fractions(root):
    """Two operations at three fractions, two seeds; hand-known crossings:
    +: 0.3 one of two (700), 0.5 both (300, 500), 0.7 both (300, 300);
    -: 0.3 none, 0.5 one ended and reached (900) and one interrupted, 0.7 both (500, 700)."""
    grid = {OP: ["+", "-"], FRAC: [0.3, 0.5, 0.7], "seed": [0, 1]}
    exp = write_experiment(root, "ops", grid)
    crossings = {
        ("+", 0.3): [None, 700],
        ("+", 0.5): [300, 500],
        ("+", 0.7): [300, 300],
        ("-", 0.3): [None, None],
        ("-", 0.5): [900, "running"],
        ("-", 0.7): [500, 700],
    }
    for (op, frac), runs in crossings.items():
        for seed, at in enumerate(runs):
            params = {OP: op, FRAC: frac, "seed": seed}
            if at == "running":
                write_trial(exp, params, RISE[:6], FLAT[:6], "running", STEPS[:6])
            else:
                write_trial(exp, params, RISE, FLAT if at is None else crossing_at(at))
    return exp


def test_each_cell_counts_the_ended_runs_that_reached_99_and_averages_only_them(tmp_path):
    res = load(ops_fractions(tmp_path / "results"))
    assert not res.crowded
    cells = grid_map.cells(res).set_index([OP, FRAC])
    assert cells.loc[("+", 0.3)][["ended", "reached", "mean_test_step"]].tolist() == [2, 1, 700]
    assert cells.loc[("+", 0.5)]["mean_test_step"] == 400
    assert cells.loc[("-", 0.3)][["ended", "reached"]].tolist() == [2, 0]
    minus_half = cells.loc[("-", 0.5)]
    assert minus_half[["ended", "reached", "not_ended"]].tolist() == [1, 1, 1]
    assert minus_half["mean_test_step"] == 900


def test_smallest_fraction_per_operation_reads_every_ended_run(tmp_path):
    res = load(ops_fractions(tmp_path / "results"))
    parts = claims.smallest_cell(res, FRAC)
    # +: every run from 0.5, one of two at 0.3; -: 0.5 counts its one ended run only.
    assert parts == [
        "op=+: 0.5 (2/2), 1/2 at 0.3",
        "op=-: 0.5 (1/1)",
        "1 run not ended, not counted",
    ]
    assert claims.ours(res, [f"smallest:{FRAC}"]) == "; ".join(parts)
    assert "needs a grid" in claims.smallest_cell(res, "optim.lr")[0]


def test_the_map_command_draws_a_two_key_grid_and_refuses_others(tmp_path):
    folder = ops_fractions(tmp_path / "results")
    proc = run_cli("-m", "plotting.grid_map", str(folder), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "grid_map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one_key = write_experiment(tmp_path / "other", "wd", {"optim.weight_decay": [0.1, 1.0]})
    write_trial(one_key, {"optim.weight_decay": 0.1}, RISE, crossing_at(500))
    proc = run_cli("-m", "plotting.grid_map", str(one_key))
    assert proc.returncode == 2 and "exactly two varied keys" in proc.stderr


def test_a_crowded_grid_gets_its_map_in_the_report_instead_of_a_panel_per_setting(tmp_path):
    side = 5  # 25 settings, over MAX_PANELS
    assert side * side > MAX_PANELS
    fractions = [round(0.1 * (i + 1), 1) for i in range(side)]
    grid = {OP: [f"op{i}" for i in range(side)], FRAC: fractions}
    exp = write_experiment(tmp_path / "results", "crowded", grid)
    for i in range(side):
        for j, frac in enumerate(fractions):
            test = crossing_at(300 + 100 * i) if j >= i else FLAT
            write_trial(exp, {OP: f"op{i}", FRAC: frac}, RISE, test)
            if i == j == 0:  # one trial in: the grid it belongs to is what decides
                assert load(exp).crowded
    assert load(exp).crowded
    out = tmp_path / "report"
    proc = run_cli("-m", "plotting.report", str(tmp_path / "results"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (out / "REPORT.md").read_text()
    assert "25 settings: more than a figure shows" in text and "metrics CSV" in text
    assert "![crowded grid map](crowded_grid_map.png)" in text
    assert (out / "crowded_grid_map.png").is_file() and (out / "crowded_grok_steps.csv").is_file()
    assert not (out / "crowded_curves.png").exists()
    assert not (out / "crowded_grok_steps.png").exists()
    assert "`crowded_final_metrics.md`" in text and "`crowded_grok_steps_summary.csv`" in text
    assert "| op0 | 0.1 |" not in text  # the per-setting tables are files, not the report's text
    rows = (out / "crowded_grid_map.csv").read_text().splitlines()
    assert len(rows) == 1 + side * side
