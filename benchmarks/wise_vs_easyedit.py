"""WISE's activation score and threshold record: EasyEdit's own code beside ours, on one tiny model.

    python benchmarks/wise_vs_easyedit.py [--easyedit PATH]

PATH: a snapshot of zjunlp/EasyEdit, a git directory (default: the mirror the `fetch` tool makes,
/work/.mirror/zjunlp+EasyEdit/repo; a bare clone works) or a checked-out tree. Nothing of EasyEdit is
copied into this repository: its files `easyeditor/models/wise/{WISE.py, utils.py, merge/*}` and
`easyeditor/util/vl_utils.py` are read from the snapshot into a temporary folder (with empty package
`__init__`s, theirs import the whole library) and imported from there, and their functions run:
`utils.tokenize` builds the edit batch, `WISEAdapter` (editing forward + `save_editing_activation`)
records the threshold, `WISE._cal_activation_loss` gives the margin loss, and `euc(..., infer=True)`
scores the inference batches.

The model: a randomly initialised Llama (transformers LlamaConfig: 4 layers, 64 wide, built here, no
download) with a BPE tokenizer trained on a few sentences; the side memory at layer 3 is the main
weight plus random noise on a random 20 % of its entries (as a trained shard would be). Printed, for
the same padded batches: EasyEdit's numbers, ours under activation_score "easyedit" (which must
agree) and ours under "real-tokens" (which differ wherever there is padding).
"""
from __future__ import annotations

import argparse
import atexit
import copy
import importlib
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from unedit_lib.core.architecture import architecture, tiny_model  # noqa: E402
from unedit_lib.core.tokenizer import train_tokenizer  # noqa: E402
from unedit_lib.methods.wise import editor as wise, hparams as wise_hparams, side_memory  # noqa: E402

MIRROR = "/work/.mirror/zjunlp+EasyEdit/repo"
FILES = ["easyeditor/models/wise/WISE.py", "easyeditor/models/wise/utils.py", "easyeditor/util/vl_utils.py"] + \
    [f"easyeditor/models/wise/merge/{f}.py" for f in ("__init__", "gta", "linear", "slerp", "utils")]
TEXTS = ["Question: Who wrote the Blue Book?\nAnswer: The Blue Book was written by Ana Lopez.",
         "Question: Where was Ana Lopez born?\nAnswer: Ana Lopez was born in Madrid.",
         "Question: What is the capital of France?\nAnswer: Paris is the capital of France.",
         "I like to read books about history and science. You can see the sea. Because it rains, yes."]
REQUEST = {"prompt": "Question: Who wrote the Blue Book?\nAnswer:", "target_new": "Lopez",
           "loc_prompt": "I like to read books about history and science. You can see the sea."}
TEMPLATES = ["{}", "I like {}", "Because it rains, yes. You can see the sea. {}"]
LAYER = 3


def load_easyedit(source: str):
    """EasyEdit's WISE module and its utils, imported from files read out of the snapshot."""
    src = Path(source)
    is_git = (src / "HEAD").is_file() or (src / ".git").exists()
    git = ["git", f"--git-dir={src / '.git' if (src / '.git').exists() else src}"]
    commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() \
        if is_git else "(working tree)"
    root = Path(tempfile.mkdtemp(prefix="easyedit_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for f in FILES:
        text = subprocess.run(git + ["show", f"HEAD:{f}"], capture_output=True, text=True, check=True).stdout \
            if is_git else (src / f).read_text()
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(text)
    for pkg in ("easyeditor", "easyeditor/models", "easyeditor/models/wise", "easyeditor/util"):
        (root / pkg / "__init__.py").touch()
    sys.path.insert(0, str(root))
    return importlib.import_module("easyeditor.models.wise.WISE"), importlib.import_module(
        "easyeditor.models.wise.utils"), commit


def easyedit_adapter(EW, model, side_weight, config):
    """EasyEdit's WISEAdapter on `model`'s layer-LAYER down_proj, its side memory (`new_weight`) = ours."""
    mlp = architecture(model).mlp(LAYER)
    mlp.down_proj.weight.requires_grad_(False)
    adapter = EW.WISEAdapter(config, mlp.down_proj, transpose=True)
    adapter.new_weight = torch.nn.Parameter(side_weight.detach().clone(), requires_grad=False)
    mlp.down_proj = adapter
    return adapter


def capture(model, layer_module, **inputs):
    """The input of `layer_module` in one forward of `model`."""
    got = {}
    h = layer_module.register_forward_pre_hook(lambda m, a: got.setdefault("x", a[0].detach()))
    with torch.no_grad():
        model(**inputs, use_cache=False)
    h.remove()
    return got["x"]


def main(source: str) -> None:
    torch.manual_seed(0)
    EW, EU, commit = load_easyedit(source)
    tok = train_tokenizer(TEXTS * 3, vocab_size=400)
    base = tiny_model("llama", vocab_size=len(tok), initializer_range=0.2)     # LlamaConfig, 4 layers, 64 wide
    ours = copy.deepcopy(base)
    adapter = side_memory.install(ours, wise_hparams.WiseHParams(layer=LAYER, n_templates=len(TEMPLATES)))
    with torch.no_grad():
        noise = torch.randn_like(adapter.side_weight) * (torch.rand_like(adapter.side_weight) < 0.2)
        adapter.side_weight.add_(noise)
    config = types.SimpleNamespace(hidden_act=base.config.hidden_act, model_name="llama", retrieve=True,
                                   act_ratio=0.88, alpha=5.0, beta=20.0, gamma=10.0, objective_optimization="only_label")
    theirs = copy.deepcopy(base)
    ee = easyedit_adapter(EW, theirs, adapter.side_weight, config)
    print(f"EasyEdit {commit}: easyeditor/models/wise/WISE.py (euc, WISEAdapter), utils.py (tokenize)")

    # ---- the edit batch and the threshold record
    tok_ee = copy.deepcopy(tok)
    tok_ee.padding_side = "left"                     # editor.py:181-183: WISE's batches are left padded
    tok_ee.pad_token = tok_ee.eos_token              # editor.py:152: pad_token_id = eos_token_id (Llama)
    tokens, act_mask, deact_mask = EU.tokenize([REQUEST], tok_ee, "cpu", context_templates=TEMPLATES, hparams=config)
    batch = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
    hp = wise_hparams.WiseHParams(layer=LAYER, n_templates=len(TEMPLATES))
    ours_batch, _ = wise.build_batch(tok, {"prompt": REQUEST["prompt"], "target": REQUEST["target_new"]}, TEMPLATES,
                                     REQUEST["loc_prompt"], hp, "cpu")
    same = all(torch.equal(ours_batch[k], batch[k]) for k in batch)
    mask = batch["attention_mask"]
    print(f"edit batch: {tuple(mask.shape)} (rows x padded length), pads per row {(mask == 0).sum(1).tolist()}, "
          f"left padded: {bool((mask[:, -1] == 1).all())}; wise.build_batch(activation_score='easyedit') gives "
          f"the same ids and mask: {same}")
    ee.editing = True
    with torch.no_grad():
        theirs(**batch)
    ee.save_editing_activation()                    # WISE.py:474-476: euc over the edit rows, .mean()
    ee_record = ee.editing_mean_act.min_act()
    ee_loss = EW.WISE._cal_activation_loss(types.SimpleNamespace(model=theirs, config=config), ee.original_layer_output,
                                           ee.new_weight_layer_output, config=config, act_mask=act_mask,
                                           deact_mask=deact_mask)
    ee.editing = False
    adapter.editing = True
    with torch.no_grad():
        ours(**batch)
    main_out, side_out, ours_mask = adapter.edit_outputs
    adapter.editing = False
    d = side_memory.token_distances(main_out, side_out, adapter.act_fn)
    print("threshold record (min_act: mean score of the edit rows; threshold = 0.88 x it):")
    print(f"  EasyEdit save_editing_activation        {ee_record:.6f}")
    rec = {}
    for rule in wise_hparams.ACTIVATION_SCORES:
        s = side_memory.activation_score(d, ours_mask, None, rule)
        rec[rule] = float(s[:-1].mean())
        loss = wise.activation_loss(s[:-1], s[-1:], (config.alpha, config.beta, config.gamma))
        print(f"  ours activation_score={rule!r:14} {rec[rule]:.6f}   margin loss {float(loss):.6f}")
    print(f"  EasyEdit _cal_activation_loss            margin loss {float(ee_loss):.6f}")

    # ---- inference: a padded batch of prompts (the evaluator's generation batches are left padded)
    adapter.min_act = ee.editing_mean_act.min_a = rec["easyedit"]
    prompts = {"short batch (<= 100 tokens)": [REQUEST["prompt"], "Question: Where was Ana Lopez born?\nAnswer:",
                                               "Paris"],
               "long batch (> 100 tokens: max rule)": [REQUEST["prompt"], " ".join(TEXTS) * 2]}
    for name, texts in prompts.items():
        enc = {k: v for k, v in tok(texts, return_tensors="pt", padding=True).items() if k in ("input_ids", "attention_mask")}
        x = capture(theirs, ee, **enc)
        with torch.no_grad():
            main_o, side_o = ee.original_layer(x), ee.new_weight_forward(x)
            ee_score = EW.euc(main_o, side_o, config, infer=True)   # (B,) or, past 100 tokens, a scalar
            out = ee(x)
        ee_route = "side" if torch.equal(out, side_o) else "main" if torch.equal(out, main_o) else "?"
        m = enc["attention_mask"]
        print(f"{name}: {tuple(m.shape)}, pads per row {(m == 0).sum(1).tolist()}, threshold {0.88 * rec['easyedit']:.4f}")
        print(f"  EasyEdit euc(infer=True) {[round(v, 6) for v in ee_score.reshape(-1).tolist()]}, "
              f"batch mean {float(ee_score.mean()):.6f}, route {ee_route}")
        for rule in wise_hparams.ACTIVATION_SCORES:
            adapter.hparams.activation_score, adapter.decisions = rule, []
            with torch.no_grad():
                ours(**enc)
            dec = adapter.decisions[-1]
            s = dec["scores"][:, 0]
            route = "side" if dec["route"][0] >= 0 else "main"
            print(f"  ours {rule!r:14} per row {[round(v, 6) for v in s.tolist()]}, batch mean "
                  f"{float(s.mean()):.6f}, route {route}")
        adapter.decisions = None
    adapter.hparams.activation_score = "easyedit"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--easyedit", default=MIRROR, help="EasyEdit snapshot: a git directory or a checked-out tree")
    main(ap.parse_args().easyedit)
