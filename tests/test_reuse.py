"""The run store's key: the whole resolved config and the training code, nothing loosely."""

from __future__ import annotations

import json

from test_imports import import_graph

from grok.config import Config
from grok.overrides import apply_overrides
from grok.reuse import TRAINING_CODE, RunStore, code_fingerprint, run_key


def test_the_key_changes_with_any_setting_the_seed_or_the_code():
    base = Config().to_dict()
    key = run_key(base)
    assert run_key(Config().to_dict()) == key  # the same run, the same key
    for change in ({"seed": 1}, {"optim.weight_decay": 0.5}, {"eval.rel_every": 0.3}):
        assert run_key(apply_overrides(Config(), change, "test").to_dict()) != key
    assert run_key(base, fingerprint="other code") != key


def test_the_fingerprint_covers_the_training_modules_and_is_stable():
    assert {"train.py", "model.py", "data.py", "config.py"} <= set(TRAINING_CODE)
    assert code_fingerprint() == code_fingerprint() and len(code_fingerprint()) == 64


def test_an_entry_without_its_origin_is_never_read(tmp_path):
    store = RunStore(tmp_path / "store")
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "model.pt").write_bytes(b"weights")
    store.put("k", [{"step": 0}, {"step": 10}], checkpoint, {"experiment": "e", "trial": "t"})
    run = store.find("k")
    assert run and run.source == "e/t" and [r["step"] for r in run.reports] == [0, 10]
    assert (store.fetch_checkpoint(run, tmp_path / "out") / "model.pt").read_bytes() == b"weights"
    (tmp_path / "store" / "k" / "origin.json").unlink()  # as if the writer died before the end
    assert store.find("k") is None
    assert json.loads((tmp_path / "store" / "k" / "reports.jsonl").read_text().splitlines()[1])


def test_the_fingerprint_covers_every_module_the_trainer_imports():
    graph, todo, seen = import_graph(), ["grok.train"], set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += graph[name]
    assert {f"grok.{f[:-3]}" for f in TRAINING_CODE} == seen
