"""This project's transformer as TransformerLens's HookedTransformer: its config and weights
mapped, written as a folder, and opened again in a notebook.

The model (grok/model.py) is a GPT-2-shaped decoder: learned positions added to the token
embeddings, pre-LayerNorm blocks (LayerNorm eps 1e-5), attention with biases scaled by
1/sqrt(d_head), an exact (erf) GELU MLP, a final LayerNorm and an unembedding without bias.
HookedTransformer has each of these: normalization_type "LN", positional_embedding_type
"standard", act_fn "gelu" (not "gelu_new", the tanh approximation). The model's inference
shortcuts (shared prefixes, looked-up first projections, outputs at the answer positions only)
compute the same values, and the key-padding mask changes nothing before a sequence's padding,
so HookedTransformer's logits at every real position, the answer's included, are the model's.

An export folder holds `config.json` (HookedTransformerConfig's arguments), `state_dict.pt`
(its weights; `torch.load(weights_only=True)`), `vocab.json` (the token of each id),
`config.yaml` (the run's settings) and `manifest.json` (written last, with the files' hashes).
Torch is imported by the functions that touch tensors, TransformerLens only by
`load_transformer_lens`.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grok.checkpoint import (
    CheckpointError,
    check_files,
    is_checkpoint,
    publish,
    read_checkpoint,
    read_manifest,
)
from grok.config import ModelConfig
from grok.overrides import dump_config
from grok.tokenizer import build_tokenizer

if TYPE_CHECKING:
    import torch
    from transformer_lens import HookedTransformer

FORMAT = "transformer-lens"
FILES = ("config.json", "state_dict.pt", "vocab.json", "config.yaml")
# The model settings and what each is in HookedTransformer; dropout and init_scale act in
# training only. A setting added to ModelConfig is refused (when not at its default) until it
# is mapped here.
MAPPED = {
    "n_layer": "n_layers",
    "d_model": "d_model",
    "n_head": "n_heads",
    "d_ff": "d_mlp",
    "max_len": "n_ctx",
}
TRAINING_ONLY = {"dropout", "init_scale"}


class MappingError(ValueError):
    """A model that HookedTransformer cannot express."""


def lens_config(model: ModelConfig, vocab_size: int, name: str) -> dict[str, Any]:
    """HookedTransformerConfig's arguments for a model of these settings."""
    for field in dataclasses.fields(model):
        if field.name in MAPPED or field.name in TRAINING_ONLY:
            continue
        if getattr(model, field.name) != field.default:
            value = getattr(model, field.name)
            raise MappingError(
                f"model.{field.name}: {value!r} has no counterpart in TransformerLens's "
                "HookedTransformer; this model cannot be exported to it"
            )
    return {
        **{ours: getattr(model, key) for key, ours in MAPPED.items()},
        "d_head": model.d_model // model.n_head,
        "d_vocab": vocab_size,
        "d_vocab_out": vocab_size,
        "act_fn": "gelu",
        "normalization_type": "LN",
        "positional_embedding_type": "standard",
        "eps": 1e-5,
        "attn_only": False,
        "default_prepend_bos": False,  # prompts are token ids as the model was trained on
        "tokenizer_name": None,
        "model_name": name,
    }


def lens_state_dict(weights: dict[str, torch.Tensor], model: ModelConfig) -> dict:
    """The model's weights under HookedTransformer's names and shapes (per head for attention)."""
    import torch

    left = dict(weights)

    def take(name: str) -> torch.Tensor:
        if name not in left:
            raise MappingError(f"the weights lack {name}; this model cannot be exported")
        return left.pop(name).float()

    nh, hs, C = model.n_head, model.d_model // model.n_head, model.d_model
    out = {"embed.W_E": take("tok_emb.weight"), "pos_embed.W_pos": take("pos_emb.weight")}
    for i in range(model.n_layer):
        pre = f"blocks.{i}."  # the same prefix in both
        for a, b in (("ln_1", "ln1"), ("ln_2", "ln2")):
            out[pre + f"{b}.w"] = take(pre + f"{a}.weight")
            out[pre + f"{b}.b"] = take(pre + f"{a}.bias")
        # qkv (3C, C): rows q, k, v, each C rows head by head -> W (nh, C, hs), b (nh, hs)
        w, b = take(pre + "attn.qkv.weight"), take(pre + "attn.qkv.bias")
        for part, wp, bp in zip("QKV", w.split(C), b.split(C)):
            out[pre + f"attn.W_{part}"] = wp.view(nh, hs, C).transpose(1, 2).contiguous()
            out[pre + f"attn.b_{part}"] = bp.view(nh, hs).contiguous()
        # proj (C, C) reads the heads' outputs concatenated -> W_O (nh, hs, C)
        out[pre + "attn.W_O"] = take(pre + "attn.proj.weight").T.reshape(nh, hs, C)
        out[pre + "attn.b_O"] = take(pre + "attn.proj.bias")
        out[pre + "mlp.W_in"] = take(pre + "mlp.fc.weight").T.contiguous()
        out[pre + "mlp.b_in"] = take(pre + "mlp.fc.bias")
        out[pre + "mlp.W_out"] = take(pre + "mlp.proj.weight").T.contiguous()
        out[pre + "mlp.b_out"] = take(pre + "mlp.proj.bias")
    out["ln_final.w"], out["ln_final.b"] = take("ln_f.weight"), take("ln_f.bias")
    head = take("head.weight")  # (V, C), no bias
    out["unembed.W_U"] = head.T.contiguous()
    out["unembed.b_U"] = torch.zeros(head.shape[0])
    if left:
        raise MappingError(
            f"weights with no place in TransformerLens's HookedTransformer: {', '.join(left)}"
        )
    return out


def export_transformer_lens(checkpoint: str | Path, out: str | Path) -> Path:
    """Write a checkpoint's model as a folder that TransformerLens opens (see the module's
    docstring); a model it cannot express is refused before anything is written."""
    import torch

    src, final = Path(checkpoint), Path(out)
    cfg, weights, _ = read_checkpoint(src)
    tok = build_tokenizer(cfg.task)
    config = lens_config(cfg.model, tok.vocab_size, final.name)
    state = lens_state_dict(weights, cfg.model)
    if final.exists() and not is_lens_export(final):
        raise CheckpointError(f"{final}: exists and is not a TransformerLens export; kept")

    def write(tmp: Path) -> None:
        (tmp / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        torch.save(state, tmp / "state_dict.pt")
        (tmp / "vocab.json").write_text(json.dumps(list(tok.symbols)) + "\n")
        (tmp / "config.yaml").write_text(dump_config(cfg))

    extra = {"format": FORMAT, "source": str(src)}
    return publish(final, FILES, read_manifest(src).get("step"), write, extra)


def is_lens_export(folder: Path) -> bool:
    return is_checkpoint(folder) and read_manifest(folder).get("format") == FORMAT


def load_transformer_lens(folder: str | Path, device: str = "cpu") -> HookedTransformer:
    """The HookedTransformer of an export folder, in float32 and eval mode, its weights as
    trained (no LayerNorm folding or centring: the logits are the model's own)."""
    import torch

    try:
        from transformer_lens import HookedTransformer, HookedTransformerConfig
    except ImportError as err:
        raise ImportError(
            f"opening an export needs TransformerLens 3 (pip install 'transformer-lens>=3.9,<4', "
            f"or the package's interp extra): {str(err).splitlines()[0]}"
        ) from None
    d = Path(folder)
    if not is_lens_export(d):
        raise CheckpointError(f"{d}: not a TransformerLens export (python -m grok.export)")
    check_files(d, FILES, read_manifest(d))
    config = HookedTransformerConfig(**json.loads((d / "config.json").read_text()), device=device)
    with warnings.catch_warnings():
        # TransformerLens 3 points to TransformerBridge, which boots Hugging Face models; a
        # model of this project's own is a HookedTransformer.
        warnings.filterwarnings("ignore", "HookedTransformer is deprecated", DeprecationWarning)
        model = HookedTransformer(config)
    state = torch.load(d / "state_dict.pt", map_location=device, weights_only=True)
    result = model.load_state_dict(state, strict=False)
    # Only the attention's own buffers (its causal mask, its fill value) are not in the export.
    missing = [k for k in result.missing_keys if not k.endswith((".mask", ".IGNORE"))]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{d}: the weights do not fit the config (missing {missing}, "
            f"unexpected {result.unexpected_keys})"
        )
    return model.eval()
