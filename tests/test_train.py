"""The trainer: loss on answers only, exact resumption, stop rules, and checkpoints it can trust."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import (
    TINY,
    Payload,
    assert_one_line_error,
    rewrite_manifest,
    run_cli,
    write_experiment,
)

from grok.checkpoint import CheckpointError, export_weights, load_model, read_checkpoint
from grok.config import Config
from grok.data import IGNORE
from grok.overrides import apply_overrides
from grok.train import Trainer, lr_at, next_eval_step, stop_status

METRICS = (
    "step train/loss train/acc val/loss val/acc test/loss test/acc lr param_norm steps_per_s "
    "grok/train_acc_99_step grok/test_acc_99_step grok/steps_to_grok_99 grok/steps_to_grok_100"
).split()


def tiny(overrides: dict | None = None) -> Config:
    """The shared tiny config (x+y mod 11, one small layer) with dotted `overrides`."""
    return apply_overrides(Config.from_dict(TINY), overrides or {}, "test")


def fit(trainer: Trainer) -> list[dict]:
    """Train to the end; the metrics of every evaluation."""
    seen: list[dict] = []
    trainer.fit(lambda event: seen.append(event.metrics))
    return seen


def lines_config(tmp_path, text: str, overrides: dict | None = None) -> Config:
    """The tiny model on a file of lines, scored after '='; all in training unless overridden."""
    path = tmp_path / "lines.txt"
    path.write_text(text)
    task = {"task.kind": "lines", "task.path": str(path), "task.tokenizer": "char"}
    task.update({"task.separator": "=", "task.train_fraction": 1.0, "task.val_fraction": 0.0})
    return tiny({**task, "optim.weight_decay": 0.0, **(overrides or {})})


# ---------------------------------------------------------------- learning


def test_loss_falls_on_a_tiny_task():
    settings = {"task.p": 7, "train.batch_size": "full", "optim.weight_decay": 0.0}
    seen = fit(Trainer(tiny({**settings, "train.steps": 100})))
    first, last = seen[0], seen[-1]
    assert first["train/loss"] > math.log(7)  # no better than chance at the start
    assert last["train/loss"] < 0.25 * math.log(7)
    assert last["train/acc"] > 0.75 > first["train/acc"]


def test_metrics_carry_the_stable_names():
    first = fit(Trainer(tiny({"train.steps": 10})))[0]
    assert set(METRICS) <= set(first)
    assert first["step"] == 0 and first["grok/test_acc_99_step"] is None
    assert first["steps_per_s"] == 0.0


def test_after_step_sees_every_step_once_in_order_and_leaves_the_run_unchanged():
    cfg = tiny({"train.steps": 30})
    steps: list[int] = []
    hooked = Trainer(cfg)
    with_hook = hooked.fit(after_step=lambda t: steps.append(t.step))
    plain = Trainer(cfg).fit()
    assert steps == list(range(1, 31))
    assert with_hook["train/loss"] == plain["train/loss"]


def test_batch_is_at_most_half_the_training_split():
    sizes = {b: Trainer(tiny({"train.batch_size": b})).batch_size for b in (16, 512, "full")}
    assert sizes == {16: 16, 512: 73 // 2, "full": 73}  # 73 = 0.6 * 121 training equations


def test_learning_rate_warms_up_then_follows_the_schedule():
    warm = {"optim.lr": 1e-3, "optim.warmup_steps": 10}
    cfg = tiny(warm)
    assert [lr_at(cfg, s) for s in (0, 4, 9, 10, 10_000)] == pytest.approx(
        [1e-4, 5e-4, 1e-3, 1e-3, 1e-3]
    )
    cos = tiny({**warm, "optim.schedule": "cosine", "optim.min_lr_ratio": 0.1, "train.steps": 110})
    assert [lr_at(cos, s) for s in (10, 60, 110, 200)] == pytest.approx([1e-3, 5.5e-4, 1e-4, 1e-4])


def test_evaluation_is_dense_early_and_at_every_checkpoint_and_the_end():
    # TINY evaluates at least every 10 steps; here at most every 30, else a quarter of the step
    schedule = {"eval.max_every": 30, "eval.rel_every": 0.25}
    cfg = tiny({**schedule, "train.steps": 100, "train.checkpoint_every": 45})
    events = []
    Trainer(cfg).fit(lambda e: events.append((e.step, e.checkpoint_due, e.final)))
    assert [step for step, _, _ in events] == [0, 10, 20, 30, 40, 45, 56, 70, 87, 90, 100]
    assert [step for step, due, _ in events if due] == [45, 90, 100]
    assert [step for step, _, final in events if final] == [100]


# ---------------------------------------------------------------- what the loss sees

LINES = "ab=cde\nabcdef=g\nx=yzw\n"  # answers of 3, 1 and 3 characters, then eos


def test_loss_is_the_mean_over_scored_answer_tokens_only(tmp_path):
    cfg = lines_config(tmp_path, LINES)
    trainer = Trainer(cfg)
    train = trainer.splits["train"]
    assert train.pad_mask is not None and train.pad_mask.any()
    loss, logits, targets = trainer.loss_on(train)
    scored = targets != IGNORE
    assert int(scored.sum()) == 4 + 2 + 4
    by_hand = torch.stack(
        [F.cross_entropy(logits[i, k][None], targets[i, k][None]) for i, k in scored.nonzero()]
    ).mean()
    torch.testing.assert_close(loss, by_hand)


@pytest.mark.parametrize("mask_first", [0, 4])
def test_masked_and_pad_positions_get_no_gradient(tmp_path, mask_first):
    trainer = Trainer(lines_config(tmp_path, LINES, {"task.mask_first": mask_first}))
    loss, logits, targets = trainer.loss_on(trainer.splits["train"])
    logits.retain_grad()
    loss.backward()
    grad_norm = logits.grad.abs().sum(-1)  # (B, K)
    assert torch.all(grad_norm[targets == IGNORE] == 0)
    assert torch.all(grad_norm[targets != IGNORE] > 0)
    # mask_first 4 drops 'c' of "ab=cde" (prompt "ab=" is 3) and 'y', 'z' of "x=yzw" (prompt 2)
    assert int((targets != IGNORE).sum()) == 10 - (3 if mask_first else 0)


def test_tokens_under_the_pad_mask_change_neither_loss_nor_gradients(tmp_path):
    cfg = lines_config(tmp_path, LINES)
    trainer = Trainer(cfg)
    train = trainer.splits["train"]

    def loss_and_grads():
        trainer.model.zero_grad()
        loss, _, _ = trainer.loss_on(train)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in trainer.model.parameters()]

    loss, grads = loss_and_grads()
    train.x[train.pad_mask] = trainer.tokenizer.encode("Z")[0]
    other_loss, other_grads = loss_and_grads()
    assert torch.equal(loss, other_loss)
    assert all(torch.equal(a, b) for a, b in zip(grads, other_grads))


# ---------------------------------------------------------------- resumption


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_resumed_run_matches_uninterrupted(tmp_path, dropout):
    cfg = tiny({"model.dropout": dropout})
    whole, seen = Trainer(cfg), []

    def record(event):
        seen.append(event.metrics)
        if event.checkpoint_due:
            event.save(tmp_path / f"step{event.step}")

    whole.fit(record)
    resumed = Trainer(cfg)
    resumed.load_checkpoint(tmp_path / "step20")
    assert resumed.step == 20
    after = fit(resumed)

    def timeless(metrics):
        return {k: v for k, v in metrics.items() if k != "steps_per_s"}

    expected = [timeless(m) for m in seen if m["step"] > 20]
    assert [m["step"] for m in expected] == [30, 40, 50, 60]
    assert [timeless(m) for m in after] == expected
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_dropout_changes_the_run_so_its_rng_state_matters():
    plain = fit(Trainer(tiny()))[-1]
    dropped = fit(Trainer(tiny({"model.dropout": 0.2})))[-1]
    assert plain["train/loss"] != dropped["train/loss"]


def test_checkpoint_of_another_config_is_refused(tmp_path):
    Trainer(tiny()).save_checkpoint(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="different config"):
        Trainer(tiny({"optim.lr": 1e-2})).load_checkpoint(tmp_path / "ckpt")


# ---------------------------------------------------------------- stopping

# Every line the same: test examples are training examples, so test accuracy reaches 1 early.
SAME = "hi=yo\n" * 10
HALVES = {"task.train_fraction": 0.5, "task.val_fraction": 0.2}


def test_run_stops_the_given_steps_after_test_accuracy_reaches_the_threshold(tmp_path):
    settings = {**HALVES, "optim.lr": 1e-2, "train.steps": 400, "stop.after_grok_steps": 7}
    trainer = Trainer(lines_config(tmp_path, SAME, settings))
    seen = fit(trainer)
    grok = trainer.grok_step
    assert grok is not None and grok == seen[-1]["grok/test_acc_99_step"]
    assert all(m["test/acc"] < 0.99 for m in seen if m["step"] < grok)
    assert seen[-1]["step"] == trainer.step == grok + 7 < 400
    assert seen[-1]["status"] == trainer.status == "grokked"


def test_a_settled_stop_waits_for_a_spike_to_pass():
    """Grokked at 100, 50 steps to wait: a run in a spike at step 150 stops only once train and
    test accuracy are both back at the threshold, or at its budget."""
    rule = {"train.steps": 400, "stop.after_grok_steps": 50}
    plain, settled = tiny(rule), tiny({**rule, "stop.settled": True})

    def status(cfg, step, train, test):
        return stop_status(
            cfg, step, 100, {"train/loss": 0.1, "train/acc": train, "test/acc": test}
        )

    assert status(plain, 150, 0.40, 0.99) == "grokked"  # the plain rule ends it in the spike
    assert status(settled, 150, 0.40, 0.99) == "running"
    assert status(settled, 150, 1.00, 0.70) == "running"
    assert status(settled, 140, 1.00, 1.00) == "running"  # its steps are not up yet
    assert status(settled, 170, 1.00, 0.99) == "grokked"
    assert status(settled, 400, 0.40, 0.50) == "finished"
    assert stop_status(
        settled, 170, 100, {"train/loss": math.nan, "train/acc": 1, "test/acc": 1}
    ) == ("diverged")


def test_evaluations_land_on_the_stop_step_then_come_often_while_a_settled_run_waits():
    cfg = tiny(
        {"train.steps": 5000, "train.checkpoint_every": 1000, "stop.after_grok_steps": 50}
        | {
            "stop.settled": True,
            "eval.min_every": 20,
            "eval.max_every": 1000,
            "eval.rel_every": 0.1,
        }
    )
    assert next_eval_step(cfg, 900) == 990  # 10% of the step
    assert next_eval_step(cfg, 900, grok_step=880) == 930  # the stop step comes first
    assert next_eval_step(cfg, 930, grok_step=880) == 950  # waiting: every eval.min_every
    assert next_eval_step(cfg, 990, grok_step=880) == 1000  # a checkpoint still comes first


def test_without_the_stop_rule_the_run_uses_its_whole_budget(tmp_path):
    settings = {**HALVES, "optim.lr": 1e-2, "train.steps": 60}
    trainer = Trainer(lines_config(tmp_path, SAME, settings))
    last = fit(trainer)[-1]
    assert last["test/acc"] == 1.0
    assert (last["step"], last["status"]) == (60, "finished")


def test_a_diverging_run_stops_with_status_diverged():
    cfg = tiny({"optim.name": "sgd", "optim.lr": 1e30, "optim.warmup_steps": 0})
    trainer = Trainer(cfg)
    events = []
    last = trainer.fit(events.append)
    assert last["status"] == trainer.status == "diverged"
    assert not math.isfinite(last["train/loss"])
    assert trainer.step < cfg.train.steps
    assert events[-1].final and events[-1].checkpoint_due


# ---------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A checkpoint of the tiny config after a few steps."""
    trainer = Trainer(tiny({"train.steps": 5}))
    trainer.fit()
    return trainer.save_checkpoint(tmp_path_factory.mktemp("saved") / "checkpoint")


def test_checkpoint_holds_weights_state_and_config(saved):
    cfg, weights, state = read_checkpoint(saved)
    assert cfg == tiny({"train.steps": 5})
    assert state["step"] == 5 and state["status"] == "finished"
    assert set(weights) >= {"tok_emb.weight", "head.weight"}
    assert json.loads((saved / "manifest.json").read_text())["step"] == 5


def drop_folder(ckpt):
    shutil.rmtree(ckpt)


def drop_manifest(ckpt):
    (ckpt / "manifest.json").unlink()


def drop_state(ckpt):
    (ckpt / "state.pt").unlink()


def change_config(ckpt):
    path = ckpt / "config.yaml"
    path.write_text(path.read_text().replace("lr: 0.003", "lr: 0.03"))


def garble_manifest(ckpt):
    (ckpt / "manifest.json").write_text("{")


def forge_config(ckpt, section: str, key: str, value) -> None:
    """Change one setting of a checkpoint's config and make the manifest match."""
    data = yaml.safe_load((ckpt / "config.yaml").read_text())
    data[section][key] = value
    (ckpt / "config.yaml").write_text(yaml.safe_dump(data))
    rewrite_manifest(ckpt)


def unknown_key_in_config(ckpt):
    forge_config(ckpt, "model", "n_layers", 2)


DAMAGE = {
    "missing folder": (drop_folder, "no such checkpoint folder"),
    "missing manifest": (drop_manifest, "not a complete checkpoint"),
    "missing file": (drop_state, "checkpoint is missing state.pt"),
    "changed file": (change_config, "config.yaml: contents do not match the manifest"),
    "unreadable manifest": (garble_manifest, "unreadable manifest"),
    "unknown key in config": (unknown_key_in_config, "config.yaml: unknown key 'model.n_layers'"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_each_kind_of_bad_checkpoint_is_refused_clearly(saved, tmp_path, kind):
    damage, message = DAMAGE[kind]
    ckpt = shutil.copytree(saved, tmp_path / "checkpoint")
    damage(ckpt)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(ckpt)


def test_weights_that_do_not_fit_their_config_are_refused(saved, tmp_path):
    ckpt = shutil.copytree(saved, tmp_path / "checkpoint")
    forge_config(ckpt, "model", "d_model", 64)
    with pytest.raises(CheckpointError, match="weights do not fit the model"):
        load_model(ckpt)


def test_a_pickle_posing_as_weights_is_refused_and_never_run(saved, tmp_path):
    ckpt = shutil.copytree(saved, tmp_path / "checkpoint")
    marker = tmp_path / "pwned"
    torch.save(Payload(marker), ckpt / "model.pt")
    rewrite_manifest(ckpt)  # the manifest matches: only safe loading stands in the way
    with pytest.raises(CheckpointError, match="cannot load safely"):
        read_checkpoint(ckpt)
    assert not marker.exists()
    torch.load(ckpt / "model.pt", weights_only=False)  # the payload is live: unsafe loading
    assert marker.exists()  # runs it


def test_exported_weights_predict_as_the_checkpoint_and_refuse_to_resume(saved, tmp_path):
    out = export_weights(saved, tmp_path / "weights")
    assert sorted(f.name for f in out.iterdir()) == ["config.yaml", "manifest.json", "model.pt"]
    cfg, weights, state = read_checkpoint(out)
    assert state is None and cfg == tiny({"train.steps": 5})
    full, _ = load_model(saved)
    light, _ = load_model(out)
    x = torch.randint(0, 10, (4, 4))
    assert torch.equal(full(x), light(x))
    with pytest.raises(CheckpointError, match="weights-only checkpoint; it cannot resume"):
        Trainer(tiny({"train.steps": 5})).load_checkpoint(out)
    (out / "model.pt").write_bytes((out / "model.pt").read_bytes()[:-1])  # damaged after export
    with pytest.raises(CheckpointError, match="model.pt: contents do not match the manifest"):
        read_checkpoint(out)


def test_export_refuses_a_damaged_source_and_leaves_nothing(saved, tmp_path):
    ckpt = shutil.copytree(saved, tmp_path / "checkpoint")
    change_config(ckpt)
    proc = run_cli("-m", "grok.export", str(ckpt), "--out", str(tmp_path / "w"))
    assert_one_line_error(proc, "config.yaml", "do not match the manifest")
    assert not (tmp_path / "w").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]


# ---------------------------------------------------------------- the command line


@pytest.fixture
def two_seeds(tmp_path):
    return write_experiment(tmp_path / "seeds.yaml", "seeds", grid={"seed": [0, 1]})


def test_train_cli_refuses_a_grid_of_several_points_without_trial(two_seeds, tmp_path):
    proc = run_cli("-m", "grok.train", str(two_seeds), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, "2 points", "--trial", "'seed=0'")
    assert not (tmp_path / "out").exists()


def test_train_cli_names_the_trials_when_trial_is_unknown(two_seeds, tmp_path):
    proc = run_cli("-m", "grok.train", str(two_seeds), "--trial", "seed=7")
    assert_one_line_error(proc, "--trial 'seed=7'", "seed=0, seed=1")


@pytest.mark.parametrize("trial", ["seed=1", "1"])
def test_train_cli_runs_the_trial_chosen_by_name_or_index(two_seeds, tmp_path, trial):
    out = tmp_path / "out"
    proc = run_cli("-m", "grok.train", str(two_seeds), "--trial", trial, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 1
    cfg, _, state = read_checkpoint(out / "checkpoint")
    assert cfg.seed == 1 and state["step"] == TINY["train"]["steps"]
    assert "done: finished at step 60" in proc.stdout


def test_crossings_between_sparse_evaluations_match_evaluating_every_step(tmp_path):
    # Evaluation uses no randomness, so both runs train identically; the sparse one must find
    # the same first crossings from its weight snapshots as the one that looks at every step.
    base = {**HALVES, "optim.lr": 1e-2, "train.steps": 60}
    every_step = {"eval.min_every": 1, "eval.max_every": 1, "eval.refine_every": 0.0}
    sparse = {"eval.min_every": 20, "eval.max_every": 20, "eval.refine_every": 1e-6}
    dense_run = fit(Trainer(lines_config(tmp_path, SAME, {**base, **every_step})))
    sparse_run = fit(Trainer(lines_config(tmp_path, SAME, {**base, **sparse})))
    assert len(sparse_run) == 4 and len(dense_run) == 61
    crossings = [k for k in dense_run[-1] if k.startswith("grok/") and "_step" in k]
    assert any(dense_run[-1][k] not in (None, 0, 20, 40, 60) for k in crossings)
    assert {k: sparse_run[-1][k] for k in crossings} == {k: dense_run[-1][k] for k in crossings}
