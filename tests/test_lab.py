"""The losses, optimizers and stability measures beyond the paper's recipe: each checked against
numbers computed by hand, and refused in one line where it cannot apply. Their exact resumption
is in test_knobs.py, their sweep in test_tune.py."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY

from grok.config import Config, ConfigError, TrainConfig
from grok.data import IGNORE
from grok.losses import LOSSES, loss_function, mse, stablemax_cross_entropy
from grok.optimizers import OrthogonalGrad
from grok.overrides import apply_overrides
from grok.stability import stability_metrics
from grok.train import Trainer, param_norm


def tiny(overrides: dict | None = None) -> Config:
    return apply_overrides(Config.from_dict(TINY), overrides or {}, "test")


# ---------------------------------------------------------------- losses


def test_stablemax_matches_values_computed_by_hand():
    # s(2, 0, -1) = (3, 1, 1/2), summing to 4.5: -log(3 / 4.5) = log 1.5, -log(0.5 / 4.5) = log 9
    logits = torch.tensor([[[2.0, 0.0, -1.0], [2.0, 0.0, -1.0], [7.0, 7.0, 7.0]]])
    targets = torch.tensor([[0, 2, IGNORE]])
    both = math.log(1.5) + math.log(9)
    assert stablemax_cross_entropy(logits, targets).item() == pytest.approx(both / 2)
    assert stablemax_cross_entropy(logits, targets, "sum").item() == pytest.approx(both)


def test_stablemax_gradient_stays_finite_at_a_logit_of_exactly_one():
    logits = torch.tensor([[[1.0, -2.0, 0.0]]], requires_grad=True)
    stablemax_cross_entropy(logits, torch.tensor([[1]])).backward()
    assert torch.isfinite(logits.grad).all()
    # d/dx_0 of log(sum s) at x_0 = 1: s' = 1 over the sum 2 + 1/3 + 1
    assert logits.grad[0, 0, 0].item() == pytest.approx(1 / (2 + 1 / 3 + 1))


def test_mse_sums_the_squared_error_over_classes_and_averages_over_tokens():
    logits = torch.tensor([[[0.5, -1.0, 2.0], [1.0, 0.0, 0.0], [9.0, 9.0, 9.0]]])
    targets = torch.tensor([[2, 0, IGNORE]])
    # (0.5^2 + 1^2 + (2 - 1)^2 + 0) over 2 scored tokens
    assert mse(logits, targets).item() == pytest.approx(2.25 / 2)
    assert mse(logits, targets, "sum").item() == pytest.approx(2.25)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_dtype_float64_scores_in_float64_and_gives_float32_gradients(name):
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0)).requires_grad_()
    targets = torch.tensor([[1, 4, IGNORE], [0, 2, 3]])
    wide = loss_function(TrainConfig(loss=name, loss_dtype="float64"))(logits, targets)
    narrow = loss_function(TrainConfig(loss=name))(logits, targets)
    assert wide.dtype == torch.float64 and narrow.dtype == torch.float32
    assert wide.item() == pytest.approx(LOSSES[name](logits.double(), targets).item(), abs=0)
    wide.backward()
    assert logits.grad.dtype == torch.float32


def test_evaluation_reports_the_loss_the_run_trains_with():
    trainer = Trainer(tiny({"train.loss": "mse"}))
    trainer.model.eval()
    with torch.no_grad():
        loss, logits, targets = trainer.loss_on(trainer.splits["test"])
    assert trainer.evaluate()["test/loss"] == pytest.approx(mse(logits, targets).item())


# ---------------------------------------------------------------- optimizers and wrappers


def test_orthogonal_grad_removes_the_weights_direction_and_keeps_the_norm():
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(3, 4, generator=gen), torch.randn(5, generator=gen), torch.zeros(2)]
    raw = [torch.randn(p.shape, generator=gen) for p in params]
    grads = [g.clone() for g in raw]
    OrthogonalGrad(params).apply(grads)
    for w, g, g0 in zip(params[:2], grads, raw):
        by_hand = g0 - (w * g0).sum() / (w * w).sum() * w
        torch.testing.assert_close(g, by_hand * g0.norm() / by_hand.norm())
        assert abs(float((g * w).sum())) < 1e-5 * float(g.norm() * w.norm())
    assert torch.equal(grads[2], raw[2])  # zero weights: nothing to remove


def test_orthogonal_grad_is_what_the_optimizer_sees(monkeypatch):
    trainer = Trainer(tiny({"optim.orthogonal_grad": True}))
    seen = []
    monkeypatch.setattr(
        trainer.optimizer, "step", lambda: seen.append([p.grad.clone() for p in trainer.params])
    )
    trainer.train_step()
    for w, g in zip(trainer.params, seen[0]):
        w = w.detach()
        assert abs(float((g * w).sum())) <= 1e-5 * float(g.norm() * w.norm()) + 1e-12


def test_fixed_norm_holds_from_the_start_and_after_every_step():
    trainer = Trainer(tiny({"optim.fixed_norm": 12.5, "optim.weight_decay": 0.0}))
    assert param_norm(trainer.params) == pytest.approx(12.5, rel=1e-6)
    for _ in range(3):
        before = [p.detach().clone() for p in trainer.params]
        trainer.train_step()
        assert param_norm(trainer.params) == pytest.approx(12.5, rel=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.params))


def test_muon_takes_the_block_matrices_and_adamw_the_rest_at_their_own_rates():
    cfg = tiny({"optim.name": "muon", "optim.muon_lr": 0.05, "optim.weight_decay": 0.5})
    trainer = Trainer(cfg)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    muon, adamw = trainer.optimizer.parts["muon"], trainer.optimizer.parts["adamw"]
    take = lambda opt: {names[id(p)] for g in opt.param_groups for p in g["params"]}
    matrices = {f"blocks.0.{m}.weight" for m in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")}
    assert take(muon) == matrices
    assert take(adamw) == set(names.values()) - matrices
    trainer.step = cfg.optim.warmup_steps  # past the warm-up: the set rates
    trainer.train_step()
    (m,), (a,) = muon.param_groups, adamw.param_groups
    assert m["lr"] == pytest.approx(0.05) and a["lr"] == cfg.optim.lr
    # Both shrink their weights by lr * weight_decay a step.
    assert m["lr"] * m["weight_decay"] == pytest.approx(a["lr"] * a["weight_decay"])


def test_muon_takes_the_mlp_models_hidden_matrix_and_it_trains():
    cfg = tiny({"optim.name": "muon", "model.kind": "mlp"})
    trainer = Trainer(cfg)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    muon, adamw = trainer.optimizer.parts["muon"], trainer.optimizer.parts["adamw"]
    take = lambda opt: {names[id(p)] for g in opt.param_groups for p in g["params"]}
    assert take(muon) == {"hidden.weight"}
    assert take(adamw) == set(names.values()) - {"hidden.weight"}
    before = trainer.model.hidden.weight.detach().clone()
    trainer.train_step()
    assert not torch.equal(before, trainer.model.hidden.weight)


# ---------------------------------------------------------------- stability measures


def test_softmax_collapse_is_none_for_small_logits_and_appears_when_they_grow():
    trainer = Trainer(tiny())
    for _ in range(20):  # until some training answers are right
        trainer.train_step()
    train = trainer.splits["train"]
    measure = lambda: stability_metrics(trainer.model, train, trainer.loss, 1024)
    assert measure()["stability/sc_fraction"] == 0.0
    with torch.no_grad():
        trainer.model.head.weight.mul_(1e4)  # logit gaps far beyond float32's resolution
    right = trainer.evaluate()["train/acc"]
    assert right > 0 and measure()["stability/sc_fraction"] == right  # the right ones collapse


def test_nlm_cosine_and_layer_norms_match_a_direct_computation():
    trainer = Trainer(tiny({"train.loss": "stablemax"}))
    for _ in range(3):
        trainer.train_step()
    found = stability_metrics(trainer.model, trainer.splits["train"], trainer.loss, 7)
    trainer.model.eval()
    trainer.optimizer.zero_grad()
    trainer.loss_on(trainer.splits["train"])[0].backward()
    g = torch.cat([p.grad.flatten() for p in trainer.params])
    w = torch.cat([p.detach().flatten() for p in trainer.params])
    cosine = float(g @ w / (g.norm() * w.norm()))
    assert found["stability/nlm_cosine"] == pytest.approx(cosine, rel=1e-4)
    head, qkv = trainer.model.head, trainer.model.blocks[0].attn.qkv
    assert found["norm/head"] == pytest.approx(float(head.weight.detach().norm()))
    both = torch.cat([qkv.weight.detach().flatten(), qkv.bias.detach().flatten()])
    assert found["norm/blocks.0.attn.qkv"] == pytest.approx(float(both.norm()))


def fit(trainer: Trainer) -> list[dict]:
    """Train to the end; every evaluation's metrics but the timing."""
    seen: list[dict] = []
    trainer.fit(lambda e: seen.append({k: v for k, v in e.metrics.items() if k != "steps_per_s"}))
    return seen


def test_a_run_with_the_measures_trains_exactly_as_one_without():
    overrides = {"model.dropout": 0.2, "train.steps": 30}  # dropout draws random numbers
    plain = Trainer(tiny(overrides))
    without = fit(plain)
    measured = Trainer(tiny({**overrides, "analysis.stability": True}))
    with_them = fit(measured)
    assert all("stability/nlm_cosine" in m for m in with_them)
    assert [{k: m[k] for k in a} for a, m in zip(without, with_them, strict=True)] == without
    for a, b in zip(plain.params, measured.params):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"train.loss": "mse", "task.tokenizer": "char"}, "train.loss: 'mse'"),
        ({"optim.name": "muon", "optim.decay_target": "init"}, "optim.decay_target"),
        ({"optim.fixed_norm": 10.0, "model.init_scale": 0.5}, "model.init_scale"),
        ({"optim.fixed_norm": 0.0}, "optim.fixed_norm"),
        ({"optim.muon_lr": -1.0}, "optim.muon_lr"),
        ({"train.loss": "hinge"}, "train.loss"),
        ({"train.loss_dtype": "float16"}, "train.loss_dtype"),
    ],
)
def test_settings_that_cannot_work_are_refused_in_one_line(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        tiny(overrides)
    assert fragment in str(err.value) and "\n" not in str(err.value)
