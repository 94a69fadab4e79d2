"""The model settings (model.kind, model.activation, model.layer_norm) and train.full_batch: the
MLP learns, activations are what they say, the default transformer is what it was, the rules
refuse what cannot work, and the progress measures read the MLP."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from conftest import TINY, assert_one_line_error, run_cli, write_experiment

from grok.config import Config, ConfigError, ModelConfig
from grok.data import build_splits
from grok.experiment import load_experiment
from grok.fourier import progress_metrics
from grok.model import GPT, MLP, FeedForward, build_model
from grok.overrides import apply_overrides
from grok.train import Trainer

MLP_TINY = {"model.kind": "mlp", "optim.lr": 1e-2, "optim.weight_decay": 0.1}


def tiny(overrides: dict | None = None) -> Config:
    return apply_overrides(Config.from_dict(TINY), overrides or {}, "test")


def test_the_default_model_is_the_transformer_it_was():
    # Figures of the transformer before these settings existed (seed 0, vocabulary 100).
    torch.manual_seed(0)
    model = build_model(ModelConfig(), 100)
    torch.manual_seed(0)
    plain = GPT(ModelConfig(), 100)
    assert type(model) is GPT
    assert sum(p.numel() for p in model.parameters()) == 430592
    for (name, p), (same, q) in zip(model.state_dict().items(), plain.state_dict().items()):
        assert name == same and torch.equal(p, q)
    assert float(model.tok_emb.weight.detach().double().abs().sum()) == pytest.approx(
        10244.679916, 1e-7
    )
    x = torch.randint(0, 100, (8, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert float(model(x, cols=slice(3, 4)).double().sum()) == pytest.approx(-60.770475, 1e-5)


def test_a_default_run_trains_as_it_did():
    # TINY's losses after 20 steps before these settings existed
    metrics = Trainer(tiny({"train.steps": 20})).fit()
    assert metrics["train/loss"] == pytest.approx(2.4862794222897047, rel=1e-6)
    assert metrics["test/loss"] == pytest.approx(2.650425434112549, rel=1e-6)


@pytest.mark.parametrize(
    "name, by_hand",
    [
        ("gelu", lambda h: h * 0.5 * (1 + torch.erf(h / math.sqrt(2)))),
        ("relu", lambda h: h.clamp(min=0)),
        ("quadratic", lambda h: h * h),
    ],
)
def test_each_activation_is_computed_as_written(name, by_hand):
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=8, d_ff=16, activation=name)
    ff, mlp = FeedForward(cfg), MLP(cfg, 10)
    x = torch.randn(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(ff(x), ff.proj(by_hand(ff.fc(x))))
        idx = torch.tensor([[1, 7, 3, 9], [4, 7, 4, 9]])  # a op b =
        both = torch.cat([mlp.tok_emb.weight[idx[:, 0]], mlp.tok_emb.weight[idx[:, 2]]], dim=1)
        by_layers = mlp.head(by_hand(mlp.hidden(both)))[:, None]
        torch.testing.assert_close(mlp(idx, cols=slice(3, 4)), by_layers)


def test_the_mlp_answers_at_one_position_and_reads_only_the_operands():
    torch.manual_seed(0)
    mlp = MLP(ModelConfig(d_model=8, d_ff=16), 10)
    x = torch.tensor([[1, 7, 3, 9], [1, 8, 3, 8]])  # other op and `=` tokens: same operands
    with torch.no_grad():
        out = mlp(x, cols=slice(3, 4))
    assert out.shape == (2, 1, 10)
    assert torch.equal(out[0], out[1])


def test_without_layer_norm_the_transformer_has_no_layer_norm_module():
    with_ln = GPT(ModelConfig(n_layer=2, d_model=16, n_head=2, d_ff=32), 10)
    without = GPT(ModelConfig(n_layer=2, d_model=16, n_head=2, d_ff=32, layer_norm=False), 10)
    assert sum(isinstance(m, nn.LayerNorm) for m in with_ln.modules()) == 5
    assert not any(isinstance(m, nn.LayerNorm) for m in without.modules())
    x = torch.randint(0, 10, (3, 5))
    assert without(x, cols=slice(4, 5)).shape == (3, 1, 10)


def test_the_mlp_learns_addition_mod_11():
    cfg = tiny({**MLP_TINY, "model.activation": "quadratic", "train.steps": 200})
    trainer = Trainer(cfg)
    assert isinstance(trainer.model, MLP)
    metrics = trainer.fit()
    assert metrics["train/acc"] == 1.0 and metrics["train/loss"] < 0.05


def test_progress_measures_read_the_mlp():
    cfg = tiny({**MLP_TINY, "analysis.progress": True, "analysis.top_k": 2})
    torch.manual_seed(0)
    model = build_model(cfg.model, 16)
    found = progress_metrics(model, build_splits(cfg.task), cfg)
    assert set(found) >= {"progress/fourier_share", "progress/restricted_loss"}
    assert all(math.isfinite(v) for v in found.values())
    assert 0 < found["progress/fourier_share"] <= 1


@pytest.mark.parametrize("batch_size", [16, "full"])
def test_full_batch_steps_on_the_whole_split_whatever_batch_size_says(batch_size, monkeypatch):
    trainer = Trainer(tiny({"train.full_batch": True, "train.batch_size": batch_size}))
    n = len(trainer.splits["train"])
    seen = []
    loss_on = trainer.loss_on
    monkeypatch.setattr(
        trainer, "loss_on", lambda split, rows: seen.append(rows) or loss_on(split, rows)
    )
    trainer.train_step()
    assert trainer.batch_size == n and sorted(seen[0].tolist()) == list(range(n))
    assert Trainer(tiny({"train.batch_size": "full"})).batch_size == n  # as before
    assert Trainer(tiny()).batch_size == 16


@pytest.mark.parametrize(
    "overrides",
    [
        {"model.kind": "mlp", "task.tokenizer": "char"},
        {"model.kind": "mlp", "task.kind": "text", "task.text": "abc", "task.tokenizer": "char"},
    ],
)
def test_the_mlp_is_refused_where_it_cannot_read_two_operands(overrides):
    with pytest.raises(ConfigError, match="model.kind: 'mlp' reads two operand tokens") as err:
        tiny(overrides)
    assert "\n" not in str(err.value)


def test_heads_need_not_divide_the_mlps_embedding():
    assert tiny({"model.kind": "mlp", "model.d_model": 10, "model.n_head": 4}).model.d_model == 10
    with pytest.raises(ConfigError, match="model.n_head"):
        tiny({"model.d_model": 10, "model.n_head": 4})


def test_model_kind_is_a_grid_axis_and_a_bad_combination_is_refused_before_ray(tmp_path):
    path = write_experiment(
        tmp_path / "kinds.yaml", "kinds", grid={"model.kind": ["transformer", "mlp"]}
    )
    assert len(load_experiment(path).trials()) == 2
    bad = {**TINY, "task": {**TINY["task"], "tokenizer": "char"}}
    path = write_experiment(tmp_path / "bad.yaml", "bad", bad, grid={"model.kind": ["mlp"]})
    line = assert_one_line_error(run_cli("tune_main.py", str(path)), "model.kind", "'mlp'")
    assert "tokenizer 'char'" in line


def test_nandas_init_is_the_transformers_alone():
    with pytest.raises(ConfigError, match="model.init: 'nanda' is the transformer's") as err:
        tiny({"model.kind": "mlp", "model.init": "nanda"})
    assert "\n" not in str(err.value)
    assert tiny({"model.init": "nanda"}).model.init == "nanda"
