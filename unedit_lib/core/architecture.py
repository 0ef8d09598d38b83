"""Where things live inside a Hugging Face causal LM: one mapping for GPT-2, Llama and Phi.

Every editor (ROME, WISE), causal tracing and the probes find layers through this module,
so a new architecture is supported by adding one entry here. Module names follow
docs/editing.md sections 1.6 and 2.1:

| family | blocks              | MLP output projection (edited) | layout            | bias |
|--------|---------------------|--------------------------------|-------------------|------|
| gpt2   | transformer.h       | mlp.c_proj                     | Conv1D (in, out)  | yes  |
| llama  | model.layers        | mlp.down_proj                  | Linear (out, in)  | no   |
| phi    | model.layers        | mlp.fc2                        | Linear (out, in)  | yes  |
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

# family -> (blocks path, embedding path, final norm path, attention attr, mlp attr, mlp-out attr)
_FAMILIES = {
    "gpt2": ("transformer.h", "transformer.wte", "transformer.ln_f", "attn", "mlp", "c_proj"),
    "llama": ("model.layers", "model.embed_tokens", "model.norm", "self_attn", "mlp", "down_proj"),
    "phi": ("model.layers", "model.embed_tokens", "model.final_layernorm", "self_attn", "mlp", "fc2"),
}
# model_type -> family (Llama-like decoders share module names)
_MODEL_TYPES = {"gpt2": "gpt2", "llama": "llama", "mistral": "llama", "qwen2": "llama", "phi": "phi"}


class UnsupportedArchitecture(ValueError):
    pass


def _get(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass
class Architecture:
    """Accessors for one model; `layer` arguments are 0-based block indices."""

    model: nn.Module
    family: str

    @property
    def _paths(self):
        return _FAMILIES[self.family]

    @property
    def blocks(self) -> nn.ModuleList:
        return _get(self.model, self._paths[0])

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.n_embd

    @property
    def embedding(self) -> nn.Module:
        return _get(self.model, self._paths[1])

    @property
    def final_norm(self) -> nn.Module:
        return _get(self.model, self._paths[2])

    def block(self, layer: int) -> nn.Module:
        return self.blocks[layer]

    def attn(self, layer: int) -> nn.Module:
        return getattr(self.blocks[layer], self._paths[3])

    def mlp(self, layer: int) -> nn.Module:
        return getattr(self.blocks[layer], self._paths[4])

    def mlp_out(self, layer: int) -> nn.Module:
        """The MLP's output projection (ROME's `rewrite_module`, WISE's side-memory layer)."""
        return getattr(self.mlp(layer), self._paths[5])

    def mlp_out_slot(self, layer: int) -> tuple[nn.Module, str]:
        """(the MLP module, the attribute name of its output projection): where a replacement of the
        projection goes (WISE installs its side-memory layer there with setattr)."""
        return self.mlp(layer), self._paths[5]

    def mlp_out_name(self, layer: int) -> str:
        return f"{self._paths[0]}.{layer}.{self._paths[4]}.{self._paths[5]}"

    # -- weights in one orientation: (d_out, d_in), as in W k = v -------------------
    def is_transposed(self, layer: int) -> bool:
        """GPT-2's Conv1D stores the weight as (in, out)."""
        return type(self.mlp_out(layer)).__name__ == "Conv1D"

    def mlp_out_weight(self, layer: int) -> torch.Tensor:
        """W of the MLP output projection as a (d_out, d_in) tensor (a view for Conv1D)."""
        w = self.mlp_out(layer).weight
        return w.T if self.is_transposed(layer) else w

    def add_to_mlp_out_weight(self, layer: int, delta: torch.Tensor) -> None:
        """W <- W + delta, delta given as (d_out, d_in) whatever the storage layout."""
        w = self.mlp_out(layer).weight
        with torch.no_grad():
            w.add_((delta.T if self.is_transposed(layer) else delta).to(w.dtype))

    def mlp_out_bias(self, layer: int) -> torch.Tensor | None:
        return getattr(self.mlp_out(layer), "bias", None)

    @property
    def act_fn(self):
        """The MLP activation (WISE's routing score applies it; editing.md section 4.3)."""
        from transformers.activations import ACT2FN

        cfg = self.model.config
        name = getattr(cfg, "hidden_act", None) or getattr(cfg, "activation_function", "gelu_new")
        return ACT2FN[name]


def architecture(model: nn.Module) -> Architecture:
    """The accessor for a Hugging Face causal LM; a clear error for unknown families."""
    mt = getattr(getattr(model, "config", None), "model_type", None)
    if mt not in _MODEL_TYPES:
        raise UnsupportedArchitecture(
            f"model_type {mt!r} is not mapped; supported: {sorted(_MODEL_TYPES)}. "
            "Add its module paths to unedit_lib/core/architecture.py (_FAMILIES / _MODEL_TYPES)."
        )
    return Architecture(model, _MODEL_TYPES[mt])


def tiny_model(family: str, vocab_size: int = 512, seed: int = 0, **overrides) -> nn.Module:
    """A tiny randomly initialised model of one family, built locally (tests, benchmarks)."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PhiConfig, PhiForCausalLM

    torch.manual_seed(seed)
    if family == "gpt2":
        kw = dict(vocab_size=vocab_size, n_positions=256, n_embd=64, n_layer=4, n_head=4,
                  bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
        model = GPT2LMHeadModel(GPT2Config(**{**kw, **overrides}))
    elif family == "llama":
        kw = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)
        model = LlamaForCausalLM(LlamaConfig(**{**kw, **overrides}))
    elif family == "phi":
        # pad_token_id named (None, the later default): transformers 5.0.0's PhiConfig does not set it
        # and PhiModel reads it (AttributeError)
        kw = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=4, max_position_embeddings=256, pad_token_id=None)
        model = PhiForCausalLM(PhiConfig(**{**kw, **overrides}))
    else:
        raise UnsupportedArchitecture(f"unknown family {family!r}; use gpt2, llama or phi")
    return model.eval()


def logits_at(model, keep: torch.Tensor, **inputs) -> torch.Tensor:
    """Logits at the positions where `keep` ((batch, seq) bool) is True, as an (n, vocab) tensor
    in row-major order: the LM head runs on those positions only (transformers'
    `logits_to_keep` with a boolean mask), which matters when a loss reads a few positions of
    long rows. Models without that argument, and transformers releases before boolean masks were
    accepted (5.0-5.20 raise IndexError on a 2-D mask; 5.21 takes it), get full logits, sliced:
    the same numbers."""
    keep = keep.to(torch.bool)
    try:
        logits = model(**inputs, logits_to_keep=keep).logits
        if logits.dim() == 2 and logits.shape[0] == int(keep.sum()):
            return logits
    except (TypeError, IndexError):
        pass
    return model(**inputs).logits[keep]


class TailForward:
    """Logits of one fixed batch as a function of block `layer`'s output.

    An editor that optimises a change inside one block (ROME's δ at the MLP output, WISE's side
    memory) runs the same batch many times, and everything below that block is the same every
    time. One full forward (no KV cache, no gradient) captures the block's output `h` and the
    arguments the next block is called with; `logits(h')` then runs only the blocks above, the
    final norm and the LM head at `keep`: the full forward's arithmetic in eval mode, reordered.
    `full` holds the full forward's logits at `keep` and `exact` says whether `logits(h)`
    reproduced them (an architecture whose head does more than norm + LM head would not);
    callers fall back to full forwards when it is False.
    """

    def __init__(self, model, layer: int, keep: torch.Tensor, **inputs):
        arch = architecture(model)
        self.keep = keep.to(torch.bool)
        self.tail = [arch.block(i) for i in range(layer + 1, arch.n_layers)]
        self.norm, self.head = arch.final_norm, model.get_output_embeddings()
        got, handles = {}, []

        def block_out(mod, args, out):
            got["h"] = (out[0] if isinstance(out, tuple) else out).detach()

        def next_in(mod, args, kwargs):
            if args:
                got["args"], got["kwargs"] = args[1:], dict(kwargs)
            else:  # hidden states passed by name
                got["args"], got["kwargs"] = (), {k: v for k, v in kwargs.items() if k != "hidden_states"}

        handles.append(arch.block(layer).register_forward_hook(block_out))
        if self.tail:
            handles.append(self.tail[0].register_forward_pre_hook(next_in, with_kwargs=True))
        try:
            with torch.no_grad():
                self.full = logits_at(model, self.keep, **inputs, use_cache=False).float()
        finally:
            for h in handles:
                h.remove()
        self.h = got["h"]
        self.args, self.kwargs = got.get("args", ()), got.get("kwargs", {})

    @functools.cached_property
    def exact(self) -> bool:
        """Whether the tail from the captured output reproduces the full forward's logits (one tail
        forward, on first use: a caller with a check of its own, as WISE's, need not pay for it)."""
        with torch.no_grad():
            return self.matches(self.logits(self.h))

    def matches(self, logits: torch.Tensor) -> bool:
        return logits.shape == self.full.shape and torch.allclose(logits, self.full, rtol=1e-4, atol=1e-4)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(n_keep, vocab) float logits when block `layer` outputs `h` instead."""
        for block in self.tail:
            out = block(h, *self.args, **self.kwargs)
            h = out[0] if isinstance(out, tuple) else out
        return self.head(self.norm(h)[self.keep]).float()


# A model whose forward pass depends on how its input is split into calls (WISE's router decides
# per forward call, on that call's input: side_memory.install sets this) must be scored and
# generated exactly as its reference evaluator calls it; the evaluator's shortcuts (a question's
# prompt run once under its answers, long generations continued in a second call) are off for it.
CALL_DEPENDENT = "unedit_call_dependent_forward"


def call_dependent(model) -> bool:
    return bool(getattr(model, CALL_DEPENDENT, False))
