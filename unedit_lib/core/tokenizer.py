"""The from-scratch presets' tokenizer (smoke, tiny): byte-level BPE trained on TOFU text (`tokenizers`)."""
from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_tokenizer(texts, vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2 style pre-tokenisation, no prefix space) wrapped for transformers.

    Deterministic for the same texts and vocab size. EOS ends every answer; a separate PAD
    token is used for batching (left padding for generation, as TOFU's evaluator does).
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD,
                                   padding_side="left", clean_up_tokenization_spaces=False)
    return fast

