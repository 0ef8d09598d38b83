"""Runs that survive a killed process (unedit_lib/core/checkpoints.py): a ROME or WISE run stopped after
an edit, or a baseline after an epoch, and rerun continues after it and ends where the uninterrupted run ends."""
import pytest
import torch

from unedit_lib.core import registry
from unedit_lib.core.architecture import architecture, tiny_model
from unedit_lib.core.checkpoints import EditCheckpoint
from unedit_lib.core.tokenizer import train_tokenizer
from unedit_lib.methods.baselines import training as baselines
from unedit_lib.methods.rome import editor as rome
from unedit_lib.methods.wise import editor as wise, side_memory
from unedit_lib.study import recipes  # noqa: F401 (attaches each method's code to the registry)

TEXTS = ["Who wrote Moon? Jane.", "Who wrote Sky? Tom.", "The book Hill is by Ana.", "The book Road is by Max.",
         "A cat sat on the mat and looked at the bird.", "Rain fell on the old town all night long."]
ROME_REQS = [dict(prompt="Who wrote Moon?", subject="Moon", target="Ana"),
             dict(prompt="Who wrote Sky?", subject="Sky", target="Max"),
             dict(prompt="The book Hill is by", subject="Hill", target="Tom")]
WISE_REQS = [{"prompt": r["prompt"], "target": r["target"]} for r in ROME_REQS]
ROME_FAST = dict(layer=2, v_num_grad_steps=3, context_template_length_params=[[5, 3]])
# a shard saved after every edit and two merged: the resumed run must carry memories and records over
WISE_FAST = dict(n_templates=2, n_iter=4, save_freq=1, merge_freq=2, activation_score="real-tokens")
KEY = {"run": "x-dummy", "hp_key": "abc"}


class Killed(Exception):
    pass


class KilledAfter(EditCheckpoint):
    """A checkpoint whose process dies right after its `n`-th save."""

    def __init__(self, path, key, n):
        super().__init__(path, key)
        self.n = n

    def save(self, done, tensors, stats, state=None):
        super().save(done, tensors, stats, state)
        if done == self.n:
            raise Killed


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS * 5, vocab_size=300)


def _bars(module, monkeypatch) -> list:
    """The progress bars `module` opens from now on."""
    bars, real = [], module.tqdm

    def spy(*a, **k):
        bars.append(real(*a, **k))
        return bars[-1]

    monkeypatch.setattr(module, "tqdm", spy)
    return bars


def _per_edit(stats):
    return {k: v for k, v in stats.items() if k not in ("edit_times_s", "segments")}


def test_rome_resumes_after_the_last_saved_edit(tok, tmp_path, monkeypatch):
    straight, s_stats = tiny_model("llama", vocab_size=len(tok)), {}
    rome.edit(straight, tok, ROME_REQS, stats=s_stats, **ROME_FAST)

    path = tmp_path / "rome.safetensors"
    with pytest.raises(Killed):
        rome.edit(tiny_model("llama", vocab_size=len(tok)), tok, ROME_REQS, stats={}, checkpoint=KilledAfter(path, KEY, 2),
                  **ROME_FAST)
    resumed, r_stats, ckpt = tiny_model("llama", vocab_size=len(tok)), {}, EditCheckpoint(path, KEY)
    bars = _bars(rome, monkeypatch)
    rome.edit(resumed, tok, ROME_REQS, stats=r_stats, checkpoint=ckpt, **ROME_FAST)
    assert bars[-1].n == bars[-1].total == 3                 # the progress counts each edit once
    assert torch.equal(architecture(resumed).mlp_out_weight(2), architecture(straight).mlp_out_weight(2))
    assert _per_edit(r_stats) == _per_edit(s_stats)
    assert len(r_stats["edit_times_s"]) == 3
    assert [(s["from_edit"], s["to_edit"]) for s in ckpt.record()] == [(0, 2), (2, 3)]
    assert ckpt.seconds_before > 0 and ckpt.record()[0]["cpu_model"] == ckpt.record()[1]["cpu_model"]


def test_wise_resumes_with_its_shards_and_merges(tok, tmp_path, monkeypatch):
    straight, s_stats = tiny_model("llama", vocab_size=len(tok), initializer_range=0.2), {}
    wise.edit(straight, tok, WISE_REQS, locality_prompts=TEXTS[4:], stats=s_stats, **WISE_FAST)

    path = tmp_path / "wise.safetensors"
    with pytest.raises(Killed):       # after edit 1: one shard saved, none merged yet
        wise.edit(tiny_model("llama", vocab_size=len(tok), initializer_range=0.2), tok, WISE_REQS,
                  locality_prompts=TEXTS[4:], stats={}, checkpoint=KilledAfter(path, KEY, 1), **WISE_FAST)
    resumed, r_stats = tiny_model("llama", vocab_size=len(tok), initializer_range=0.2), {}
    bars = _bars(wise, monkeypatch)
    wise.edit(resumed, tok, WISE_REQS, locality_prompts=TEXTS[4:], stats=r_stats, checkpoint=EditCheckpoint(path, KEY),
              **WISE_FAST)
    assert [(b.n, b.total) for b in bars if b.desc.startswith("WISE edits")] == [(3, 3)]
    a, b = side_memory.get_side_memory(straight), side_memory.get_side_memory(resumed)
    assert a.editing_total_cnt == b.editing_total_cnt == 3 and a.merge_cnt == b.merge_cnt == 1
    assert len(a.memory_weights) == len(b.memory_weights) == 2
    for x, y in zip(list(a.memory_weights) + [a.side_weight], list(b.memory_weights) + [b.side_weight]):
        assert torch.equal(x, y)
    assert a.memory_min_act == b.memory_min_act
    assert _per_edit(r_stats) == _per_edit(s_stats)


@pytest.mark.parametrize("method", ["npo", "idk"])      # a frozen reference; random IdK answers and retain rows
def test_a_baseline_resumes_after_its_last_saved_epoch(tok, method, tmp_path, capsys):
    forget = [{"question": r["prompt"], "answer": r["target"]} for r in ROME_REQS]
    retain = [{"question": t[:12], "answer": t[12:]} for t in TEXTS]
    fast = dict(method=method, retain_rows=retain, template="qa", idk_answers=["I don't know.", "No idea."],
                hp={"epochs": 3, "batch_size": 2, "grad_accum": 1, "lr": 1e-2, "warmup_epochs": 0.5, "progress": False})

    def model():          # GPT-2's dropout draws from torch's generator: the checkpoint must carry its state
        return tiny_model("gpt2", vocab_size=len(tok))

    straight, s_stats = model(), {}
    baselines.apply(straight, tok, forget, stats=s_stats, **fast)
    path = tmp_path / f"{method}.safetensors"
    with pytest.raises(Killed):          # after epoch 1 of 3
        baselines.apply(model(), tok, forget, stats={}, checkpoint=KilledAfter(path, KEY, 1), **fast)
    torch.manual_seed(123)               # the rerun's process starts with other random state
    resumed, r_stats = model(), {}
    ckpt = EditCheckpoint(path, KEY, unit=registry.code(method, "resumable"))     # the unit the runner gives it
    baselines.apply(resumed, tok, forget, stats=r_stats, checkpoint=ckpt, **fast)
    assert "resuming after epoch 1 " in capsys.readouterr().out
    for (n, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert torch.equal(a, b), n
    moved = model()
    assert not all(torch.equal(a, b) for a, b in zip(straight.parameters(), moved.parameters()))  # it trained
    assert r_stats["loss_curve"] == s_stats["loss_curve"] and r_stats["steps"] == s_stats["steps"] == 6
    assert [(s["from_edit"], s["to_edit"]) for s in ckpt.record()] == [(0, 1), (1, 3)]


def test_a_checkpoint_of_other_settings_or_a_garbled_file_starts_afresh(tok, tmp_path, capsys):
    path = tmp_path / "rome.safetensors"
    with pytest.raises(Killed):
        rome.edit(tiny_model("llama", vocab_size=len(tok)), tok, ROME_REQS, checkpoint=KilledAfter(path, KEY, 1),
                  **ROME_FAST)
    other = EditCheckpoint(path, {**KEY, "hp_key": "another"})
    assert other.load() is None and "other settings" in capsys.readouterr().out
    assert EditCheckpoint(path, KEY).load()["done"] == 1
    path.write_bytes(path.read_bytes()[:100])
    assert EditCheckpoint(path, KEY).load() is None and "unreadable checkpoint" in capsys.readouterr().out
    fresh, stats = tiny_model("llama", vocab_size=len(tok)), {}
    ckpt = EditCheckpoint(path, KEY)
    rome.edit(fresh, tok, ROME_REQS[:1], stats=stats, checkpoint=ckpt, **ROME_FAST)
    assert ckpt.record() is None and len(stats["edit_times_s"]) == 1      # made in one go: no segments
    ckpt.clear()
    assert not path.exists()


def test_the_evaluation_checkpoint_is_keyed_by_the_models_weights():
    from unedit_lib.core.checkpoints import model_digest

    a, b = tiny_model("llama", vocab_size=50), tiny_model("llama", vocab_size=50)
    assert model_digest(a) == model_digest(b)
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-6       # another CPU's rounding in one weight
    assert model_digest(a) != model_digest(b)
