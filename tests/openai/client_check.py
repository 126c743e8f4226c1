#!/usr/bin/env python3
"""Checks the server's OpenAI-compatible API with the official `openai` client.

Usage: client_check.py BASE_URL GENERATOR
  e.g. client_check.py http://127.0.0.1:3917 gpt2

Every completion is compared with the native `POST /v1/models/{name}/generate` answer for
the same prompt and parameters: the choice's text must be the native `continuation`, and
`usage` must count the native `prompt_tokens` and `generated_tokens`; with a stop string the
text is the greedy one cut before it, plain and streamed. On success prints one
JSON line and exits 0; any mismatch raises (non-zero exit).
"""

import json
import sys
import urllib.request

import openai

BASE = sys.argv[1].rstrip("/")
MODEL = sys.argv[2]
PROMPT = "I have an idea!"
OTHER_PROMPT = "The weather today is"

GREEDY = {"temperature": 0, "max_tokens": 5}
SAMPLED = {"temperature": 0.8, "top_p": 0.9, "seed": 7, "max_tokens": 5}

client = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0, timeout=60)


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def native(prompt, params):
    """The native generation for `prompt` with the completion's parameters."""
    body = {"text": prompt, "max_new_tokens": params["max_tokens"]}
    body.update(
        {
            k: v
            for k, v in params.items()
            if k in ("temperature", "top_p", "seed", "stop", "logprobs", "presence_penalty", "frequency_penalty")
        }
    )
    request = urllib.request.Request(
        f"{BASE}/v1/models/{MODEL}/generate",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        expect(response.status == 200, f"native generate answered {response.status}")
        return json.load(response)


def check_against_native(what, completion, prompts, params):
    """Each choice (in index order) is the native continuation; usage sums the native counts."""
    answers = [native(p, params) for p in prompts]
    choices = sorted(completion.choices, key=lambda c: c.index)
    expect(
        [c.index for c in choices] == list(range(len(prompts))),
        f"{what}: choice indices {[c.index for c in choices]}, expected {list(range(len(prompts)))}",
    )
    for choice, answer in zip(choices, answers):
        expect(
            choice.text == answer["continuation"],
            f"{what}: choice {choice.index} text {choice.text!r} != native continuation {answer['continuation']!r}",
        )
        expect(
            answer["generated"].endswith(answer["continuation"]),
            f"{what}: native generated {answer['generated']!r} does not end with its continuation",
        )
        expect(choice.finish_reason in ("stop", "length"), f"{what}: finish_reason {choice.finish_reason!r}")
    usage = completion.usage
    expect(usage is not None, f"{what}: no usage")
    prompt_tokens = sum(a["prompt_tokens"] for a in answers)
    generated_tokens = sum(a["generated_tokens"] for a in answers)
    expect(
        (usage.prompt_tokens, usage.completion_tokens) == (prompt_tokens, generated_tokens),
        f"{what}: usage prompt/completion tokens {usage.prompt_tokens}/{usage.completion_tokens}, "
        f"native {prompt_tokens}/{generated_tokens}",
    )
    expect(
        usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
        f"{what}: total_tokens {usage.total_tokens} is not prompt + completion",
    )
    return answers


def expect_422(what, **extra):
    try:
        client.completions.create(model=MODEL, prompt=PROMPT, **GREEDY, **extra)
    except openai.UnprocessableEntityError as error:
        expect(error.status_code == 422, f"{what}: status {error.status_code}")
        return
    raise AssertionError(f"{what}: accepted; expected openai.UnprocessableEntityError (422)")


# The model list.
models = client.models.list()
ids = [m.id for m in models.data]
expect(MODEL in ids, f"{MODEL!r} is not in GET /v1/models: {ids}")
for m in models.data:
    expect(m.object == "model", f"model {m.id!r}: object {m.object!r}")
    expect(m.owned_by == "infergraph", f"model {m.id!r}: owned_by {m.owned_by!r}")
    expect(isinstance(m.created, int), f"model {m.id!r}: created {m.created!r}")

# Greedy, then the same streamed.
greedy = client.completions.create(model=MODEL, prompt=PROMPT, **GREEDY)
expect(greedy.object == "text_completion", f"greedy: object {greedy.object!r}")
expect(greedy.model == MODEL, f"greedy: model {greedy.model!r}")
[greedy_native] = check_against_native("greedy", greedy, [PROMPT], GREEDY)

chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, stream=True, **GREEDY))
expect(chunks, "stream: no chunks")
streamed = "".join(choice.text for chunk in chunks for choice in chunk.choices)
expect(
    streamed == greedy.choices[0].text,
    f"stream: joined chunks {streamed!r} != non-streamed text {greedy.choices[0].text!r}",
)
finish = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
expect(
    finish == [greedy.choices[0].finish_reason],
    f"stream: finish reasons {finish}, expected [{greedy.choices[0].finish_reason!r}]",
)

# A stop string ends the choice and is left out of its text, plain and streamed, as on
# OpenAI; a stop string whose start ends the text is held back, then sent in full.
text = greedy.choices[0].text
middle = text[len(text) // 2 : len(text) // 2 + 2]
never = text[-2:] + "\u00a7never"
stop_cases = [(middle, text[: text.find(middle)], "stop"), (never, text, "length")]
stopped = {}
for stop, want, reason in stop_cases:
    plain = client.completions.create(model=MODEL, prompt=PROMPT, stop=[stop], **GREEDY)
    got = plain.choices[0]
    expect(got.text == want, f"stop {stop!r}: text {got.text!r}, expected {want!r}")
    expect(got.finish_reason == reason, f"stop {stop!r}: finish_reason {got.finish_reason!r}")
    pieces = [
        c.text
        for chunk in client.completions.create(
            model=MODEL, prompt=PROMPT, stop=[stop], stream=True, **GREEDY
        )
        for c in chunk.choices
    ]
    expect("".join(pieces) == want, f"stop {stop!r}: streamed {pieces!r}, expected {want!r}")
    stopped[stop] = got.text

# Seeded sampling reproduces the native seeded sampling.
sampled = client.completions.create(model=MODEL, prompt=PROMPT, **SAMPLED)
check_against_native("sampled", sampled, [PROMPT], SAMPLED)

# A list of prompts: one choice each, in order.
batch = client.completions.create(model=MODEL, prompt=[PROMPT, OTHER_PROMPT], **GREEDY)
expect(len(batch.choices) == 2, f"list: {len(batch.choices)} choices, expected 2")
check_against_native("list", batch, [PROMPT, OTHER_PROMPT], GREEDY)

# n choices: choice j is the native sampling with seed + j.
several = client.completions.create(model=MODEL, prompt=PROMPT, n=2, **SAMPLED)
expect(len(several.choices) == 2, f"n=2: {len(several.choices)} choices, expected 2")
for choice in sorted(several.choices, key=lambda c: c.index):
    params = dict(SAMPLED, seed=SAMPLED["seed"] + choice.index)
    answer = native(PROMPT, params)
    expect(
        choice.text == answer["continuation"],
        f"n=2: choice {choice.index} text {choice.text!r} != native {answer['continuation']!r}",
    )

# Log-probabilities: the native route's numbers, in OpenAI's shape, plain and streamed.
WITH_LOGPROBS = dict(GREEDY, logprobs=2)
scored = client.completions.create(model=MODEL, prompt=PROMPT, **WITH_LOGPROBS).choices[0].logprobs
reference = native(PROMPT, WITH_LOGPROBS)["logprobs"]
expect(scored.tokens == [t["token"] for t in reference], f"logprobs tokens {scored.tokens}")
expect(
    scored.token_logprobs == [t["logprob"] for t in reference],
    f"token_logprobs {scored.token_logprobs} != native {[t['logprob'] for t in reference]}",
)
expect(
    scored.top_logprobs == [{a["token"]: a["logprob"] for a in t["top_logprobs"]} for t in reference],
    f"top_logprobs {scored.top_logprobs}",
)
lengths = [len(t) for t in scored.tokens]
expect(
    scored.text_offset == [len(PROMPT) + sum(lengths[:i]) for i in range(len(lengths))],
    f"text_offset {scored.text_offset}",
)
streamed_logprobs = [
    c.choices[0].logprobs
    for c in client.completions.create(model=MODEL, prompt=PROMPT, stream=True, **WITH_LOGPROBS)
    if c.choices and c.choices[0].logprobs is not None
]
expect(
    sum((l.token_logprobs for l in streamed_logprobs), []) == scored.token_logprobs,
    "streamed token_logprobs differ from the plain ones",
)
expect(
    [o for l in streamed_logprobs for o in l.text_offset] == scored.text_offset,
    "streamed text_offset differs from the plain one",
)

# lm-evaluation-harness's loglikelihood request: the prompt echoed and scored, then one token.
echoed = client.completions.create(
    model=MODEL, prompt=PROMPT, echo=True, logprobs=1, max_tokens=1, temperature=0
)
scores = echoed.choices[0].logprobs
expect(echoed.choices[0].text.startswith(PROMPT), f"echo: {echoed.choices[0].text!r}")
expect(scores.token_logprobs[0] is None, "echo: the first prompt token is scored")
expect(
    len(scores.tokens) == echoed.usage.prompt_tokens + 1,
    f"echo: {len(scores.tokens)} tokens for {echoed.usage.prompt_tokens} + 1",
)
expect(all(lp <= 0 for lp in scores.token_logprobs[1:]), "echo: a positive log-probability")

# The same request tokenized on the client's side (the harness's default): the prompt as
# token ids gets the same answer.
prompt_ids = native(PROMPT, {"max_tokens": 1})["prompt_token_ids"]
by_ids = client.completions.create(
    model=MODEL, prompt=prompt_ids, echo=True, logprobs=1, max_tokens=1, temperature=0
)
expect(by_ids.choices[0].text == echoed.choices[0].text, f"token ids: {by_ids.choices[0].text!r}")
expect(
    by_ids.choices[0].logprobs.token_logprobs == scores.token_logprobs,
    "token ids: other log-probabilities than the text's",
)

# OpenAI's penalties, as the native route applies them.
PENALIZED = dict(GREEDY, frequency_penalty=0.8, presence_penalty=0.5)
penalized = client.completions.create(model=MODEL, prompt=PROMPT, **PENALIZED)
check_against_native("penalties", penalized, [PROMPT], PENALIZED)

# Parameters that would change the output but are not implemented are refused, as are
# values out of OpenAI's range.
REFUSED = {
    "best_of=2": dict(best_of=2),
    "logprobs=6": dict(logprobs=6),
    "presence_penalty=2.5": dict(presence_penalty=2.5),
    "logit_bias past the vocabulary": dict(logit_bias={"99999999": 1}),
}
for what, extra in REFUSED.items():
    expect_422(what, **extra)

print(json.dumps({
    "ok": True,
    "model": MODEL,
    "models": ids,
    "greedy": greedy.choices[0].text,
    "greedy_tokens": [greedy_native["prompt_tokens"], greedy_native["generated_tokens"]],
    "streamed_chunks": len(chunks),
    "sampled": sampled.choices[0].text,
    "list": [c.text for c in sorted(batch.choices, key=lambda c: c.index)],
    "several": [c.text for c in sorted(several.choices, key=lambda c: c.index)],
    "logprobs": scored.token_logprobs,
    "penalized": penalized.choices[0].text,
    "refused_422": list(REFUSED),
    "stopped": stopped,
}))
