"""Equations, splits and the tensors the trainer reads; `python -m grok.data` exports them."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import TINY, assert_one_line_error, run_cli, write_experiment

from grok import write_splits
from grok.config import Config, ConfigError, TaskConfig
from grok.data import IGNORE, SPLITS, build_examples, build_splits, modular_equations
from grok.operations import OPERATIONS
from grok.tokenizer import build_tokenizer, char_tokenizer
from grok.train import Trainer

COUNTS = [("+", 97, 9409), ("-", 97, 9409), ("/", 97, 9312), ("+", 113, 12769), ("/", 113, 12656)]


def pairs(split) -> set[tuple[int, int]]:
    return {(e.a, e.b) for e in split.examples}


@pytest.mark.parametrize(("op", "p", "count"), COUNTS)
def test_every_equation_is_in_exactly_one_split(op, p, count):
    splits = build_splits(TaskConfig(op=op, p=p))
    train, val, test = (pairs(splits[name]) for name in SPLITS)
    assert len(train) + len(val) + len(test) == count
    assert not (train & val or train & test or val & test)
    assert train | val | test == {(a, b) for a, b, _ in modular_equations(op, p)}
    assert len(train) == round(0.5 * count) and len(val) == round(0.1 * count)


def test_division_excludes_zero_and_has_one_equation_per_pair():
    eqs = modular_equations("/", 97)
    assert len(eqs) == 97 * 96
    assert all(b != 0 for _, b, _ in eqs)
    assert len({(a, b) for a, b, _ in eqs}) == len(eqs)


def test_division_answer_times_divisor_is_the_dividend():
    p = 97
    for split in build_splits(TaskConfig(op="/", p=p)).values():
        # the tensors the model trains on: x = [a, /, b, =], the target after `=` is c
        a, b, c = split.x[:, 0], split.x[:, 2], split.y[:, 3]
        assert torch.all((b * c) % p == a)
        assert all((e.b * e.c) % p == e.a for e in split.examples)


def test_split_is_reproducible_for_a_data_seed():
    first = build_splits(TaskConfig(op="/", p=97, data_seed=3))
    again = build_splits(TaskConfig(op="/", p=97, data_seed=3))
    for name in SPLITS:
        assert torch.equal(first[name].x, again[name].x)


def test_another_data_seed_gives_another_split():
    one = pairs(build_splits(TaskConfig(op="/", p=97, data_seed=0))["train"])
    two = pairs(build_splits(TaskConfig(op="/", p=97, data_seed=1))["train"])
    assert len(one) == len(two) and one != two


def test_split_does_not_depend_on_the_training_seed():
    cfg = Config.from_dict(TINY)
    other = Config.from_dict({**TINY, "seed": 123})
    a, b = Trainer(cfg), Trainer(other)
    assert not torch.equal(a.model.tok_emb.weight, b.model.tok_emb.weight)
    for name in SPLITS:
        assert torch.equal(a.splits[name].x, b.splits[name].x)


def test_modular_examples_are_scored_on_the_answer_only():
    split = build_splits(TaskConfig(op="+", p=7, train_fraction=0.5))["train"]
    assert split.x.shape == (len(split), 4)  # a + b =
    assert torch.all(split.y[:, :3] == IGNORE)
    assert torch.equal(split.y[:, 3], (split.x[:, 0] + split.x[:, 2]) % 7)
    assert split.cols.tolist() == [3]
    assert split.pad_mask is None


def char_task(**settings) -> TaskConfig:
    """A character-level task whose examples are all in the training split."""
    return TaskConfig(tokenizer="char", train_fraction=1.0, val_fraction=0.0, **settings)


def scored_text(task: TaskConfig) -> str:
    """The training targets of the first example, as text (eos kept as its absence)."""
    tok = char_tokenizer()
    y = build_splits(task, tok)["train"].y[0]
    return tok.decode(y[y != IGNORE].tolist())


@pytest.mark.parametrize("tokenizer", ["number", "char"])
def test_an_equations_tokens_are_its_text_encoded_for_every_operation(tokenizer):
    for op in OPERATIONS:
        task = TaskConfig(op=op, p=7, tokenizer=tokenizer)
        tok = build_tokenizer(task)
        eos = [] if tokenizer == "number" else [tok.eos_id]
        for e in build_examples(task, tok):
            assert e.prompt_ids == tok.encode(e.prompt), (op, e.prompt)
            assert e.answer_ids == tok.encode(e.answer) + eos, (op, e.answer)


def test_text_task_starts_with_bos_and_scores_every_character_and_eos():
    split = build_splits(char_task(kind="text", text="I love ML"))["train"]
    assert split.x[0, 0] == char_tokenizer().bos_id
    assert split.y[0, -1] == char_tokenizer().eos_id
    assert int((split.y != IGNORE).sum()) == len("I love ML") + 1
    assert scored_text(char_task(kind="text", text="I love ML")) == "I love ML"


def test_mask_first_excludes_the_first_tokens_from_the_loss():
    task = char_task(kind="text", text="I love ML", mask_first=3)
    assert scored_text(task) == "ove ML"
    split = build_splits(task)["train"]
    assert int((split.y != IGNORE).sum()) == len("I love ML") + 1 - 3
    assert torch.all(split.y[0, :3] == IGNORE)


def test_mask_first_that_masks_every_token_is_refused():
    assert scored_text(char_task(kind="text", text="I love ML", mask_first=9)) == ""  # eos only
    with pytest.raises(ConfigError, match="task.mask_first: 10 masks every token of task.text"):
        build_splits(char_task(kind="text", text="I love ML", mask_first=10))


def test_lines_are_right_padded_and_scored_after_the_separator(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("ab=c\nabcd=efg\n\n")
    tok = char_tokenizer()
    split = build_splits(char_task(kind="lines", path=str(path), separator="="), tok)["train"]
    assert sorted(e.answer for e in split.examples) == ["c", "efg"]
    assert torch.equal(split.pad_mask, split.x == tok.pad_id)
    for y, pad in zip(split.y, split.pad_mask):
        answer = tok.decode(y[y != IGNORE].tolist())
        real = 1 + len("ab=c" if answer == "c" else "abcd=efg")  # bos + text, eos is the target
        assert answer in ("c", "efg")
        assert pad.tolist() == [False] * real + [True] * (len(pad) - real)
        assert torch.all(y[pad] == IGNORE)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`python -m grok.data` run once on a grid over the operation; its output folder."""
    tmp = tmp_path_factory.mktemp("export")
    config = {"task": {"p": 97}, "train": {"steps": 10}}
    exp = write_experiment(tmp / "ops.yaml", "ops", config, {"task.op": ["+", "/"]})
    proc = run_cli("-m", "grok.data", str(exp), "--out", str(tmp / "out"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert sorted(p.name for p in (tmp / "out").iterdir()) == ["op=add", "op=div"]
    return tmp / "out"


@pytest.mark.parametrize(
    ("label", "count", "sizes"),
    [("op=add", 9409, (4704, 941, 3764)), ("op=div", 9312, (4656, 931, 3725))],
)
def test_data_cli_writes_split_files_and_description(exported, label, count, sizes):
    out = exported / label
    rows = {}
    for name in SPLITS:
        with open(out / f"{name}.csv") as f:
            rows[name] = list(csv.DictReader(f))
    assert tuple(len(rows[name]) for name in SPLITS) == sizes
    assert sum(sizes) == count
    every = [r for name in SPLITS for r in rows[name]]
    assert len({(r["a"], r["b"]) for r in every}) == count  # disjoint, covering
    for r in every:
        assert r["text"] == f"{r['a']}{r['op']}{r['b']}={r['c']}"
        if r["op"] == "/":
            assert (int(r["b"]) * int(r["c"])) % 97 == int(r["a"])
    description = (out / "DESCRIPTION.md").read_text()
    assert f"{count} equations" in description
    assert "| {} | {} | {} |".format(*sizes) in description


def test_data_cli_refuses_a_bad_config_and_writes_nothing(tmp_path):
    exp = write_experiment(tmp_path / "bad.yaml", "bad", {"task": {"op": "/", "p": 91}})
    proc = run_cli("-m", "grok.data", str(exp), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, str(exp), "task.p", "not prime")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("text", "sets", "names"),
    [
        (None, [], ["no such experiment file"]),
        ("config: {task: {p: 97\n", [], ["not valid YAML"]),
        ("config: {task: {p: 97}}", ["task.q=1"], ["unknown key 'task.q'"]),
    ],
)
def test_data_main_reports_one_line_errors(tmp_path, capsys, text, sets, names):
    exp = tmp_path / "exp.yaml"
    if text is not None:
        exp.write_text(text)
    argv = [str(exp), "--out", str(tmp_path / "out")]
    for item in sets:
        argv += ["--set", item]
    assert write_splits.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {exp}")
    assert all(name in err for name in names)
    assert not (tmp_path / "out").exists()


def test_the_committed_splits_of_the_six_datasets_are_what_the_command_writes(tmp_path):
    """report/splits (Part 2.1's deliverable) is rewritten byte for byte by today's command, and
    each dataset's three files are disjoint, cover its table and match its DESCRIPTION.md."""
    import gzip

    from conftest import ROOT

    committed = ROOT / "report" / "splits"
    args = [str(ROOT / "experiments" / "datasets.yaml"), "--out", str(tmp_path), "--compress"]
    assert write_splits.main(args) == 0
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    assert len(written) == 6 * 4
    for path in written:
        assert (tmp_path / path).read_bytes() == (committed / path).read_bytes(), path
    for folder in committed.iterdir():
        rows = {
            s: list(csv.DictReader(gzip.open(folder / f"{s}.csv.gz", "rt", newline="")))
            for s in SPLITS
        }
        eqs = [{(r["a"], r["b"]) for r in rows[s]} for s in SPLITS]
        assert sum(map(len, eqs)) == len(set().union(*eqs))  # disjoint
        p = int(folder.name.split(",p=")[1])
        table = p * p - (p if "div" in folder.name else 0)  # b = 0 has no inverse
        assert len(set().union(*eqs)) == table
        counts = " | ".join(str(len(rows[s])) for s in SPLITS)
        assert f"| {counts} |" in (folder / "DESCRIPTION.md").read_text()
