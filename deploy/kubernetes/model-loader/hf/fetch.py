"""Fills the models volume with Hugging Face checkpoints, in the layout infergraph reads.

For each model of MODELS (JSON: {"folder name": "hub repo[@revision]"}) this leaves
/models/<folder>/ holding config.json, model.safetensors, tokenizer.json (and
tokenizer_config.json when the repo has one). A repo that already ships model.safetensors and
tokenizer.json is only downloaded (huggingface_hub); one that lacks either (an older
pytorch_model.bin, a vocab.txt-only tokenizer) is loaded with transformers and saved again.
Folders are written aside and renamed into place, so a model node never reads half a
folder. A folder that is already complete is skipped unless FORCE=1.
"""

import json
import os
import shutil
import subprocess
import sys

ROOT = os.environ.get("MODELS_DIR", "/models")
LIB = os.environ.get("PIP_TARGET_DIR", "/work/pylib")
MODELS = json.loads(os.environ["MODELS"])
FORCE = os.environ.get("FORCE") == "1"
NEEDED = ("config.json", "model.safetensors", "tokenizer.json")
WANTED = [*NEEDED, "tokenizer_config.json"]


def pip_install(*packages):
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir",
         "--disable-pip-version-check", "--target", LIB, *packages]
    )
    if LIB not in sys.path:
        sys.path.insert(0, LIB)


def complete(folder):
    return all(os.path.isfile(os.path.join(folder, f)) for f in NEEDED)


def convert(repo, revision, out):
    """Loads repo with transformers and saves it as safetensors plus a fast tokenizer."""
    pip_install(os.environ["TRANSFORMERS_PIN"], os.environ["TORCH_PIN"])
    from transformers import (AutoConfig, AutoModelForCausalLM,
                              AutoModelForSequenceClassification, AutoTokenizer)

    config = AutoConfig.from_pretrained(repo, revision=revision)
    archs = config.architectures or []
    if any(a.endswith("ForSequenceClassification") for a in archs):
        cls = AutoModelForSequenceClassification
    elif config.model_type == "bert":
        # A plain BertModel/BertForMaskedLM has no classifier head; infergraph refuses it.
        sys.exit(f"{repo}: {archs} is not a BertForSequenceClassification checkpoint")
    else:
        cls = AutoModelForCausalLM
    cls.from_pretrained(repo, revision=revision).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(repo, revision=revision, use_fast=True).save_pretrained(out)


def fetch(name, spec):
    repo, _, revision = spec.partition("@")
    revision = revision or None
    final = os.path.join(ROOT, name)
    if complete(final) and not FORCE:
        print(f"{final}: complete, skipped (FORCE=1 rewrites it)", flush=True)
        return
    tmp = os.path.join(ROOT, f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    from huggingface_hub import snapshot_download

    snapshot_download(repo, revision=revision, local_dir=tmp, allow_patterns=WANTED)
    if not complete(tmp):
        print(f"{repo}: no model.safetensors or tokenizer.json, converting", flush=True)
        convert(repo, revision, tmp)
    # Only the files infergraph reads.
    for entry in os.listdir(tmp):
        if entry not in WANTED:
            path = os.path.join(tmp, entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    old = os.path.join(ROOT, f".{name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(final):
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    print(f"{final}: {repo} ({revision or 'main'}): {sorted(os.listdir(final))}", flush=True)


def main():
    pip_install(os.environ["HUB_PIN"])
    for name, spec in MODELS.items():
        fetch(name, spec)


if __name__ == "__main__":
    main()
