"""A trained model exported for TransformerLens: HookedTransformer gives the model's logits on
every equation of its task, and a model or folder it cannot take is refused."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import TINY, assert_one_line_error, rewrite_manifest, run_cli

from grok.checkpoint import CheckpointError, load_model, read_checkpoint
from grok.config import Config, ModelConfig
from grok.data import build_splits
from grok.export import load_transformer_lens
from grok.lens import MappingError, lens_config
from grok.operations import operation
from grok.overrides import apply_overrides
from grok.tokenizer import build_tokenizer
from grok.train import Trainer

AS_LENS = ("--format", "transformer-lens")


def trained(tmp_path, overrides: dict):
    """A checkpoint of the tiny config, trained long enough to leave its initial weights."""
    cfg = apply_overrides(Config.from_dict(TINY), {"train.steps": 100, **overrides}, "test")
    trainer = Trainer(cfg)
    trainer.fit()
    return trainer.save_checkpoint(tmp_path / "checkpoint")


def export(checkpoint, out):
    proc = run_cli(
        "-m", "grok.export", str(checkpoint), "--format", "transformer-lens", "--out", out
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("MB, TransformerLens)")
    return out


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # one layer, number tokens: one answer token after `a+b=`
        {"model.n_layer": 2, "model.n_head": 4, "model.dropout": 0.1},
        {"task.tokenizer": "char", "task.op": "x^2+xy+y^2"},  # padded rows, answers of 1-3 tokens
    ],
    ids=["one-layer", "two-layers", "char-tokens"],
)
def test_transformer_lens_gives_the_models_logits_on_every_equation(tmp_path, overrides):
    checkpoint = trained(tmp_path, overrides)
    lens = load_transformer_lens(export(checkpoint, str(tmp_path / "lens")))
    model, cfg = load_model(checkpoint)
    assert lens.cfg.dtype == torch.float32 and not lens.training
    splits, pad = build_splits(cfg.task), build_tokenizer(cfg.task).pad_id
    assert sum(len(s) for s in splits.values()) == len(operation(cfg.task.op).table(11))
    for split in splits.values():
        with torch.no_grad():
            ours, theirs = model(split.x), lens(split.x)  # (N, T, V) both
        answer = split.y != -100  # every answer token's position, the first after `=`
        real = split.x != pad  # every position before a row's padding
        assert answer.sum() >= len(split) and (answer <= real).all()
        assert (ours - theirs)[answer].abs().max() <= 1e-4, split.name
        assert (ours - theirs)[real].abs().max() <= 1e-4, split.name
        assert ours[answer].std() > 1.0  # trained logits, not a constant both happen to give


def test_an_export_caches_activations_and_answers_as_the_model_does(tmp_path):
    checkpoint = trained(tmp_path, {})
    folder = export(checkpoint, str(tmp_path / "lens"))
    lens = load_transformer_lens(folder)
    vocab = json.loads((tmp_path / "lens" / "vocab.json").read_text())
    tokens = torch.tensor([[vocab.index(t) for t in ("3", "+", "5", "=")]])
    logits, cache = lens.run_with_cache(tokens)
    assert cache["blocks.0.attn.hook_pattern"].shape == (1, 2, 4, 4)  # (batch, head, query, key)
    assert cache["blocks.0.hook_mlp_out"].shape == (1, 4, 32)
    model, _ = load_model(checkpoint)
    assert logits[0, -1].argmax() == model(tokens)[0, -1].argmax()
    assert json.loads((tmp_path / "lens" / "config.json").read_text())["act_fn"] == "gelu"


def test_a_model_setting_transformer_lens_lacks_is_refused_by_name():
    @dataclasses.dataclass
    class WithNorm(ModelConfig):  # a model variant this mapping does not know
        norm: str = "layer"

    assert lens_config(WithNorm(), 16, "m")["n_heads"] == 4  # at its default it changes nothing
    with pytest.raises(MappingError, match=r"^model.norm: 'rms' has no counterpart"):
        lens_config(WithNorm(norm="rms"), 16, "m")


def test_weights_the_mapping_does_not_know_are_refused_in_one_line_and_nothing_written(tmp_path):
    checkpoint = trained(tmp_path, {"train.steps": 5})
    weights = torch.load(checkpoint / "model.pt", weights_only=True)
    torch.save({**weights, "blocks.0.attn.rotary": torch.ones(4)}, checkpoint / "model.pt")
    rewrite_manifest(checkpoint)
    out = tmp_path / "lens"
    proc = run_cli(
        "-m", "grok.export", str(checkpoint), "--format", "transformer-lens", "--out", str(out)
    )
    assert_one_line_error(proc, "no place in TransformerLens", "blocks.0.attn.rotary")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_an_export_is_neither_a_checkpoint_nor_opened_when_changed(tmp_path):
    folder = tmp_path / "lens"
    export(trained(tmp_path, {"train.steps": 5}), str(folder))
    with pytest.raises(CheckpointError, match="a transformer-lens export, not a checkpoint"):
        read_checkpoint(folder)
    proc = run_cli("infer.py", str(folder), "--prompt", "3+5=")
    assert_one_line_error(proc, "transformer-lens export, not a checkpoint")
    (folder / "state_dict.pt").write_bytes((folder / "state_dict.pt").read_bytes()[:-1])
    with pytest.raises(CheckpointError, match="state_dict.pt: contents do not match"):
        load_transformer_lens(folder)
    with pytest.raises(CheckpointError, match="not a TransformerLens export"):
        load_transformer_lens(tmp_path / "checkpoint")


def test_grok_export_imports_transformer_lens_only_to_open_an_export():
    proc = run_cli("-c", "import sys, grok.export; assert 'transformer_lens' not in sys.modules")
    assert proc.returncode == 0, proc.stderr
