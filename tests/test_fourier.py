"""Progress measures: the embedding's spectrum, restricted and excluded loss on built cases, the
`analysis` section, the trainer's metrics, Tune's records and the figure."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import TINY, assert_one_line_error, run_cli, write_experiment

from grok.config import GROUP_OPS, Config, ConfigError, TaskConfig
from grok.data import build_splits
from grok.fourier import (
    SIGNS,
    build_table,
    excluded_logits,
    frequency_energy,
    gini,
    group_residues,
    key_frequencies,
    primitive_root,
    progress_metrics,
    restricted_logits,
    top_share,
    wave_basis,
)
from grok.overrides import apply_overrides
from grok.results import read_reports, trial_dirs
from grok.run import main
from grok.train import Trainer
from plotting import curves
from plotting.frames import Results, load

ON = {"analysis.progress": True, "analysis.top_k": 2}


def tiny(overrides: dict | None = None) -> Config:
    return apply_overrides(Config.from_dict(TINY), overrides or {}, "test")


def waves(n: int, freqs: list[int], d: int, seed: int = 0) -> torch.Tensor:
    """Rows x = 0..n-1 of sum_k cos(w_k x) u_k + sin(w_k x) v_k, plus a constant row."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(n, dtype=torch.float64)[:, None]
    rows = torch.randn(1, d, generator=g, dtype=torch.float64).expand(n, d).clone()
    for k in freqs:
        u, v = torch.randn(2, 1, d, generator=g, dtype=torch.float64)
        rows += torch.cos(2 * math.pi * k * x / n) * u + torch.sin(2 * math.pi * k * x / n) * v
    return rows


# ---------------------------------------------------------------- natural coordinates


def test_the_measured_operations_are_those_the_config_accepts():
    assert set(SIGNS) == set(GROUP_OPS)


@pytest.mark.parametrize("p, g", [(7, 3), (11, 2), (13, 2), (97, 5), (113, 3)])
def test_primitive_root_generates_every_nonzero_residue(p, g):
    assert primitive_root(p) == g
    assert sorted(group_residues("/", p)) == list(range(1, p))


@pytest.mark.parametrize("op, p", [("+", 13), ("-", 13), ("/", 13), ("/", 11)])
def test_each_answer_sits_at_x_plus_or_minus_y_in_the_group(op, p):
    residues = group_residues(op, p)
    coord = {r: x for x, r in enumerate(residues)}
    splits = build_splits(TaskConfig(op=op, p=p, train_fraction=0.5, val_fraction=0.1))
    table = build_table(op, p, splits)
    n = len(residues)
    assert len(table.s) == n * n  # the whole group's table: a = 0 rows of division left out
    assert int(table.train.sum()) == sum(e.a in coord for e in splits["train"].examples)
    answers = [coord[int(c)] for c in table.target]  # token id c is residue c
    assert answers == [int(s) % n for s in table.s]


# ---------------------------------------------------------------- the embedding's spectrum


@pytest.mark.parametrize("n", [97, 96])
def test_energies_add_up_to_the_centred_squared_norm(n):
    rows = torch.randn(n, 16, dtype=torch.float64)
    energy = frequency_energy(rows)
    assert len(energy) == n // 2
    assert energy.sum().item() == pytest.approx((rows - rows.mean(0)).pow(2).sum().item())


def test_three_pure_frequencies_are_the_keys_and_hold_all_the_energy():
    energy = frequency_energy(waves(97, [4, 17, 41], d=128))
    assert sorted(key_frequencies(energy, 3)) == [4, 17, 41]
    assert top_share(energy, 3) == pytest.approx(1.0, abs=1e-9)
    assert gini(energy.sqrt()) > 0.9  # 3 of 48 frequencies hold everything: (45/48 at most)


def test_a_random_embedding_spreads_its_energy():
    energy = frequency_energy(torch.randn(97, 128, generator=torch.Generator().manual_seed(0)))
    assert top_share(energy, 5) < 0.2  # 5 of 48 frequencies: about 0.1
    assert gini(energy.sqrt()) < 0.1


def test_gini_is_zero_for_equal_values_and_near_one_for_a_single_one():
    assert gini(torch.ones(10)) == pytest.approx(0.0)
    assert gini(torch.tensor([0.0] * 9 + [3.0])) == pytest.approx(0.9)


def test_the_trainer_entry_point_reads_division_in_discrete_log_order():
    """Embedding rows that are pure waves of log_g a (g = 5 for p = 97) give those frequencies."""
    cfg = apply_overrides(Config(), {**ON, "task.p": 97, "analysis.top_k": 3}, "test")
    trainer = Trainer(cfg, device="cpu")
    with torch.no_grad():
        trainer.model.tok_emb.weight[group_residues("/", 97)] = waves(96, [5, 20, 48], 128).float()
    m = progress_metrics(trainer.model, trainer.splits, cfg)
    assert {m[f"progress/key_freq_{i}"] for i in (1, 2, 3)} == {5, 20, 48}
    assert m["progress/fourier_share"] == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------- restricted and excluded loss


def fourier_logits(op: str, p: int, freqs: list[int], scale: float, vocab: int):
    """A hand-built Fourier model on the whole table: logit(c) = scale * sum_k cos(w_k(s - z_c))
    for each residue c in the group (z_c its coordinate), -5 for every other token."""
    splits = build_splits(TaskConfig(op=op, p=p, train_fraction=0.5, val_fraction=0.0))
    table = build_table(op, p, splits)
    residues = group_residues(op, p)
    n = len(residues)
    logits = torch.full((len(table.s), vocab), -5.0, dtype=torch.float64)
    z = torch.arange(n, dtype=torch.float64)
    s = table.s.double()[:, None]
    logits[:, residues] = scale * sum(torch.cos(2 * math.pi * k * (s - z) / n) for k in freqs)
    return table, logits, n


@pytest.mark.parametrize("op", ["+", "-", "/"])
def test_a_fourier_model_loses_nothing_restricted_and_everything_excluded(op):
    table, logits, n = fourier_logits(op, 23, [2, 7, 9], scale=10.0, vocab=30)
    basis = wave_basis(table.s, n, [2, 7, 9])
    restricted = restricted_logits(logits, basis)
    assert torch.allclose(restricted, logits, atol=1e-9)
    full = F.cross_entropy(logits, table.target).item()
    assert full < 0.05  # the waves add up to 30 at the answer, well above the rest
    assert F.cross_entropy(restricted, table.target).item() == pytest.approx(full, rel=1e-9)
    train = table.train
    excluded = F.cross_entropy(excluded_logits(logits, basis)[train], table.target[train])
    assert excluded.item() > math.log(n) - 0.05  # no better than a uniform guess among residues


def test_restricting_to_other_frequencies_keeps_nothing_of_a_fourier_model():
    table, logits, n = fourier_logits("+", 23, [2, 7, 9], scale=4.0, vocab=30)
    basis = wave_basis(table.s, n, [3, 5])
    restricted = restricted_logits(logits, basis)
    assert torch.allclose(restricted, logits.mean(0, keepdim=True).expand_as(logits), atol=1e-9)
    excluded = excluded_logits(logits, basis)
    assert torch.allclose(excluded, logits, atol=1e-9)


def test_a_memorizing_model_keeps_its_train_loss_when_the_key_waves_are_removed():
    """A lookup table of the training answers (no wave structure) stays right on them when the
    key waves are removed, and restricted to those waves it is poor on the whole table."""
    table, _, n = fourier_logits("+", 23, [1], scale=0.0, vocab=30)
    logits = torch.randn(len(table.s), 30, generator=torch.Generator().manual_seed(0)).double()
    rows = torch.nonzero(table.train).flatten()
    logits[rows, table.target[rows]] += 8.0
    basis = wave_basis(table.s, n, [2, 7, 9])
    train = F.cross_entropy(logits[rows], table.target[rows]).item()
    excluded = F.cross_entropy(excluded_logits(logits, basis)[rows], table.target[rows]).item()
    restricted = F.cross_entropy(restricted_logits(logits, basis), table.target).item()
    assert train < 0.05 and excluded < 0.1  # still far below chance, log(23) = 3.1
    # Each answer's spikes lie on a line a + b = c, whose energy is spread evenly over all 11
    # frequencies: the 3 kept carry some of it, far from enough.
    assert restricted > 1.0 > 20 * train


# ---------------------------------------------------------------- configuration


def test_progress_measures_are_off_by_default():
    assert Config().analysis.progress is False
    assert not any(k.startswith("progress/") for k in Trainer(tiny({"train.steps": 1})).fit())


@pytest.mark.parametrize(
    "overrides, names",
    [
        (
            {"task.kind": "text", "task.text": "abc", "task.tokenizer": "char"},
            ["analysis.progress", "modular", "'text'"],
        ),
        ({"task.tokenizer": "char"}, ["analysis.progress", "number tokenizer"]),
        ({"analysis.top_k": 6}, ["analysis.top_k", "6 exceeds the 5 frequencies of + mod 11"]),
        ({"task.op": "/", "analysis.top_k": 6}, ["analysis.top_k", "frequencies of / mod 11"]),
        ({"analysis.top_k": 0}, ["analysis.top_k", "out of range"]),
    ],
)
def test_the_analysis_section_is_refused_where_it_cannot_apply(overrides, names):
    with pytest.raises(ConfigError) as err:
        tiny({"analysis.progress": True, **overrides})
    for name in names:
        assert name in str(err.value)
    tiny({"analysis.progress": True, "analysis.top_k": 5})  # the 5 frequencies of mod 11


def test_train_cli_refuses_the_measures_on_a_text_task_in_one_line(tmp_path):
    config = {"task": {"kind": "text", "text": "abc", "tokenizer": "char"}}
    path = write_experiment(tmp_path / "e.yaml", "e", {**config, "analysis": {"progress": True}})
    proc = run_cli("-m", "grok.train", str(path), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, "analysis.progress")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the trainer


def test_measures_are_reported_at_every_evaluation_and_change_nothing_else():
    steps = {"train.steps": 40}
    plain = []
    Trainer(tiny(steps)).fit(lambda e: plain.append(e.metrics))
    measured = []
    Trainer(tiny({**steps, **ON})).fit(lambda e: measured.append(e.metrics))
    assert [m["step"] for m in measured] == [m["step"] for m in plain]
    names = {"fourier_share", "fourier_gini", "key_freq_1", "key_freq_2"}
    losses = {"restricted_loss", "restricted_test_loss", "restricted_test_acc", "excluded_loss"}
    names = {f"progress/{k}" for k in names | losses}
    for a, b in zip(plain, measured):
        assert set(b) - set(a) == names
        assert {k: v for k, v in b.items() if k not in names and k != "steps_per_s"} == {
            k: v for k, v in a.items() if k != "steps_per_s"
        }
        assert 0 < b["progress/fourier_share"] <= 1 and 0 <= b["progress/fourier_gini"] < 1
        assert {b["progress/key_freq_1"], b["progress/key_freq_2"]} <= {1, 2, 3, 4, 5}
        assert b["progress/restricted_loss"] > 0 and b["progress/excluded_loss"] > 0
        assert b["progress/restricted_test_loss"] > 0
        assert 0 <= b["progress/restricted_test_acc"] <= 1


def test_train_cli_writes_the_measures_to_metrics_csv(tmp_path):
    path = write_experiment(tmp_path / "e.yaml", "e", {**TINY, "analysis": {"progress": True}})
    assert main([str(path), "--out", str(tmp_path / "out"), "--set", "train.steps=20"]) == 0
    with open(tmp_path / "out" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 2 and all(float(r["progress/restricted_loss"]) > 0 for r in rows)
    for r in rows:  # top_k 5 of the 5 frequencies of mod 11: every one, all the energy
        assert {int(r[f"progress/key_freq_{i}"]) for i in range(1, 6)} == {1, 2, 3, 4, 5}
        assert float(r["progress/fourier_share"]) == pytest.approx(1.0)


# ---------------------------------------------------------------- Tune and the figure


def reports_to(reports: list[dict]):
    return lambda event: reports.append(event.metrics)


def write_results(root, name: str, overrides: dict) -> Results:
    """Two seeds of the tiny config, trained for real, in Tune's folder layout."""
    cfg = tiny(overrides)
    folder = root / name
    folder.mkdir(parents=True)
    record = {"name": name, "grid": {"seed": [0, 1]}, "config": cfg.to_dict()}
    (folder / "experiment.yaml").write_text(yaml.safe_dump(record))
    for seed in (0, 1):
        reports: list[dict] = []
        Trainer(apply_overrides(cfg, {"seed": seed}, "test")).fit(reports_to(reports))
        trial = folder / f"seed={seed}"
        trial.mkdir()
        (trial / "params.json").write_text(json.dumps({"seed": seed}))
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in reports))
    return load(folder)


def test_curves_draw_the_measures_under_the_accuracy_when_reported(tmp_path):
    with_measures = write_results(tmp_path, "measured", {**ON, "train.steps": 40})
    paths = curves.write(with_measures, tmp_path / "plots")
    assert paths["progress"].name == "progress.png" and paths["progress"].stat().st_size > 20_000
    assert curves.key_freq_metrics(with_measures) == ["progress/key_freq_1", "progress/key_freq_2"]
    plain = write_results(tmp_path, "plain", {"train.steps": 20})
    assert "progress" not in curves.write(plain, tmp_path / "plain_plots")


def test_a_tune_sweep_records_the_measures(tmp_path, ray_address):
    config = {**TINY, "analysis": {"progress": True, "top_k": 3}}
    path = write_experiment(tmp_path / "pm.yaml", "pm", config, {"seed": [0]})
    storage = tmp_path / "results"
    proc = run_cli("tune_main.py", str(path), "--storage", str(storage), "--address", ray_address)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (trial,) = trial_dirs(storage / "pm")
    reports = read_reports(trial)
    assert len(reports) > 2 and reports[-1]["status"] == "finished"
    for r in reports:
        assert {r[f"progress/key_freq_{i}"] for i in (1, 2, 3)} <= {1, 2, 3, 4, 5}
        assert math.isfinite(r["progress/restricted_loss"])
        assert math.isfinite(r["progress/excluded_loss"])
    assert "progress/key_freq_4" not in reports[0]


def test_halfway_steps_and_fixed_keys_from_a_hand_made_curve():
    import pandas as pd

    from plotting.progress import halfway, interval_before, keys_fixed, verdict

    curve = pd.DataFrame(
        {
            "step": [0, 100, 200, 300, 400],
            "test/acc": [0.0, 0.1, 0.2, 0.9, 1.0],
            "progress/fourier_share": [0.1, 0.3, 0.6, 0.9, 0.9],
            "progress/excluded_loss": [1.0, 1.0, 3.0, 5.0, 5.0],
            "progress/key_freq_1": [3, 7, 14, 14, 14],
            "progress/key_freq_2": [9, 14, 7, 7, 7],
        }
    )
    assert halfway(curve, "test/acc") == 300  # 0.9 is the first value at or past 0.5
    assert halfway(curve, "progress/fourier_share") == 200  # (0.6 - 0.1) / 0.8 >= 0.5
    assert halfway(curve, "progress/excluded_loss") == 200  # a rise: (3 - 1) / 4
    assert keys_fixed(curve) == 100  # {7, 14} from step 100 on, in either order
    assert halfway(curve, "progress/fourier_share", 0.1) == 100  # (0.3 - 0.1) / 0.8 >= 0.1
    late = curve.assign(**{"progress/key_freq_1": [3, 7, 14, 14, 2]})
    assert keys_fixed(late) is None  # changed at the last evaluation: not settled
    assert interval_before(curve, 300) == 100 and interval_before(curve, 0) == 0
    cols = ["Fourier share starts", "test acc starts", "restricted loss half-way"]
    cols += ["test loss half-way", "loss resolution"]
    runs = [(50, 100, 200, 450, 100), (400, 100, 500, 450, 100), (50, 100, 420, 450, 50)]
    text = verdict(pd.DataFrame(runs, columns=cols).assign(**{"restricted acc half-way": None}))
    assert "start against test accuracy's: the measure first in 2 of 3 runs" in text
    assert "loss's half-way step against the test loss's: the measure first in 2 of 3" in text
    assert "leads 250, -50, 30 at resolutions 100, 100, 50 steps: 1 of 3 longer" in text
