#!/usr/bin/env python3
"""Calls a tool through the official `openai` client, unchanged, and answers from its result.

Usage: tools_check.py BASE_URL MODEL

Asks "What is the weather like in Paris today?" (greedy) with two tools, get_weather and
get_time: with tool_choice naming get_weather; with "required", plainly and streamed (the
client's own accumulation of the streamed deltas); then sends the named call back with a
tool's result and asks the model to answer. Prints one JSON line with what the client read:
each answer's calls (name and parsed arguments), finish_reason and content. The Rust test
asserts on those values.
"""

import json
import sys

import openai

BASE, MODEL = sys.argv[1].rstrip("/"), sys.argv[2]
client = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0, timeout=120)

QUESTION = [{"role": "user", "content": "What is the weather like in Paris today?"}]
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The city"}}, "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Get the local time in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}}, "required": ["city"]}}},
]


def calls_of(tool_calls):
    return [{"id": c.id, "name": c.function.name, "arguments": json.loads(c.function.arguments)}
            for c in tool_calls or []]


def ask(messages, **extra):
    choice = client.chat.completions.create(
        model=MODEL, messages=messages, tools=TOOLS, temperature=0, max_tokens=80, **extra
    ).choices[0]
    return choice, {"calls": calls_of(choice.message.tool_calls),
                    "finish_reason": choice.finish_reason, "content": choice.message.content}


named_choice, named = ask(QUESTION, tool_choice={"type": "function",
                                                  "function": {"name": "get_weather"}})
_, required = ask(QUESTION, tool_choice="required")

# The client's streaming helper accumulates the deltas into the final message.
with client.beta.chat.completions.stream(
    model=MODEL, messages=QUESTION, tools=TOOLS, tool_choice="required", temperature=0,
    max_tokens=80,
) as stream:
    final = stream.get_final_completion().choices[0]
streamed = {"calls": calls_of(final.message.tool_calls), "finish_reason": final.finish_reason}

# The assistant's call goes back as the client hands it over, with the tool's answer.
call = named_choice.message.tool_calls[0]
history = QUESTION + [
    named_choice.message.model_dump(exclude_none=True),
    {"role": "tool", "tool_call_id": call.id,
     "content": json.dumps({"temperature_c": 31, "sky": "sunny"})},
]
_, answered = ask(history)

print(json.dumps({"named": named, "required": required, "streamed": streamed,
                  "answered": answered}))
