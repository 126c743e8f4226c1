#!/usr/bin/env python3
"""Checks API keys as the official `openai` client meets them.

Usage: auth_check.py BASE_URL GENERATOR KEY
  e.g. auth_check.py http://127.0.0.1:3917 gpt2 k-0123

With `api_key=KEY` the client lists the models and gets a completion (plain and streamed);
with a wrong key each call raises `openai.AuthenticationError` carrying the server's error
body. On success prints one JSON line and exits 0; anything else raises (non-zero exit).
"""

import json
import sys

import openai

BASE, MODEL, KEY = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]


def client(key):
    return openai.OpenAI(base_url=BASE + "/v1", api_key=key, max_retries=0, timeout=60)


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


good = client(KEY)
models = [m.id for m in good.models.list()]
expect(MODEL in models, f"{MODEL} not in {models}")
completion = good.completions.create(model=MODEL, prompt="I have an idea!", max_tokens=3, temperature=0)
expect(completion.choices[0].finish_reason == "length", completion)
chunks = list(good.completions.create(model=MODEL, prompt="Hello", max_tokens=3, temperature=0, stream=True))
expect(chunks, "the stream gave no chunk")

refusals = 0
for key in ("not-" + KEY, "EMPTY"):
    bad = client(key)
    calls = (
        lambda: bad.models.list(),
        lambda: bad.completions.create(model=MODEL, prompt="Hello", max_tokens=3),
        lambda: list(bad.completions.create(model=MODEL, prompt="Hello", max_tokens=3, stream=True)),
    )
    for call in calls:
        try:
            call()
        except openai.AuthenticationError as error:
            expect(error.status_code == 401, error)
            expect(error.body == "the API key is not accepted", error.body)
            refusals += 1
        else:
            raise AssertionError(f"a call with key {key!r} was answered")

print(json.dumps({"models": models, "refusals": refusals}))
