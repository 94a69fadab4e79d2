"""Every operation of the paper: its full table against brute force, its splits, its text form,
what it requires of p, and answers from infer.py."""

from __future__ import annotations

import itertools
import re
import typing
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY, assert_one_line_error, run_cli, write_experiment

import infer
from grok.config import Config, ConfigError, TaskConfig
from grok.data import IGNORE, SPLITS, build_splits, describe, modular_equations
from grok.experiment import load_experiment, trial_name
from grok.inference import complete
from grok.operations import OPERATIONS, OpName, operation
from grok.tokenizer import build_tokenizer, char_tokenizer, number_tokenizer
from grok.train import Trainer

P = 11  # small enough for full tables, prime for the divisions


def brute_divide(x: int, y: int, p: int) -> int:
    """The one c with c * y = x (mod p), found by trying every residue."""
    (c,) = [c for c in range(p) if c * y % p == x]
    return c


# The paper's operations written out again, apart from grok/operations.py: (symbol, c(x, y, p)).
MODULAR = {
    "+": ("+", lambda x, y, p: (x + y) % p),
    "-": ("-", lambda x, y, p: (x - y) % p),
    "/": ("/", brute_divide),
    "*": ("*", lambda x, y, p: x * y % p),
    "x^2+y^2": ("#", lambda x, y, p: (x**2 + y**2) % p),
    "x^2+xy+y^2": ("&", lambda x, y, p: (x**2 + x * y + y**2) % p),
    "x^2+xy+y^2+x": ("%", lambda x, y, p: (x**2 + x * y + y**2 + x) % p),
    "x^3+xy": ("$", lambda x, y, p: (x**3 + x * y) % p),
    "x^3+xy^2+y": ("@", lambda x, y, p: (x**3 + x * y**2 + y) % p),
    "x/y|x-y": ("|", lambda x, y, p: brute_divide(x, y, p) if y % 2 else (x - y) % p),
}

# S5 as permutation tuples: (x*y)(i) = x(y(i)), the right factor applied first.
PERMS = list(itertools.permutations(range(5)))


def mul(x: tuple, y: tuple) -> tuple:
    return tuple(x[y[i]] for i in range(5))


INVERSE = {x: next(z for z in PERMS if mul(x, z) == tuple(range(5))) for x in PERMS}


GROUP = {
    "s5:x*y": (".", lambda x, y: mul(x, y)),
    "s5:x*y*x^-1": ("^", lambda x, y: mul(mul(x, y), INVERSE[x])),
    "s5:x*y*x": ("~", lambda x, y: mul(mul(x, y), x)),
}


def word(perm: tuple) -> str:
    return "".join(str(i) for i in perm)


def reference(op: str, p: int) -> dict[str, str]:
    """Every prompt of the operation and its answer, by brute force."""
    if op in GROUP:
        symbol, f = GROUP[op]
        return {f"{word(x)}{symbol}{word(y)}=": word(f(x, y)) for x in PERMS for y in PERMS}
    symbol, f = MODULAR[op]
    ys = range(1, p) if op == "/" else range(p)
    return {f"{x}{symbol}{y}=": str(f(x, y, p)) for x in range(p) for y in ys}


def test_the_config_offers_every_operation_and_only_those():
    assert set(typing.get_args(OpName)) == set(MODULAR) | set(GROUP) == set(OPERATIONS)


@pytest.mark.parametrize("op", list(MODULAR) + list(GROUP))
def test_full_table_matches_brute_force_and_splits_cover_it_once(op):
    splits = build_splits(TaskConfig(op=op, p=P))
    seen = [(e.prompt, e.answer) for name in SPLITS for e in splits[name].examples]
    assert dict(seen) == reference(op, P)
    assert len(seen) == len(reference(op, P))  # no prompt twice: the splits are disjoint
    n = len(seen)
    sizes = tuple(len(splits[name]) for name in SPLITS)
    assert sizes == (round(0.5 * n), round(0.1 * n), n - round(0.5 * n) - round(0.1 * n))


def test_composition_applies_the_right_factor_first():
    # x = 10234 swaps 0 and 1, y = 02134 swaps 1 and 2: x*y sends 0 -> 1 -> 2 -> 0, y*x the reverse
    splits = build_splits(TaskConfig(op="s5:x*y"))
    answers = {e.prompt: e.answer for name in SPLITS for e in splits[name].examples}
    assert answers["10234.02134="] == "12034"
    assert answers["02134.10234="] == "20134"
    assert answers["01234.43210="] == answers["43210.01234="] == "43210"  # the identity


def test_each_s5_row_is_a_permutation_of_the_group():
    for op in GROUP:
        rows: dict[int, set[int]] = {}
        for a, _, c in modular_equations(op, 97):
            rows.setdefault(a, set()).add(c)
        assert len(rows) == 120
        assert all(len(cs) == 120 for cs in rows.values()), op  # b -> c is one-to-one


@pytest.mark.parametrize(
    ("op", "count"),
    [(op, 97 * 96 if op == "/" else 97 * 97) for op in MODULAR] + [(op, 120 * 120) for op in GROUP],
)
def test_table_sizes_at_p_97(op, count):
    assert len(modular_equations(op, 97)) == count


@pytest.mark.parametrize("op", ["*", "x^3+xy^2+y", "x/y|x-y", "s5:x*y*x^-1"])
def test_data_description_counts_the_equations_and_names_the_domain(op):
    task = TaskConfig(op=op, p=P)
    text = describe(task, build_splits(task))
    n = len(reference(op, P))
    assert f": {n} equations" in text
    symbol = (MODULAR.get(op) or GROUP[op])[0]
    assert f"Text form `a{symbol}b=c`" in text
    if op in GROUP:
        assert "S5" in text and "120" in text and "mod" not in text
    else:
        assert f"residues a, b in 0..{P - 1}" in text
    if op == "x/y|x-y":
        assert "p prime" in text and "b is odd" in text


def test_the_original_operations_keep_their_vocabulary_and_token_ids():
    legacy = tuple(str(i) for i in range(97)) + ("+", "-", "/", "=", "<pad>", "<bos>", "<eos>")
    for op in ("+", "-", "/"):
        tok = build_tokenizer(TaskConfig(op=op, p=97))
        assert tok.symbols == legacy == number_tokenizer(97).symbols
        assert tok.encode("12/5=79") == [12, 99, 5, 100, 79]


def test_a_new_operation_adds_only_its_own_symbol():
    tok = build_tokenizer(TaskConfig(op="x^2+xy+y^2", p=97))
    assert tok.symbols[:101] == number_tokenizer(97).symbols[:100] + ("&",)
    assert tok.vocab_size == 97 + 5 + 3
    s5 = build_tokenizer(TaskConfig(op="s5:x*y*x"))
    assert s5.symbols[:2] == ("01234", "01243") and s5.symbols[119] == "43210"
    assert s5.vocab_size == 120 + 5 + 3


@pytest.mark.parametrize("op", list(MODULAR) + list(GROUP))
def test_both_tokenizers_round_trip_the_text_form(op):
    number = build_tokenizer(TaskConfig(op=op, p=P))
    char = char_tokenizer()
    for prompt, answer in itertools.islice(reference(op, P).items(), 0, None, 37):
        text = prompt + answer
        ids = number.encode(text)
        assert len(ids) == 5  # a, the operator, b, '=', c: one token each
        assert number.decode(ids) == text
        assert len(char.encode(text)) == len(text)
        assert char.decode(char.encode(text)) == text


@pytest.mark.parametrize(("op", "tokenizer"), [("x^3+xy", "number"), ("s5:x*y*x", "char")])
def test_the_loss_is_on_the_answer_only(op, tokenizer):
    task = TaskConfig(op=op, p=P, tokenizer=tokenizer)
    tok = build_tokenizer(task)
    split = build_splits(task, tok)["train"]
    for x, y, e in zip(split.x, split.y, split.examples):
        scored = (y != IGNORE).nonzero().flatten().tolist()
        first = len(e.prompt_ids) - 1  # the position of '=', whose next token is the answer
        assert scored == list(range(first, first + len(e.answer_ids)))
        assert tok.decode(y[scored].tolist()) == e.answer
        assert tok.decode(x[: first + 1].tolist()) == e.prompt
    assert tok.number_level or split.y[0, -1] == tok.eos_id  # char answers end with eos


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"op": "x/y|x-y", "p": 91}, "91 is not prime"),
        ({"op": "/", "p": 100}, "100 is not prime"),
        ({"op": "s5:x*y", "p": 113}, "S5 operations have no modulus"),
    ],
)
def test_a_bad_p_is_refused_in_one_line(tmp_path, settings, message):
    exp = write_experiment(tmp_path / "bad.yaml", "bad", {"task": settings})
    proc = run_cli("-m", "grok.data", str(exp), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, str(exp), "task.p", message)
    assert not (tmp_path / "out").exists()


def test_operations_without_division_take_any_p():
    for op in ("*", "x^2+y^2", "x^3+xy^2+y"):
        assert Config.from_dict({"task": {"op": op, "p": 10}}).task.p == 10
    with pytest.raises(ConfigError, match="task.p: 10 is not prime"):
        Config.from_dict({"task": {"op": "x/y|x-y", "p": 10}})


def test_trial_names_are_file_safe_and_distinct():
    names = {op: trial_name({"task.op": op}) for op in OPERATIONS}
    assert (names["+"], names["-"], names["/"]) == ("op=add", "op=sub", "op=div")
    assert len(set(names.values())) == len(names)
    for name in names.values():
        assert all(c.isalnum() or c in "=,.-_+" for c in name), name


# ---------------------------------------------------------------- experiment files and docs


def test_the_operations_experiment_runs_every_operation_with_three_seeds():
    exp = load_experiment(ROOT / "experiments" / "operations.yaml")
    assert exp.grid["task.op"] == list(typing.get_args(OpName))
    assert exp.grid["seed"] == [0, 1, 2]
    assert exp.num_trials == 13 * 3
    assert exp.base.stop.after_grok_steps is not None
    recipe = Config()  # the paper's recipe is the defaults
    assert (exp.base.model, exp.base.optim) == (recipe.model, recipe.optim)
    assert exp.base.task.train_fraction == recipe.task.train_fraction


def test_the_fraction_experiment_crosses_every_operation_with_fractions():
    exp = load_experiment(ROOT / "experiments" / "operations_fraction.yaml")
    assert exp.grid["task.op"] == list(typing.get_args(OpName))
    fractions = exp.grid["task.train_fraction"]
    assert len(fractions) >= 4 and fractions == sorted(fractions)
    assert exp.base.stop.after_grok_steps is not None


def test_the_documentation_lists_every_operation_with_true_examples():
    doc = (ROOT / "docs" / "operations.md").read_text().replace("\\|", "|")
    rows = {line.split("`")[1]: line for line in doc.splitlines() if line.startswith("| `")}
    assert set(rows) == set(OPERATIONS) | {"task.op"}  # the header, then one row each
    for op, (symbol, _) in {**MODULAR, **GROUP}.items():
        assert f"| `{symbol}` |" in rows[op], op
        examples = re.findall(r"`([^`]+=[^`]+)`", rows[op])
        assert examples, op
        table = reference(op, 97)
        for example in examples:
            prompt, answer = example.split("=")
            assert table[prompt + "="] == answer, example


# ---------------------------------------------------------------- infer.py


def fitted_checkpoint(tmp_path: Path, settings: dict) -> tuple[Path, Trainer]:
    """A tiny model trained until it has memorized its training split; its checkpoint."""
    cfg = Config.from_dict(
        {
            **TINY,
            "task": settings,
            "optim": {"lr": 3e-3, "weight_decay": 0.0},  # memorizing, not grokking
            "train": {"steps": 500, "checkpoint_every": 500, "batch_size": "full", "threads": 1},
            "eval": {"min_every": 100, "max_every": 500},  # few evaluations of S5's large test
        }
    )
    trainer = Trainer(cfg)
    last = trainer.fit()
    assert last["train/acc"] == 1.0
    return trainer.save_checkpoint(tmp_path / "checkpoint"), trainer


def test_infer_answers_three_times_five(tmp_path, capsys):
    settings = {"op": "*", "p": 7, "train_fraction": 0.6, "val_fraction": 0.2}
    checkpoint, trainer = fitted_checkpoint(tmp_path, settings)
    assert "3*5=" in {e.prompt for e in trainer.splits["train"].examples}
    assert infer.main([str(checkpoint), "--prompt", "3*5="]) == 0
    assert capsys.readouterr().out == "3*5=1\n"


@pytest.mark.parametrize("tokenizer", ["number", "char"])
def test_infer_answers_s5_prompts_in_their_text_form(tmp_path, capsys, tokenizer):
    settings = {"op": "s5:x*y", "train_fraction": 0.004, "val_fraction": 0.0}
    checkpoint, trainer = fitted_checkpoint(tmp_path, {**settings, "tokenizer": tokenizer})
    examples = trainer.splits["train"].examples[::15]
    argv = [str(checkpoint)]
    for e in examples:
        argv += ["--prompt", e.prompt]
    assert infer.main(argv) == 0
    assert capsys.readouterr().out == "".join(f"{e.prompt}{e.answer}\n" for e in examples)


@pytest.mark.parametrize(
    ("settings", "prompt", "message"),
    [
        ({"op": "*", "p": 7}, "3*9=", "'9' is not in the vocabulary"),
        ({"op": "s5:x*y"}, "12345.01234=", "'12345' is not in the vocabulary"),
    ],
)
def test_infer_refuses_a_prompt_it_cannot_read(tmp_path, capsys, settings, prompt, message):
    trainer = Trainer(Config.from_dict({**TINY, "task": settings}))
    checkpoint = trainer.save_checkpoint(tmp_path / "checkpoint")
    assert infer.main([str(checkpoint), "--prompt", prompt]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


@pytest.mark.parametrize(
    ("settings", "prompt", "message"),
    [
        ({"op": "*", "p": 7}, "3+5=", "not an equation of '*': expected A*B= with A, B residues"),
        ({"op": "/", "p": 7}, "3/0=", "division by 0 has no answer mod 7"),
        ({"op": "s5:x*y", "tokenizer": "char"}, "12345.01234=", "permutations of 01234"),
    ],
)
def test_infer_answers_and_flags_a_prompt_that_is_not_an_equation_of_the_task(
    tmp_path, capsys, settings, prompt, message
):
    trainer = Trainer(Config.from_dict({**TINY, "task": settings}))
    checkpoint = trainer.save_checkpoint(tmp_path / "checkpoint")
    assert infer.main([str(checkpoint), "--prompt", prompt]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(prompt) and err.count("\n") == 1
    assert err.startswith("note: ") and message in err


def test_spaces_between_number_tokens_are_still_accepted():
    trainer = Trainer(Config.from_dict({**TINY, "task": {"op": "x^2+y^2", "p": 7}}))
    with torch.no_grad():
        assert complete(trainer.model, trainer.cfg, [" 3 # 5 = "]) == complete(
            trainer.model, trainer.cfg, ["3#5="]
        )


def test_each_operation_has_its_own_label_in_the_operands_letters():
    labels = {name: operation(name).label(97) for name in OPERATIONS}
    assert len(set(labels.values())) == len(labels)
    assert labels["/"] == "a/b mod 97" and labels["x^2+xy+y^2"] == "a^2+ab+b^2 mod 97"
    assert labels["s5:x*y*x^-1"] == "a*b*a^-1 in S5"
    assert not any(c in label for label in labels.values() for c in "xy")


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_an_operations_size_is_its_tables_length(name):
    op = operation(name)
    for p in (5, 7):
        assert op.size(p) == len(op.table(p))
