"""The knobs that change how fast grokking comes: each one's update checked by hand."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY

from grok.config import Config, ConfigError
from grok.grokfast import EMAFilter, MAFilter
from grok.model import GPT
from grok.overrides import apply_overrides
from grok.train import Trainer


def tiny(overrides: dict | None = None) -> Config:
    return apply_overrides(Config.from_dict(TINY), overrides or {}, "test")


def gradient_stream(k: int, shapes=((3, 2), (4,)), seed: int = 0) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen) for s in shapes] for _ in range(k)]


def test_ema_filter_adds_lamb_times_the_moving_average():
    alpha, lamb = 0.9, 2.0
    stream = gradient_stream(6)
    filt = EMAFilter(alpha, lamb)
    ema = None
    for raw in stream:
        grads = [g.clone() for g in raw]
        filt.apply(grads)
        ema = (
            [g.clone() for g in raw]
            if ema is None
            else [alpha * e + (1 - alpha) * g for e, g in zip(ema, raw)]
        )
        for out, g, e in zip(grads, raw, ema):
            torch.testing.assert_close(out, g + lamb * e)


def test_ma_filter_waits_for_a_full_window_then_adds_the_window_mean():
    window, lamb = 3, 5.0
    stream = gradient_stream(8)
    filt = MAFilter(window, lamb)
    for k, raw in enumerate(stream):
        grads = [g.clone() for g in raw]
        filt.apply(grads)
        if k + 1 < window:
            for out, g in zip(grads, raw):
                assert torch.equal(out, g)
            continue
        recent = stream[k + 1 - window : k + 1]
        for i, (out, g) in enumerate(zip(grads, raw)):
            mean = sum(r[i] for r in recent) / window
            torch.testing.assert_close(out, g + lamb * mean)


def zero_gradients(monkeypatch, trainer: Trainer) -> None:
    """Make the loss a constant, so only weight decay moves the weights."""
    real = trainer.loss_on

    def constant(split, rows=None):
        loss, logits, targets = real(split, rows)
        return loss * 0.0, logits, targets

    monkeypatch.setattr(trainer, "loss_on", constant)


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_decay_toward_init_leaves_initial_weights_fixed_without_gradients(monkeypatch, name):
    trainer = Trainer(
        tiny({"optim.name": name, "optim.decay_target": "init", "optim.weight_decay": 1.0})
    )
    start = [p.detach().clone() for p in trainer.model.parameters()]
    zero_gradients(monkeypatch, trainer)
    for _ in range(5):
        trainer.train_step()
    for p, p0 in zip(trainer.model.parameters(), start):
        assert torch.equal(p, p0)


def test_decoupled_decay_toward_init_shrinks_the_offset_by_lr_times_wd(monkeypatch):
    wd = 0.5
    trainer = Trainer(
        tiny({"optim.decay_target": "init", "optim.weight_decay": wd, "optim.warmup_steps": 0})
    )
    start = [p.detach().clone() for p in trainer.model.parameters()]
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)  # every weight 1 away from where it started
    zero_gradients(monkeypatch, trainer)
    steps, lr = 4, trainer.cfg.optim.lr
    for _ in range(steps):
        trainer.train_step()
    for p, p0 in zip(trainer.model.parameters(), start):
        torch.testing.assert_close(p - p0, torch.full_like(p, (1 - lr * wd) ** steps))


def test_decoupled_decay_toward_zero_shrinks_the_weights(monkeypatch):
    wd = 0.5
    trainer = Trainer(tiny({"optim.weight_decay": wd, "optim.warmup_steps": 0}))
    start = [p.detach().clone() for p in trainer.model.parameters()]
    zero_gradients(monkeypatch, trainer)
    trainer.train_step()
    lr = trainer.cfg.optim.lr
    for p, p0 in zip(trainer.model.parameters(), start):
        torch.testing.assert_close(p, p0 * (1 - lr * wd))


def test_coupled_decay_goes_through_adams_normalization(monkeypatch):
    # Adam with L2: the decay term wd * w is a gradient, which Adam's first step normalizes to
    # lr * sign(w), whatever wd is; AdamW's decoupled decay would move w by lr * wd * w instead.
    trainer = Trainer(
        tiny({"optim.name": "adam", "optim.weight_decay": 0.3, "optim.warmup_steps": 0})
    )
    start = [p.detach().clone() for p in trainer.model.parameters()]
    zero_gradients(monkeypatch, trainer)
    trainer.train_step()
    lr = trainer.cfg.optim.lr
    for p, p0 in zip(trainer.model.parameters(), start):
        g = 0.3 * p0  # Adam's first step: m_hat = g, v_hat = g^2
        expected = p0 - lr * g / (g.abs() + trainer.cfg.optim.eps)
        torch.testing.assert_close(p, expected, rtol=0, atol=1e-7)
        big = p0.abs() > 1e-3  # there the step is lr * sign(w), unlike AdamW's lr * wd * w
        torch.testing.assert_close(p[big], p0[big] - lr * torch.sign(p0[big]), rtol=0, atol=1e-6)


def test_grokfast_filter_is_applied_in_the_training_step(monkeypatch):
    cfg = tiny(
        {
            "grokfast.kind": "ema",
            "grokfast.alpha": 0.5,
            "grokfast.lamb": 3.0,
            "optim.weight_decay": 0.0,
        }
    )
    trainer = Trainer(cfg)
    seen_raw, seen_used = [], []
    real_step = trainer.optimizer.step

    def spy():
        seen_used.append([p.grad.clone() for p in trainer.model.parameters()])
        return real_step()

    real_apply = trainer.grad_filter.apply

    def record(grads):
        seen_raw.append([g.clone() for g in grads])
        real_apply(grads)

    monkeypatch.setattr(trainer.optimizer, "step", spy)
    monkeypatch.setattr(trainer.grad_filter, "apply", record)
    for _ in range(3):
        trainer.train_step()
    ema = seen_raw[0]
    for raw, used in zip(seen_raw, seen_used):
        ema = ema if raw is seen_raw[0] else [0.5 * e + 0.5 * g for e, g in zip(ema, raw)]
        for u, g, e in zip(used, raw, ema):
            torch.testing.assert_close(u, g + 3.0 * e)


def test_init_scale_multiplies_every_initial_parameter():
    cfg = tiny()
    torch.manual_seed(0)
    plain = GPT(cfg.model, 20)
    torch.manual_seed(0)
    scaled = GPT(apply_overrides(cfg, {"model.init_scale": 0.25}, "test").model, 20)
    for a, b in zip(plain.parameters(), scaled.parameters()):
        torch.testing.assert_close(b, 0.25 * a)


def test_full_batch_is_one_value_away():
    trainer = Trainer(tiny({"train.batch_size": "full"}))
    assert trainer.batch_size == len(trainer.splits["train"])


@pytest.mark.parametrize(
    "key, value",
    [
        ("grokfast.kind", "fast"),
        ("grokfast.alpha", 1.0),
        ("grokfast.window", 0),
        ("optim.decay_target", "one"),
        ("model.init_scale", 0.0),
    ],
)
def test_bad_knob_values_are_refused(key, value):
    with pytest.raises(ConfigError, match=key):
        tiny({key: value})


@pytest.mark.parametrize(
    "overrides",
    [
        {"grokfast.kind": "ema"},
        {"grokfast.kind": "ma", "grokfast.window": 7},
        {"optim.decay_target": "init"},
        {"optim.name": "adam", "optim.decay_target": "init", "model.init_scale": 2.0},
        {"optim.name": "muon"},
        {"optim.orthogonal_grad": True},
        {"optim.fixed_norm": 30.0, "optim.weight_decay": 0.0},
        {"train.loss": "stablemax", "train.loss_dtype": "float64"},
        {"train.loss": "mse", "analysis.stability": True},
    ],
    ids=lambda overrides: ",".join(f"{k}={v}" for k, v in overrides.items()),
)
def test_resume_with_a_knob_on_equals_the_uninterrupted_run(tmp_path, overrides):
    cfg = tiny(overrides)
    whole, seen = Trainer(cfg), []

    def record(event):
        seen.append({k: v for k, v in event.metrics.items() if k != "steps_per_s"})
        if event.step == 20:
            event.save(tmp_path / "mid")

    whole.fit(record)
    resumed = Trainer(cfg)
    resumed.load_checkpoint(tmp_path / "mid")
    after = []
    resumed.fit(lambda e: after.append({k: v for k, v in e.metrics.items() if k != "steps_per_s"}))
    assert after == [m for m in seen if m["step"] > 20]
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
