#!/usr/bin/env python3
"""Chats with the server through the official `openai` client, unchanged.

Usage: chat_check.py BASE_URL MODEL QUESTION
  e.g. chat_check.py http://127.0.0.1:3917 smollm2 "What is the capital of France?"

Asks QUESTION (one user message, greedy) plainly (with `store=False`,
`service_tier="auto"` and `metadata`, which change nothing), with `logprobs`, streamed with
`stream_options={"include_usage": True}`, with both penalties at 2, sampled with `top_k` 1,
and with a logit bias of
-100 on the plain answer's first token, and prints one JSON line with what the client read:
the plain answer's text, finish_reason and usage; the streamed chunks' texts joined, the
first delta's role, the finish reasons, and the last chunk's choices and usage; the two
adjusted answers. The Rust test asserts on those values.
"""

import json
import sys
import urllib.request

import openai

BASE, MODEL, QUESTION = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]

client = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0, timeout=120)
messages = [{"role": "user", "content": QUESTION}]


def counts(usage):
    """The three counts OpenAI always sends (the client adds optional details as None)."""
    if usage is None:
        return None
    return {k: getattr(usage, k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


# With the neutral values of fields that newer SDKs and apps send by default.
plain = client.chat.completions.create(
    model=MODEL,
    messages=messages,
    temperature=0,
    store=False,
    service_tier="auto",
    metadata={"check": "chat_check.py"},
)
choice = plain.choices[0]

chunks = list(
    client.chat.completions.create(
        model=MODEL,
        messages=messages,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
)
with_choices = [c for c in chunks if c.choices]

scored = client.chat.completions.create(
    model=MODEL, messages=messages, temperature=0, logprobs=True, top_logprobs=2
).choices[0].logprobs.content
last = chunks[-1]

# OpenAI's sampling adjustments. The penalties count the answer's tokens only (not the
# prompt's), and a greedy answer that repeats no token keeps every pick under them. A bias of
# -100 on the plain answer's first token (its id from the native chat route) rules it out.
steady = client.chat.completions.create(
    model=MODEL, messages=messages, temperature=0, presence_penalty=2, frequency_penalty=2
).choices[0].message.content
native = urllib.request.Request(
    f"{BASE}/v1/models/{MODEL}/chat",
    data=json.dumps({"messages": messages, "logprobs": 0}).encode(),
    headers={"Content-Type": "application/json"},
    method="POST",
)
with urllib.request.urlopen(native, timeout=120) as response:
    first_id = json.load(response)["logprobs"][0]["token_id"]
# vLLM's sampling fields, as clients send them (`extra_body`): with only the most likely
# token left to draw from, a sample at any temperature is the greedy answer.
only_the_top = client.chat.completions.create(
    model=MODEL, messages=messages, temperature=1.5, seed=1, extra_body={"top_k": 1, "min_p": 0.5}
).choices[0].message.content
banned = client.chat.completions.create(
    model=MODEL, messages=messages, temperature=0, max_tokens=8, logit_bias={str(first_id): -100}
).choices[0].message.content

print(json.dumps({
    "object": plain.object,
    "model": plain.model,
    "id": plain.id,
    "role": choice.message.role,
    "content": choice.message.content,
    "finish_reason": choice.finish_reason,
    "usage": counts(plain.usage),
    "chunk_objects": sorted({c.object for c in chunks}),
    "chunk_ids": sorted({c.id for c in chunks}),
    "first_delta_role": with_choices[0].choices[0].delta.role,
    "streamed": "".join(c.choices[0].delta.content or "" for c in with_choices),
    "streamed_finish_reasons": [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason],
    "usage_on_other_chunks": [c.usage for c in chunks[:-1] if c.usage is not None],
    "last_choices": [c.model_dump() for c in last.choices],
    "last_usage": counts(last.usage),
    "logprob_tokens": [t.token for t in scored],
    "logprobs": [t.logprob for t in scored],
    "top_logprobs": [[(a.token, a.logprob) for a in t.top_logprobs] for t in scored],
    "with_penalties": steady,
    "top_k_1": only_the_top,
    "first_token_banned": banned,
}))
