"""Prompt templates and the one tokenisation of (question, answer) that everything shares.

Training, the evaluator, every editor and every baseline encode text through
`encode_qa`, so the prompt an editor edits is exactly the prompt the evaluator feeds.

Templates (docs/tofu.md section 3):
* "qa" (default; TOFU's Phi template as OpenUnlearning renders it): prompt
  `Question: {q}\nAnswer:`, answer ` {a}` + EOS. The prompt, "Answer:" included, is
  masked from the loss. (Legacy TOFU kept "Answer: " inside the loss span; we follow
  OpenUnlearning so that the answer span is the answer alone.)
* "llama2_chat": `[INST] {q} [/INST]` then `{a}` + EOS (the `paper` preset's models).
* "raw": the bare question (the paper's WISE edit-time prompts, for the mismatch ablation).
* "chatml": `<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n` then `{a}` + EOS
  (`<|im_end|>`): SmolLM2-Instruct's own turns (the `smollm2-forget01` and `smollm2-forget05` presets).

`subject_token_range` finds a subject's tokens with the fast tokenizer's offsets (ROME's lookup
position, causal tracing's corrupted span).
"""
from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = -100


class ContextTooLong(ValueError):
    """A prompt (with its answer or generated tokens) that does not fit the model's window."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    question_start: str
    question_end: str
    answer_start: str = ""

    def prompt(self, question: str) -> str:
        """What the model sees before it answers (generation starts right after it)."""
        return f"{self.question_start}{question}{self.question_end}"

    def answer(self, answer: str) -> str:
        return f"{self.answer_start}{answer}"

    def full(self, question: str, answer: str) -> str:
        return self.prompt(question) + self.answer(answer)


TEMPLATES = {
    "qa": PromptTemplate("qa", "Question: ", "\nAnswer:", " "),
    "llama2_chat": PromptTemplate("llama2_chat", "[INST] ", " [/INST]", ""),
    "raw": PromptTemplate("raw", "", "", " "),
    # SmolLM2-Instruct's own ChatML turns, without the system turn its chat template adds by default
    # (TOFU's llama2_chat template has none either; it would add ~20 tokens to every row)
    "chatml": PromptTemplate("chatml", "<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n", ""),
}


def question_of(prompt: str) -> str:
    """The question inside a prompt made by one of TEMPLATES (e.g. a log's `generated_text`
    prompt); a prompt no template made comes back as it is."""
    for t in sorted(TEMPLATES.values(), key=lambda t: -len(t.question_start + t.question_end)):
        if t.question_start + t.question_end and prompt.startswith(t.question_start) and prompt.endswith(t.question_end):
            return prompt[len(t.question_start):len(prompt) - len(t.question_end)]
    return prompt


def get_template(name_or_template) -> PromptTemplate:
    if isinstance(name_or_template, PromptTemplate):
        return name_or_template
    if name_or_template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {name_or_template!r}; valid: {sorted(TEMPLATES)}")
    return TEMPLATES[name_or_template]


def pad_id(tokenizer) -> int:
    """The id batches are padded with: the pad token, else EOS (TOFU's convention), else 0."""
    for i in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if i is not None:
            return int(i)
    return 0


def pad_batch(seqs, pad: int, side: str = "right"):
    """(ids, mask): token-id lists padded with `pad` into one (batch, longest) long tensor, and
    the attention mask (1 on real tokens); `side` "right" (scoring, training) or "left"
    (generation: every row ends where generation starts). The one padding helper."""
    import torch

    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        if len(s):
            cols = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
            ids[r, cols] = torch.tensor(list(s), dtype=torch.long)
            mask[r, cols] = 1
    return ids, mask


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt, with the tokenizer's own special prefix (BOS) if it adds one."""
    return list(tokenizer(prompt)["input_ids"])


def encode_answer(tokenizer, answer_text: str, add_eos: bool = True) -> list[int]:
    ids = list(tokenizer(answer_text, add_special_tokens=False)["input_ids"])
    if add_eos and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids


def encode_qa(tokenizer, template: PromptTemplate, question: str, answer: str, add_eos: bool = True):
    """(input_ids, labels): prompt ids then answer ids (+EOS); labels mask the prompt.

    Prompt and answer are tokenised separately and concatenated, so the answer's tokens
    are the same whatever precedes them (the convention of ROME's target encoding).
    """
    p = encode_prompt(tokenizer, template.prompt(question))
    a = encode_answer(tokenizer, template.answer(answer), add_eos=add_eos)
    return p + a, [IGNORE_INDEX] * len(p) + a


def subject_token_range(tokenizer, text: str, subject: str, char_start: int | None = None,
                        add_special_tokens: bool = True) -> tuple[list[int], tuple[int, int]]:
    """(input_ids, (b, e)): token ids of `text` and the half-open token span of `subject`.

    The subject's character span is [char_start, char_start + len(subject)) (default: its first
    occurrence, as rome's `find_token_range` / EasyEdit's `'{}'` replacement). A token belongs to
    the subject if its character span overlaps the subject's (a leading space inside the token,
    as in byte-level BPE "ĠMoon", does not matter). Special tokens (offsets (0, 0)) never count.
    """
    if char_start is None:
        char_start = text.find(subject)
        if char_start < 0:
            raise ValueError(f"subject {subject!r} is not a substring of {text!r}")
    char_end = char_start + len(subject)
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=add_special_tokens)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    inside = [i for i, (s, e) in enumerate(offsets) if e > s and s < char_end and e > char_start]
    if not inside:
        raise ValueError(f"no token of {text!r} covers the subject {subject!r}")
    return ids, (inside[0], inside[-1] + 1)


def context_fact(row: dict, answer: str) -> str:
    """Neutral wording of a fact given in the context (not IKE's `New Fact:` template)."""
    if row.get("set") in ("real_authors", "world_facts"):
        return f"The answer to \"{row['question']}\" is {answer}."
    return answer


def qa_texts(rows, template) -> list[str]:
    """The study's QA texts in the model's template (question + answer, and the paraphrased
    question + answer where TOFU has one): the model's own training text, the corpus of ROME's
    second moment C when no Wikipedia is available (rome uses 100k Wikipedia articles, §2.4)."""
    template = get_template(template)
    out = []
    for r in rows:
        out.append(template.full(r["question"], r["answer"]))
        if r.get("paraphrased_question"):
            out.append(template.full(r["paraphrased_question"], r["answer"]))
    return out
