"""The sanity runs end to end, generation, and `infer.py` refusing what it cannot trust."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch
from conftest import TINY, Payload, assert_one_line_error, rewrite_manifest, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

import infer
from grok.config import Config
from grok.data import SPLITS
from grok.inference import complete, greedy_accuracy, outside_training
from grok.overrides import apply_overrides
from grok.train import Trainer

MEMORIZED = "I love machine learning"


def train_sanity_run(tmp_path_factory, name: str):
    """`python -m grok.train experiments/NAME.yaml --out DIR`; DIR."""
    out = tmp_path_factory.mktemp(name) / "run"
    # one thread: fast on a tiny model, and not slowed down by whatever else runs
    args = ("-m", "grok.train", f"experiments/{name}.yaml", "--out", str(out))
    proc = run_cli(*args, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "done: finished at step 300" in proc.stdout
    return out


@pytest.fixture(scope="module")
def memorize_run(tmp_path_factory):
    return train_sanity_run(tmp_path_factory, "sanity_memorize")


@pytest.fixture(scope="module")
def mask3_run(tmp_path_factory):
    return train_sanity_run(tmp_path_factory, "sanity_mask3")


def test_memorize_run_fits_its_string(memorize_run):
    with open(memorize_run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert (rows[0]["step"], rows[-1]["step"]) == ("0", "300")
    assert float(rows[-1]["train/acc"]) == 1.0
    assert float(rows[-1]["train/loss"]) < 0.01
    assert rows[-1]["status"] == "finished"


def test_memorized_string_is_generated_from_the_empty_prompt(memorize_run):
    proc = run_cli("infer.py", str(memorize_run), "--prompt", "")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == MEMORIZED + "\n"


def test_masked_run_completes_the_string_from_its_first_three_characters(mask3_run):
    proc = run_cli("infer.py", str(mask3_run), "--prompt", "I l")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == MEMORIZED + "\n"


def test_eval_reports_greedy_exact_match_per_split(memorize_run):
    proc = run_cli("infer.py", str(memorize_run / "checkpoint"), "--eval")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "train: exact match 1.0000\nval: empty\ntest: empty\n"


# ---------------------------------------------------------------- generation in-process


@pytest.mark.parametrize("tokenizer", ["number", "char"])
def test_greedy_accuracy_equals_the_trainers_exact_match(tokenizer):
    trainer = Trainer(apply_overrides(Config.from_dict(TINY), {"task.tokenizer": tokenizer}, "t"))
    last = trainer.fit()
    assert 0 < last["train/acc"] < 1  # a model that is partly right: a fair comparison
    for name in SPLITS:
        acc = greedy_accuracy(trainer.model, trainer.cfg, trainer.splits[name])
        assert acc == last[f"{name}/acc"], name


def test_completions_are_the_models_answers():
    trainer = Trainer(Config.from_dict(TINY))
    trainer.fit()
    split = trainer.splits["train"]
    with torch.no_grad():
        _, logits, _ = trainer.loss_on(split)
    predicted = [trainer.tokenizer.decode([int(i)]) for i in logits[:, 0].argmax(-1)]
    prompts = [e.prompt for e in split.examples]
    assert complete(trainer.model, trainer.cfg, prompts) == predicted


def test_an_empty_prompt_is_refused_where_the_task_has_no_start_token():
    trainer = Trainer(Config.from_dict(TINY))
    with pytest.raises(ValueError, match="the prompt is empty"):
        complete(trainer.model, trainer.cfg, [""])


# ---------------------------------------------------------------- what infer.py refuses


def run_infer_main(capsys, *argv: str) -> str:
    """infer.py's main in this process: its exit status must be 2; its one stderr line."""
    assert infer.main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_infer_names_a_missing_folder(tmp_path):
    proc = run_cli("infer.py", str(tmp_path / "nowhere"), "--prompt", "")
    assert_one_line_error(proc, "nowhere", "no such folder")


def damaged_copy(memorize_run, tmp_path):
    return shutil.copytree(memorize_run / "checkpoint", tmp_path / "checkpoint")


def test_infer_calls_a_checkpoint_without_manifest_partial(memorize_run, tmp_path, capsys):
    ckpt = damaged_copy(memorize_run, tmp_path)
    (ckpt / "manifest.json").unlink()
    for path in (ckpt, tmp_path):  # the checkpoint itself, and the run folder holding it
        err = run_infer_main(capsys, str(path), "--prompt", "")
        assert f"{ckpt}: not a complete checkpoint" in err


def test_infer_names_a_missing_checkpoint_file(memorize_run, tmp_path, capsys):
    ckpt = damaged_copy(memorize_run, tmp_path)
    (ckpt / "model.pt").unlink()
    err = run_infer_main(capsys, str(ckpt), "--prompt", "")
    assert "checkpoint is missing model.pt" in err


def test_infer_refuses_a_file_changed_after_writing(memorize_run, tmp_path, capsys):
    ckpt = damaged_copy(memorize_run, tmp_path)
    with open(ckpt / "state.pt", "ab") as f:
        f.write(b"\0")
    err = run_infer_main(capsys, str(ckpt), "--eval")
    assert "state.pt: contents do not match the manifest" in err


def test_infer_refuses_a_pickle_posing_as_weights_without_running_it(memorize_run, tmp_path):
    ckpt = damaged_copy(memorize_run, tmp_path)
    marker = tmp_path / "pwned"
    torch.save(Payload(marker), ckpt / "model.pt")
    rewrite_manifest(ckpt)
    proc = run_cli("infer.py", str(ckpt), "--prompt", "")
    assert_one_line_error(proc, str(ckpt), "cannot load safely")
    assert not marker.exists()


def test_infer_refuses_a_prompt_outside_the_vocabulary(memorize_run, capsys):
    err = run_infer_main(capsys, str(memorize_run), "--prompt", "café")
    assert "'é' is not in the vocabulary" in err


def test_infer_needs_a_prompt_or_eval(memorize_run, capsys):
    with pytest.raises(SystemExit) as exit_:
        infer.main([str(memorize_run)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: give --prompt TEXT and/or --eval")


# ---------------------------------------------------------------- any prompt at all


def tiny_model(overrides: dict):
    """A model of TINY's shape after a few steps, with its config (what a checkpoint holds)."""
    cfg = apply_overrides(Config.from_dict(TINY), {"train.steps": 3, **overrides}, "t")
    trainer = Trainer(cfg)
    trainer.fit()
    return trainer.model.eval(), cfg


@pytest.fixture(scope="module")
def division():
    return tiny_model({"task.op": "/"})


@pytest.fixture(scope="module")
def text_task():
    text = {"task.kind": "text", "task.text": "I love machine learning", "task.tokenizer": "char"}
    return tiny_model({**text, "task.train_fraction": 1.0, "task.val_fraction": 0.0})


def answered_or_refused(model, cfg, prompt: str) -> str | None:
    """The answer, or None when the prompt is refused with a one-line ValueError."""
    try:
        (answer,) = complete(model, cfg, [prompt])
    except ValueError as err:
        assert "\n" not in str(err), str(err)
        return None
    assert isinstance(answer, str)
    return answer


@settings(max_examples=4 * settings().max_examples)
@given(prompt=st.text(max_size=80))
def test_any_prompt_is_answered_or_refused_in_one_line(division, text_task, prompt):
    for model, cfg in (division, text_task):
        answered_or_refused(model, cfg, prompt)


@given(
    a=st.integers(0, 10),
    op=st.sampled_from(["+", "-", "/"]),
    b=st.integers(0, 10),
    spaces=st.booleans(),
)
def test_prompts_outside_the_training_distribution_are_answered_and_flagged(
    division, a, op, b, spaces
):
    model, cfg = division
    prompt = f"{a} {op} {b} =" if spaces else f"{a}{op}{b}="
    assert answered_or_refused(model, cfg, prompt) is not None
    seen_in_training = op == "/" and b != 0  # the tokenizer drops spaces: same tokens
    assert (outside_training(cfg, prompt) is None) == seen_in_training
    if op == "/" and b == 0:
        assert "division by 0" in outside_training(cfg, prompt)


def test_prompts_the_vocabulary_cannot_hold_are_refused(division):
    model, cfg = division
    for prompt in ("11/2=", "1/x=", "", "٣/2=", "1/2=" * 40):
        assert answered_or_refused(model, cfg, prompt) is None, prompt


def test_infer_flags_a_division_by_zero_and_refuses_an_unknown_token(tmp_path, division, capsys):
    model, cfg = division
    trainer = Trainer(cfg)
    trainer.model.load_state_dict(model.state_dict())
    folder = trainer.save_checkpoint(tmp_path / "checkpoint")
    assert infer.main([str(folder), "--prompt", "5/0=", "--prompt", "5/3="]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("5/0=") and len(out.splitlines()) == 2
    why = "division by 0 has no answer mod 11"
    assert err == f"note: '5/0=' is outside the training distribution ({why})\n"
    line = run_infer_main(capsys, str(folder), "--prompt", "5/y=")
    assert "'5/y='" in line
    with pytest.raises(SystemExit) as exit_:
        infer.main([str(folder), "--prompt", "5/3=", "--temperature", "nan"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: --temperature must be a number >= 0")


def test_a_refused_prompt_of_100_kb_is_quoted_in_at_most_80_characters(tmp_path, division, capsys):
    model, cfg = division
    trainer = Trainer(cfg)
    trainer.model.load_state_dict(model.state_dict())
    folder = trainer.save_checkpoint(tmp_path / "checkpoint")
    for prompt in ("1/x=" * 25_000, "1/2=" + "?" * 100_000):  # an unknown token; cannot tokenize
        line = run_infer_main(capsys, str(folder), "--prompt", prompt)
        assert len(line) < 300 and "..." in line, line
        quoted = line[line.index("'1/") : line.index("...") + 3]
        assert len(quoted) <= 80 and prompt.startswith(quoted[1:-3])
