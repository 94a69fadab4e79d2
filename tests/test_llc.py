"""The local learning coefficient (analysis.llc): a finite estimate, the same for the same seed,
reported at checkpoints only, and a run that trains exactly as it does without it; the figure and
sentence of the measures (LLC, stability, per-layer norms) when a run reports them."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch
from conftest import TINY

from grok.config import Config, ConfigError
from grok.overrides import apply_overrides
from grok.train import Trainer

needs_devinterp = pytest.mark.skipif(
    importlib.util.find_spec("devinterp") is None,
    reason="devinterp is not installed (pip install -r requirements-test.txt)",
)
FEW = {"analysis.llc_draws": 8, "analysis.llc_chains": 2, "analysis.llc_batch_size": 32}


def tiny(overrides: dict) -> Config:
    return apply_overrides(Config.from_dict(TINY), overrides, "test")


@needs_devinterp
def test_the_estimate_is_finite_and_the_same_for_the_same_seed():
    from grok.llc import llc_metrics

    cfg = tiny({"analysis.llc": True, **FEW})
    trainer = Trainer(cfg)
    args = (trainer.model, trainer.splits["train"], trainer.cols["train"])
    first, again = llc_metrics(*args, cfg), llc_metrics(*args, cfg)
    assert set(first) == {"llc/mean", "llc/std"}
    assert all(math.isfinite(v) for v in first.values()) and first["llc/std"] >= 0
    assert first == again
    other = llc_metrics(*args, apply_overrides(cfg, {"analysis.llc_seed": 1}, "test"))
    assert other["llc/mean"] != first["llc/mean"]


@needs_devinterp
def test_a_run_with_the_llc_trains_exactly_as_one_without_and_reports_it_at_checkpoints():
    def run(on: bool):
        trainer, reports = Trainer(tiny({"train.steps": 40, "analysis.llc": on, **FEW})), []
        trainer.fit(lambda event: reports.append(event.metrics))
        return trainer, reports, torch.get_rng_state()

    (plain, without, rng), (measured, with_llc, rng_llc) = run(False), run(True)
    for p, q in zip(plain.model.parameters(), measured.model.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(rng, rng_llc)
    assert plain.batch_rng.get_state().equal(measured.batch_rng.get_state())
    skip = ("steps_per_s", "llc/mean", "llc/std")
    for a, b in zip(without, with_llc):
        assert {k: v for k, v in a.items() if k not in skip} == {
            k: v for k, v in b.items() if k not in skip
        }
    assert [m["step"] for m in with_llc if "llc/mean" in m] == [20, 40]  # checkpoint_every 20
    assert not any("llc/mean" in m for m in without)


def test_without_devinterp_the_setting_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(
        ConfigError, match=r'analysis.llc: needs devinterp.*pip install "\.\[interp\]"'
    ):
        tiny({"analysis.llc": True})
    assert tiny({"analysis.llc": False}).analysis.llc is False


def test_the_measures_figure_and_sentence_appear_only_when_reported(tmp_path):
    from test_plotting import write_experiment, write_trial

    from plotting import curves, sections
    from plotting.frames import load

    exp = write_experiment(tmp_path, "measured", {"seed": [0, 1]})
    for seed, llc in ((0, 4.0), (1, 6.0)):
        trial = write_trial(exp, {"seed": seed}, [0.5] * 11, [0.1] * 11)
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        for row in rows:
            row["norm/blocks.0"] = 10.0 - row["step"] / 1000
            if row["step"] % 500 == 0 and row["step"]:  # checkpoints only
                row.update({"llc/mean": llc + row["step"] / 1000, "llc/std": 0.5})
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = load(exp)
    assert curves.measure_panels(res) == {"llc": ["llc/mean"], "norm": ["norm/blocks.0"]}
    paths = curves.write(res, tmp_path / "plots")
    assert paths["measures"].name == "measures.png" and paths["measures"].stat().st_size > 10_000
    text = sections.measures_text(res)
    assert "`llc/mean` 6 (runs 5 to 7)" in text and "`norm/blocks.0` 9" in text
    plain = write_experiment(tmp_path, "plain", {"seed": [0]})
    write_trial(plain, {"seed": 0}, [0.5] * 11, [0.1] * 11)
    assert "measures" not in curves.write(load(plain), tmp_path / "plain_plots")
