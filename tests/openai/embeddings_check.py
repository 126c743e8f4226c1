#!/usr/bin/env python3
"""Checks the server's `POST /v1/embeddings` with the official `openai` client.

Usage: embeddings_check.py BASE_URL EMBEDDER GOLDEN_JSON
  e.g. embeddings_check.py http://127.0.0.1:3917 minilm tests/fixtures/real/all-minilm-l6-v2/golden.json

The golden's `inputs[].text` are embedded three ways: the client's default (it asks for
base64 on the wire and decodes it), `encoding_format="float"`, and `encoding_format="base64"`
(the client hands the string back as it came). Each must equal the golden's `embedding`
within 1e-4 (f32 against f32); usage must count tokens; a generator's name is a 422. On
success prints one JSON line and exits 0; any mismatch raises (non-zero exit).
"""

import array
import base64
import json
import sys

import openai

BASE, MODEL, GOLDEN = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
TOLERANCE = 1e-4

client = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0, timeout=60)
with open(GOLDEN) as f:
    golden = json.load(f)
texts = [i["text"] for i in golden["inputs"]]
expected = [i["embedding"] for i in golden["inputs"]]
tokens = sum(i["n_tokens"] for i in golden["inputs"])


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def check(what, response, vectors):
    expect(response.object == "list", f"{what}: object {response.object!r}")
    expect(response.model == MODEL, f"{what}: model {response.model!r}")
    expect([d.index for d in response.data] == list(range(len(texts))), f"{what}: indices")
    expect(all(d.object == "embedding" for d in response.data), f"{what}: data objects")
    worst = 0.0
    for got, want in zip(vectors, expected):
        expect(len(got) == len(want), f"{what}: dimension {len(got)}, expected {len(want)}")
        worst = max(worst, max(abs(a - b) for a, b in zip(got, want)))
    expect(worst < TOLERANCE, f"{what}: max |delta| {worst} >= {TOLERANCE}")
    expect(response.usage.prompt_tokens == tokens, f"{what}: prompt_tokens {response.usage.prompt_tokens} != {tokens}")
    expect(response.usage.total_tokens == tokens, f"{what}: total_tokens {response.usage.total_tokens}")
    return worst


default = client.embeddings.create(model=MODEL, input=texts)
worst_default = check("default (base64 on the wire)", default, [d.embedding for d in default.data])

floats = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
worst_float = check("float", floats, [d.embedding for d in floats.data])

raw = client.embeddings.create(model=MODEL, input=texts, encoding_format="base64")
decoded = [array.array("f", base64.b64decode(d.embedding)).tolist() for d in raw.data]
check("base64", raw, decoded)
# Another request: its texts may batch otherwise, which moves sums by float rounding only.
apart = max(abs(a - b) for x, y in zip(decoded, (d.embedding for d in default.data)) for a, b in zip(x, y))
expect(apart < 1e-6, f"base64: off the default's vectors by {apart}")

one = client.embeddings.create(model=MODEL, input=texts[0], encoding_format="float")
# Alone, not in a padded batch: the same vector to float rounding (sums in another order).
expect(len(one.data) == 1, f"one string: {len(one.data)} embeddings")
alone = max(abs(a - b) for a, b in zip(one.data[0].embedding, floats.data[0].embedding))
expect(alone < 1e-6, f"one string: off its batched vector by {alone}")

try:
    client.embeddings.create(model="gpt2", input="Hello")
    raise AssertionError("a generator's name was accepted")
except openai.UnprocessableEntityError as error:
    text = error.response.text
    expect("is a generator" in text and "wrong_role" in text, f"the 422 does not name the role: {text}")

print(json.dumps({
    "ok": True,
    "model": MODEL,
    "texts": len(texts),
    "max_abs_delta_default": worst_default,
    "max_abs_delta_float": worst_float,
    "prompt_tokens": default.usage.prompt_tokens,
}))
