#!/usr/bin/env python3
"""Asks for a JSON object through the official `openai` client, unchanged.

Usage: json_check.py BASE_URL MODEL QUESTION

Asks QUESTION (one user message, greedy) with `response_format={"type": "json_object"}`,
plainly and streamed, and without it; then asks "Describe a cat." through the client's
structured outputs (`chat.completions.parse` with a pydantic model, which the client sends
as a strict `json_schema` and parses back into the model), and prints one JSON line with
what the client read: each answer's text and finish_reason (the streamed one's chunks
joined), and the parsed cat. The Rust test asserts on those values.
"""

import json
import sys
from typing import Literal, Optional

import openai
from pydantic import BaseModel

BASE, MODEL, QUESTION = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]

client = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0, timeout=120)
messages = [{"role": "user", "content": QUESTION}]
JSON_MODE = {"type": "json_object"}


def answer(**extra):
    choice = client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=200, **extra
    ).choices[0]
    return {"text": choice.message.content, "finish_reason": choice.finish_reason}


chunks = client.chat.completions.create(
    model=MODEL,
    messages=messages,
    temperature=0,
    max_tokens=200,
    response_format=JSON_MODE,
    stream=True,
)
texts, finishes = [], []
for chunk in chunks:
    for choice in chunk.choices:
        texts.append(choice.delta.content or "")
        if choice.finish_reason:
            finishes.append(choice.finish_reason)



class Cat(BaseModel):
    name: str
    age: int
    color: Literal["black", "white", "ginger", "grey"]
    likes: list[str]
    owner: Optional[str]


# The client raises unless the answer is whole and valid for the model.
parsed = client.chat.completions.parse(
    model=MODEL,
    messages=[{"role": "user", "content": "Describe a cat."}],
    temperature=0,
    max_tokens=200,
    response_format=Cat,
).choices[0]

print(
    json.dumps(
        {
            "json_mode": answer(response_format=JSON_MODE),
            "streamed": {"text": "".join(texts), "finish_reasons": finishes},
            "plain": answer(),
            "structured": {
                "text": parsed.message.content,
                "finish_reason": parsed.finish_reason,
                "cat": parsed.message.parsed.model_dump(),
            },
        }
    )
)
