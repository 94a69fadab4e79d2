"""The transformer: causal, blind to padding, and the same when it computes only some positions."""

from __future__ import annotations

import pytest
import torch

from grok.config import ModelConfig
from grok.model import GPT

VOCAB = 20
PAD = 19


def tiny_model(n_layer: int = 1, seed: int = 0, **settings) -> GPT:
    torch.manual_seed(seed)
    cfg = ModelConfig(n_layer=n_layer, d_model=32, n_head=2, d_ff=64, max_len=16, **settings)
    return GPT(cfg, VOCAB).eval()


def tokens(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, PAD, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n_layer", [1, 2])
def test_changing_a_later_token_leaves_earlier_logits_unchanged(n_layer):
    model = tiny_model(n_layer)
    x = tokens(3, 10)
    changed = x.clone()
    changed[:, 6] = (changed[:, 6] + 1) % PAD
    with torch.no_grad():
        before, after = model(x), model(changed)
    assert before.shape == (3, 10, VOCAB)
    assert torch.equal(before[:, :6], after[:, :6])
    assert not torch.allclose(before[:, 6:], after[:, 6:])


def padded(seqs: list[torch.Tensor], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad `seqs` to `length` with pad ids: (batch, pad mask)."""
    x = torch.full((len(seqs), length), PAD)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = s
    return x, x == PAD


@pytest.mark.parametrize("n_layer", [1, 2])
def test_outputs_do_not_depend_on_how_much_padding_the_batch_has(n_layer):
    model = tiny_model(n_layer)
    short, long = tokens(5, seed=2), tokens(9, seed=3)
    with torch.no_grad():
        alone = model(short[None])[0]
        for length in (9, 14):
            x, pad = padded([short, long], length)
            out = model(x, pad_mask=pad)
            torch.testing.assert_close(out[0, :5], alone, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out[1, :9], model(long[None])[0], rtol=1e-5, atol=1e-5)


def test_what_the_padding_holds_does_not_matter():
    model = tiny_model(2)
    x, pad = padded([tokens(5, seed=2), tokens(9, seed=3)], 12)
    noise = x.clone()
    noise[pad] = tokens(int(pad.sum()), seed=4)
    with torch.no_grad():
        assert torch.equal(model(x, pad_mask=pad)[~pad], model(noise, pad_mask=pad)[~pad])


@pytest.mark.parametrize("n_layer", [1, 2])
@pytest.mark.parametrize("with_padding", [False, True])
def test_outputs_at_cols_equal_the_full_forward_there(n_layer, with_padding):
    model = tiny_model(n_layer)
    if with_padding:
        x, pad = padded([tokens(6, seed=5), tokens(11, seed=6), tokens(8, seed=7)], 11)
    else:
        x, pad = tokens(3, 11), None
    cols = torch.tensor([2, 5, 7, 10])
    with torch.no_grad():
        full = model(x, pad_mask=pad)
        some = model(x, cols=cols, pad_mask=pad)
    assert some.shape == (3, 4, VOCAB)
    torch.testing.assert_close(some, full[:, cols], rtol=1e-5, atol=1e-5)


def test_cols_gradients_equal_the_full_forwards():
    model = tiny_model(2)
    x, cols = tokens(2, 8), torch.tensor([3, 7])
    model(x, cols=cols).logsumexp(-1).sum().backward()
    some = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x)[:, cols].logsumexp(-1).sum().backward()
    for a, b in zip(some, (p.grad for p in model.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n_layer", [1, 2])
@pytest.mark.parametrize("cols", [None, torch.tensor([2, 5]), slice(4, 7)])
def test_first_block_from_the_token_position_table_equals_computing_it(n_layer, cols):
    # A batch larger than the vocabulary takes the first block's q, k, v from the table.
    model = tiny_model(n_layer).train()
    x = tokens(3 * VOCAB, 7)
    assert model.first_qkv(x) is not None and model.first_qkv(x[:VOCAB]) is None
    outputs, grads = [], []
    for table in (True, False):
        model.zero_grad()
        if not table:
            model.first_qkv = lambda idx, start=0: None
        out = model(x, cols=cols)
        out.logsumexp(-1).sum().backward()
        outputs.append(out.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n_layer", [1, 2])
@pytest.mark.parametrize("rows", [12, 3 * VOCAB])  # the larger batch also looks up the first qkv
@pytest.mark.parametrize("cols", [torch.tensor([5, 7]), slice(4, 8)])
def test_shared_prefixes_computed_once_give_the_full_forwards_outputs_and_gradients(
    n_layer, rows, cols
):
    # Rows whose first tokens come from a few distinct prefixes, as `a op` in `a op b =`.
    model = tiny_model(n_layer)
    prefixes = tokens(3, 4, seed=8)
    x = torch.cat([prefixes[torch.arange(rows) % 3], tokens(rows, 4, seed=9)], dim=1)
    shared = model.shared_prefix(x, cols)
    assert shared is not None and shared[0].shape == (3, 4)  # the longest prefix before cols
    outputs, grads = [], []
    for once in (True, False):
        model.zero_grad()
        if not once:
            model.shared_prefix = lambda idx, cols: None
        out = model.train()(x, cols=cols)
        out.logsumexp(-1).sum().backward()
        outputs.append(out.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(x, cols=cols), outputs[-1])
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    assert torch.equal(outputs[0].argmax(-1), outputs[1].argmax(-1))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_with_dropout_training_computes_every_row_and_evaluation_shares():
    model = tiny_model(2, dropout=0.5).train()
    prefixes = tokens(3, 4, seed=8)
    x = torch.cat([prefixes[torch.arange(12) % 3], tokens(12, 4, seed=9)], dim=1)
    calls = []
    model.shared_prefix = lambda idx, cols: calls.append(model.training)
    model(x, cols=slice(4, 8))  # each row's own dropout mask: nothing shared
    model.eval()(x, cols=slice(4, 8))
    assert calls == [False]


def test_rows_without_a_shared_prefix_take_the_plain_path():
    model = tiny_model(2)
    x = tokens(8, 6)
    assert model.shared_prefix(x, slice(3, 6)) is None  # 7 distinct first tokens in 8 rows
    assert model.shared_prefix(x[:, [0] * 6], torch.tensor([0, 5])) is None  # nothing before 0


def test_sequences_longer_than_max_len_are_refused():
    with pytest.raises(ValueError, match="sequence length 17 exceeds model.max_len 16"):
        tiny_model()(tokens(1, 17))


def test_greedy_generation_appends_the_argmax_of_each_prefix():
    model = tiny_model(2)
    x = tokens(2, 4)
    out = model.generate(x, max_new_tokens=5)
    assert out.shape == (2, 9)
    assert torch.equal(out[:, :4], x)
    with torch.no_grad():
        for t in range(4, 9):
            assert torch.equal(out[:, t], model(out[:, :t])[:, -1].argmax(-1))


def test_generation_stops_at_eos_and_at_max_len():
    model = tiny_model(2)
    x = tokens(1, 4)
    first = int(model.generate(x, max_new_tokens=1)[0, -1])
    assert model.generate(x, max_new_tokens=5, eos_id=first).shape == (1, 5)
    assert model.generate(x, max_new_tokens=100).shape == (1, 16)


def test_sampling_is_reproducible_with_a_generator():
    model = tiny_model(2)
    x = tokens(1, 4)
    runs = [
        model.generate(x, 8, temperature=1.0, generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])


def test_nandas_init_draws_each_weight_matrix_at_one_over_d_model_and_zero_biases():
    """Nanda et al. 2023's code: weights N(0, 1/d_model), the read-out N(0, 1/vocab), no
    biases; on their one-layer model the initial norm is about 42, not PyTorch's ~150."""
    cfg = ModelConfig(n_layer=1, d_model=128, n_head=4, d_ff=512, layer_norm=False, init="nanda")
    vocab = 115  # x+y mod 113: the residues, the operator and '='
    torch.manual_seed(0)
    model = GPT(cfg, vocab)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert not p.any(), name
        else:
            std = vocab**-0.5 if name == "head.weight" else 128**-0.5
            assert abs(p.std().item() / std - 1) < 0.05, (name, p.std().item(), std)
    norm = lambda m: torch.sqrt(sum((p**2).sum() for p in m.parameters())).item()
    # Their positions are 3, ours max_len (64): 43 rather than their 42.
    assert 41 < norm(model) < 45
    torch.manual_seed(0)
    assert norm(GPT(ModelConfig(**{**cfg.__dict__, "init": "pytorch"}), vocab)) > 140
    torch.manual_seed(0)
    again = GPT(cfg, vocab)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    with_ln = tiny_model(init="nanda")  # LayerNorm's scales stay 1, its shifts 0
    assert torch.equal(with_ln.ln_f.weight, torch.ones(32)) and not with_ln.ln_f.bias.any()
