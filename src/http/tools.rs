//! OpenAI's function calling on `/v1/chat/completions`: the request's `tools` and
//! `tool_choice` checked, the grammar that keeps a required call to the tools, and the
//! answer's calls read out of its text.
//!
//! Invariants:
//! * `auto` never constrains the text: calls are read from what the model wrote, in the
//!   formats the templates teach (Hermes/Qwen `<tool_call>{..}</tool_call>` blocks after any
//!   text; Llama 3.1's answer that is one `{"name", "parameters"}` object). Each must name a
//!   given tool and carry an object of arguments, and nothing but white space may follow
//!   the calls; otherwise the whole answer stays text.
//! * `required` and a named function constrain the text with the schema grammar of
//!   structured outputs, so their calls always read; they are read as far as they are
//!   written (`calls_written.rs`), so that one `max_tokens` (or a stop string) cuts short
//!   keeps the calls it began, with the arguments written so far, as OpenAI's does.
//! * A stream sends a constrained answer's calls as they are written: each call's id and
//!   name once the name is whole, then its arguments piece by piece. Under `auto` it sends
//!   text as it comes, but holds back what may begin a call (a `<tool_call>` tag, or a `{`
//!   or `[` that opens the answer): such a call goes out whole once the answer has ended,
//!   since only then is it known to be one.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::api::{FunctionCall, FunctionCallChunk, Tool, ToolCall, ToolCallChunk};
use super::calls_written::{CallSoFar, Written};
use super::error::ApiError;
use crate::models::json_mode::{JsonSchema, MAX_CHOICES};
use crate::models::{FinishReason, ResponseFormat};

/// OpenAI's bound on a request's tools.
pub(super) const MAX_TOOLS: usize = 128;
const OPEN_TAG: &str = "<tool_call>";
const CLOSE_TAG: &str = "</tool_call>";

/// What the request lets the answer call.
pub(super) struct ToolUse {
    tools: Vec<Tool>,
    choice: ToolChoice,
    /// `parallel_tool_calls`: several calls in one answer (OpenAI's default).
    parallel: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ToolChoice {
    /// Text only; the tools are left out of the prompt.
    None,
    /// Text or calls, as the model chooses.
    Auto,
    /// At least one call.
    Required,
    /// A call of this function.
    Function(String),
}

/// An answer read for calls: the text before them (if any) and the calls.
#[derive(Debug, PartialEq)]
pub(super) struct Calls {
    pub text: Option<String>,
    pub calls: Vec<(String, String)>,
    /// Whether the calls are whole (a constrained answer cut short keeps those it began).
    pub whole: bool,
}

impl ToolUse {
    /// Checks `tools` (each description within `max_chars`), `tool_choice` and
    /// `parallel_tool_calls` as OpenAI does.
    pub(super) fn read(
        tools: Option<Vec<Tool>>,
        choice: Option<&Value>,
        parallel: Option<bool>,
        max_chars: usize,
    ) -> Result<Self, ApiError> {
        let invalid = |message: String| Err(ApiError::Validation(message));
        let tools = tools.unwrap_or_default();
        if tools.len() > MAX_TOOLS {
            return invalid(format!("tools: at most {MAX_TOOLS}"));
        }
        for (i, tool) in tools.iter().enumerate() {
            if tool.kind != "function" {
                return invalid(format!("tools[{i}].type: only \"function\""));
            }
            let name = &tool.function.name;
            if !is_function_name(name) {
                return invalid(format!(
                    "tools[{i}].function.name: {name:?} is not 1 to 64 letters, digits, _ or -"
                ));
            }
            let description = tool.function.description.as_deref().unwrap_or("");
            if description.chars().count() > max_chars {
                return invalid(format!(
                    "tools[{i}].function.description: over {max_chars} characters"
                ));
            }
        }
        let choice = match choice {
            None | Some(Value::Null) if tools.is_empty() => ToolChoice::None,
            None | Some(Value::Null) => ToolChoice::Auto,
            Some(Value::String(mode)) => match mode.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                _ => {
                    return invalid(format!(
                        "tool_choice: {mode:?} is not \"none\", \"auto\" or \"required\""
                    ))
                }
            },
            Some(named) => {
                let name = named
                    .as_object()
                    .filter(|o| o.len() == 2 && o.get("type") == Some(&json!("function")))
                    .and_then(|o| o.get("function")?.as_object())
                    .filter(|f| f.len() == 1)
                    .and_then(|f| f.get("name")?.as_str());
                let Some(name) = name else {
                    return invalid(
                        "tool_choice: \"none\", \"auto\", \"required\" or {\"type\": \
                         \"function\", \"function\": {\"name\": ..}}"
                            .into(),
                    );
                };
                ToolChoice::Function(name.to_string())
            }
        };
        match &choice {
            ToolChoice::Auto | ToolChoice::Required if tools.is_empty() => {
                return invalid("tool_choice: only with tools".into())
            }
            ToolChoice::Function(name) if !tools.iter().any(|t| &t.function.name == name) => {
                return invalid(format!("tool_choice: no tool is named {name:?}"))
            }
            _ => {}
        }
        Ok(Self {
            tools,
            choice,
            parallel: parallel.unwrap_or(true),
        })
    }

    /// Whether the answer is read for calls.
    pub(super) fn may_call(&self) -> bool {
        self.choice != ToolChoice::None
    }

    /// The shape of an answer the grammar keeps to calls; `None` when it is not kept.
    fn written(&self) -> Option<Written> {
        match &self.choice {
            ToolChoice::Function(name) => Some(Written::Arguments(name.clone())),
            ToolChoice::Required if self.parallel => Some(Written::Calls),
            ToolChoice::Required => Some(Written::Call),
            ToolChoice::None | ToolChoice::Auto => None,
        }
    }

    fn constrained(&self) -> bool {
        self.written().is_some()
    }

    /// A choice's `finish_reason` when its answer is calls: OpenAI's "stop" for a named
    /// function, else "tool_calls"; "length" when `max_tokens` ended it, and "stop" when a
    /// stop string cut the calls short.
    pub(super) fn finish_reason(&self, reason: FinishReason, whole: bool) -> &'static str {
        match (reason, &self.choice) {
            (FinishReason::Length, _) => "length",
            _ if !whole => "stop",
            (_, ToolChoice::Function(_)) => "stop",
            _ => "tool_calls",
        }
    }

    /// The tools as the template is given them: none with `tool_choice` "none".
    pub(super) fn for_template(&self) -> Vec<Value> {
        if !self.may_call() {
            return Vec::new();
        }
        self.tools
            .iter()
            .map(|tool| serde_json::to_value(tool).expect("serializable"))
            .collect()
    }

    /// The grammar a `required` or named call keeps to; `format`, the request's own, when
    /// the call is not constrained (which it may not be besides).
    pub(super) fn response_format(
        &self,
        format: ResponseFormat,
    ) -> Result<ResponseFormat, ApiError> {
        if !self.constrained() {
            return Ok(format);
        }
        // Each tool's parameters on their own first, so that an error names the tool.
        for (i, tool) in self.tools.iter().enumerate() {
            let kept = match &self.choice {
                ToolChoice::Function(name) => &tool.function.name == name,
                _ => true,
            };
            if kept {
                compile(parameters(tool), &format!("tools[{i}].function.parameters"))?;
            }
        }
        let schema = match &self.choice {
            ToolChoice::Function(name) => parameters(self.tool(name).expect("checked in read")),
            // `required` (the others returned above).
            _ => {
                let mut definitions = Map::new();
                let mut calls = Vec::new();
                for (i, tool) in self.tools.iter().enumerate() {
                    let name = &tool.function.name;
                    if self.tools[..i].iter().any(|t| &t.function.name == name) {
                        continue;
                    }
                    let mut arguments = parameters(tool);
                    // Each tool's `$defs` move to the root, where `$ref`s point.
                    for key in ["$defs", "definitions"] {
                        let Some(Value::Object(defs)) =
                            arguments.as_object_mut().and_then(|a| a.remove(key))
                        else {
                            continue;
                        };
                        for (name, definition) in defs {
                            match definitions.get(&name) {
                                Some(other) if other != &definition => {
                                    return Err(ApiError::Validation(format!(
                                        "tools: two tools define {name:?} in {key} differently"
                                    )))
                                }
                                _ => definitions.insert(name, definition),
                            };
                        }
                    }
                    calls.push(json!({"type": "object", "required": ["name", "arguments"],
                        "properties": {
                            "name": {"const": tool.function.name},
                            "arguments": arguments,
                    }}));
                }
                if calls.len() > MAX_CHOICES {
                    return Err(ApiError::Validation(format!(
                        "tool_choice: \"required\" keeps to at most {MAX_CHOICES} tools (the \
                         grammar's bound on alternatives); name one, or use \"auto\""
                    )));
                }
                let call = json!({"anyOf": calls});
                let mut schema = if self.parallel {
                    json!({"type": "array", "items": call, "minItems": 1})
                } else {
                    call
                };
                if !definitions.is_empty() {
                    schema["$defs"] = Value::Object(definitions);
                }
                schema
            }
        };
        if !matches!(format, ResponseFormat::Text) {
            return Err(ApiError::Validation(
                "response_format: only text with tool_choice \"required\" or a named function, \
                 which keep the answer to the call"
                    .into(),
            ));
        }
        let schema = compile(schema, "tools")?;
        Ok(ResponseFormat::JsonSchema(Arc::new(schema)))
    }

    /// The calls `text` makes, if it makes any; `None`: it is text.
    pub(super) fn read_calls(&self, text: &str) -> Option<Calls> {
        if let Some(written) = self.written() {
            let read = written.calls_in(text);
            return (!read.calls.is_empty()).then(|| Calls {
                text: None,
                calls: read
                    .calls
                    .into_iter()
                    .map(|call| (call.name, call.arguments.to_string()))
                    .collect(),
                whole: read.whole,
            });
        }
        match &self.choice {
            ToolChoice::Auto => match text.find(OPEN_TAG) {
                Some(start) => {
                    let before = text[..start].trim_end();
                    let mut calls = Vec::new();
                    let mut rest = &text[start..];
                    while let Some(body) = rest.trim_start().strip_prefix(OPEN_TAG) {
                        let (inner, after) = match body.find(CLOSE_TAG) {
                            Some(end) => (&body[..end], &body[end + CLOSE_TAG.len()..]),
                            // The model may end its turn in place of the closing tag.
                            None => (body, ""),
                        };
                        calls.push(self.call_in(serde_json::from_str(inner.trim()).ok()?)?);
                        rest = after;
                    }
                    rest.trim().is_empty().then(|| Calls {
                        text: (!before.trim().is_empty()).then(|| before.to_string()),
                        calls,
                        whole: true,
                    })
                }
                None => self.calls_in(serde_json::from_str(text.trim()).ok()?),
            },
            _ => None,
        }
    }

    /// The calls of a JSON answer: one call object or a non-empty list of them.
    fn calls_in(&self, value: Value) -> Option<Calls> {
        let calls = match value {
            Value::Array(items) if !items.is_empty() => items
                .into_iter()
                .map(|item| self.call_in(item))
                .collect::<Option<Vec<_>>>()?,
            object @ Value::Object(_) => vec![self.call_in(object)?],
            _ => return None,
        };
        Some(Calls {
            text: None,
            calls,
            whole: true,
        })
    }

    /// `{"name", "arguments"}` (or Llama's `"parameters"`) naming a given tool, with an
    /// object of arguments (or the JSON text of one), as its name and arguments' text.
    fn call_in(&self, value: Value) -> Option<(String, String)> {
        let Value::Object(mut call) = value else {
            return None;
        };
        let name = call.remove("name")?.as_str()?.to_string();
        self.tool(&name)?;
        let arguments = match call
            .remove("arguments")
            .or_else(|| call.remove("parameters"))
        {
            Some(Value::String(text)) => serde_json::from_str(&text).ok()?,
            Some(arguments) => arguments,
            None => json!({}),
        };
        (call.is_empty() && arguments.is_object()).then(|| (name, arguments.to_string()))
    }

    fn tool(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.function.name == name)
    }
}

/// `schema` compiled as a `json_schema` response format's; an error names `field`.
fn compile(schema: Value, field: &str) -> Result<JsonSchema, ApiError> {
    JsonSchema::from_openai(&json!({"name": "tool_call", "schema": schema}))
        .map_err(|e| ApiError::Validation(format!("{field}: {e}")))
}

/// A function's `parameters`; one that takes none, when it has none.
fn parameters(tool: &Tool) -> Value {
    tool.function.parameters.clone().map_or_else(
        || json!({"type": "object", "properties": {}}),
        Value::Object,
    )
}

/// OpenAI's rule for a function's name: 1 to 64 ASCII letters, digits, `_` or `-`.
fn is_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Call `i`'s id among a choice's calls, whose ids begin `id`.
fn call_id(id: &str, i: usize) -> String {
    format!("call_{id}_{i}")
}

/// The answer's calls as the response writes them, numbered for their ids.
pub(super) fn tool_calls(calls: Vec<(String, String)>, id: &str) -> Vec<ToolCall> {
    calls
        .into_iter()
        .enumerate()
        .map(|(i, (name, arguments))| ToolCall {
            id: call_id(id, i),
            kind: "function".into(),
            function: FunctionCall { name, arguments },
        })
        .collect()
}

/// How a choice's stream ends when its answer may call tools.
#[derive(Debug, PartialEq)]
pub(super) enum Ending {
    /// The answer is text: this much of it is still to send.
    Text(String),
    /// The answer is calls: these pieces of them are still to send; `whole` as in [`Calls`].
    Calls {
        pieces: Vec<ToolCallChunk>,
        whole: bool,
    },
}

/// Streams an answer that may call tools (see the module's invariants).
pub(super) struct CallHold {
    /// Received but not sent as text.
    held: String,
    /// Whether any text but white space has been sent (a JSON call opens the answer only).
    opened: bool,
    /// Under `auto`, a call may have begun: all that comes is held.
    capturing: bool,
    /// A constrained answer's shape, by which its calls are read as they are written.
    written: Option<Written>,
    /// How many bytes of each call's arguments have been sent (a call is announced once).
    sent: Vec<usize>,
    /// What the choice's call ids begin with.
    ids: String,
}

impl CallHold {
    pub(super) fn new(tools: &ToolUse, ids: String) -> Self {
        let written = tools.written();
        Self {
            held: String::new(),
            opened: false,
            capturing: false,
            written,
            sent: Vec::new(),
            ids,
        }
    }

    /// What of the answer so far, ending with `text`, can be sent now: text, and pieces of
    /// calls.
    pub(super) fn push(&mut self, text: &str) -> (String, Vec<ToolCallChunk>) {
        self.held.push_str(text);
        if let Some(written) = &self.written {
            let calls = written.calls_in(&self.held).calls;
            return (String::new(), pieces(&mut self.sent, &self.ids, calls));
        }
        if self.capturing {
            return (String::new(), Vec::new());
        }
        let start = self.held.trim_start();
        if !self.opened && (start.starts_with('{') || start.starts_with('[')) {
            self.capturing = true;
            return (String::new(), Vec::new());
        }
        if let Some(at) = self.held.find(OPEN_TAG) {
            self.capturing = true;
            return (self.send(at), Vec::new());
        }
        if !self.opened && start.is_empty() {
            return (String::new(), Vec::new());
        }
        // The longest end that may begin a tag stays.
        let kept = (1..OPEN_TAG.len().min(self.held.len() + 1))
            .rev()
            .find(|&n| {
                self.held.is_char_boundary(self.held.len() - n)
                    && OPEN_TAG.starts_with(&self.held[self.held.len() - n..])
            })
            .unwrap_or(0);
        (self.send(self.held.len() - kept), Vec::new())
    }

    /// The first `len` bytes held, sent.
    fn send(&mut self, len: usize) -> String {
        let sent: String = self.held.drain(..len).collect();
        self.opened |= !sent.trim().is_empty();
        sent
    }

    /// Once the answer has ended (all its text pushed): what is left to send.
    pub(super) fn finish(&mut self, tools: &ToolUse) -> Ending {
        let held = std::mem::take(&mut self.held);
        if let Some(written) = &self.written {
            // Every piece went out as it was pushed; a constrained answer that began no
            // call (cut short before its first name was whole) is text.
            return match self.sent.is_empty() {
                true => Ending::Text(held),
                false => Ending::Calls {
                    pieces: Vec::new(),
                    whole: written.calls_in(&held).whole,
                },
            };
        }
        match self.capturing.then(|| tools.read_calls(&held)).flatten() {
            // Text before a call was sent as it came; none is held with one.
            Some(calls) if calls.text.is_none() => {
                let calls = calls
                    .calls
                    .iter()
                    .map(|(name, arguments)| CallSoFar {
                        name: name.clone(),
                        arguments,
                    })
                    .collect();
                Ending::Calls {
                    pieces: pieces(&mut self.sent, &self.ids, calls),
                    whole: true,
                }
            }
            _ => Ending::Text(held),
        }
    }
}

/// What a stream sends of `calls` (as far as they are written) beyond what `sent` says went
/// out: a new call's id, name and arguments so far; a known call's further arguments.
fn pieces(sent: &mut Vec<usize>, ids: &str, calls: Vec<CallSoFar>) -> Vec<ToolCallChunk> {
    let mut pieces = Vec::new();
    for (index, call) in calls.into_iter().enumerate() {
        match sent.get_mut(index) {
            None => {
                sent.push(call.arguments.len());
                pieces.push(ToolCallChunk {
                    index,
                    id: Some(call_id(ids, index)),
                    kind: Some("function".into()),
                    function: FunctionCallChunk {
                        name: Some(call.name),
                        arguments: call.arguments.to_string(),
                    },
                });
            }
            Some(sent) if *sent < call.arguments.len() => {
                pieces.push(ToolCallChunk {
                    index,
                    id: None,
                    kind: None,
                    function: FunctionCallChunk {
                        name: None,
                        arguments: call.arguments[*sent..].to_string(),
                    },
                });
                *sent = call.arguments.len();
            }
            Some(_) => {}
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools(choice: Value) -> ToolUse {
        let tools: Vec<Tool> = serde_json::from_value(json!([
            {"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "get_time"}},
        ]))
        .unwrap();
        ToolUse::read(Some(tools), Some(&choice), None, 64).unwrap()
    }

    fn call(name: &str, arguments: &str) -> (String, String) {
        (name.to_string(), arguments.to_string())
    }

    #[test]
    fn hermes_blocks_after_any_text_are_calls_and_anything_after_them_makes_it_all_text() {
        let auto = tools(json!("auto"));
        let text = "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
        assert_eq!(
            auto.read_calls(text),
            Some(Calls {
                text: Some("Let me look.".into()),
                calls: vec![
                    call("get_weather", r#"{"city":"Paris"}"#),
                    call("get_time", "{}")
                ],
                whole: true,
            })
        );
        // The turn may end where the closing tag would be.
        let unclosed = "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}";
        assert_eq!(
            auto.read_calls(unclosed).unwrap().calls,
            vec![call("get_time", "{}")]
        );
        for text in [
            "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call> and more",
            "<tool_call>{\"name\": \"unknown\", \"arguments\": {}}</tool_call>",
            "<tool_call>{\"name\": \"get_time\", \"arguments\": [1]}</tool_call>",
            "<tool_call>{\"name\": \"get_time\", \"arguments\": {}, \"x\": 1}</tool_call>",
            "<tool_call>not json</tool_call>",
            "It is sunny.",
        ] {
            assert_eq!(auto.read_calls(text), None, "{text}");
        }
    }

    #[test]
    fn an_answer_that_is_one_json_call_or_a_list_of_them_is_calls_as_llama_writes_them() {
        let auto = tools(json!("auto"));
        let llama = " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}";
        assert_eq!(
            auto.read_calls(llama).unwrap().calls,
            vec![call("get_weather", r#"{"city":"Paris"}"#)]
        );
        let text_arguments = r#"[{"name": "get_time", "arguments": "{}"}]"#;
        assert_eq!(
            auto.read_calls(text_arguments).unwrap().calls,
            vec![call("get_time", "{}")]
        );
        assert_eq!(auto.read_calls(r#"{"city": "Paris"}"#), None);
        assert_eq!(tools(json!("none")).read_calls(llama), None);
    }

    #[test]
    fn required_and_named_calls_keep_to_grammars_of_the_tools() {
        let text = |choice: Value, parallel: bool| {
            let mut tools = tools(choice);
            tools.parallel = parallel;
            let ResponseFormat::JsonSchema(schema) =
                tools.response_format(ResponseFormat::Text).unwrap()
            else {
                panic!("not constrained");
            };
            move |text: &str| {
                let mut state = schema.start();
                text.bytes().all(|b| state.feed(&schema, b)) && state.is_whole(&schema)
            }
        };
        let named = text(
            json!({"type": "function", "function": {"name": "get_weather"}}),
            true,
        );
        assert!(named(r#"{"city": "Paris"}"#));
        assert!(!named(r#"{"town": "Paris"}"#));
        let required = text(json!("required"), true);
        assert!(required(
            r#"[{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]"#
        ));
        assert!(!required("[]"));
        assert!(!required(
            r#"[{"name": "get_time", "arguments": {"city": "Rome"}}]"#
        ));
        let one = text(json!("required"), false);
        assert!(one(
            r#"{"name": "get_weather", "arguments": {"city": "Rome"}}"#
        ));
        assert!(!one(r#"[{"name": "get_time", "arguments": {}}]"#));
    }

    #[test]
    fn choices_that_name_no_tool_or_need_tools_are_refused() {
        let none: Option<Vec<Tool>> = None;
        assert!(ToolUse::read(none.clone(), Some(&json!("required")), None, 64).is_err());
        assert!(ToolUse::read(none, Some(&json!("none")), None, 64).is_ok());
        let tools: Vec<Tool> =
            serde_json::from_value(json!([{"type": "function", "function": {"name": "a"}}]))
                .unwrap();
        let named = json!({"type": "function", "function": {"name": "b"}});
        assert!(ToolUse::read(Some(tools.clone()), Some(&named), None, 64).is_err());
        assert!(ToolUse::read(Some(tools), Some(&json!("always")), None, 64).is_err());
        let many: Vec<Tool> = (0..65)
            .map(|i| {
                serde_json::from_value(
                    json!({"type": "function", "function": {"name": format!("f{i}")}}),
                )
                .unwrap()
            })
            .collect();
        let required = ToolUse::read(Some(many), Some(&json!("required")), None, 64).unwrap();
        assert!(required.response_format(ResponseFormat::Text).is_err());
        let long: Vec<Tool> = serde_json::from_value(json!([{"type": "function",
            "function": {"name": "a", "description": "d".repeat(65)}}]))
        .unwrap();
        assert!(ToolUse::read(Some(long), None, None, 64).is_err());
    }

    /// Each push's text, and the calls' pieces joined (name, arguments), of a stream of
    /// `pieces` under `tools`; then how it ended.
    fn streamed(tools: &ToolUse, pieces: &[&str]) -> (Vec<String>, Vec<(String, String)>, Ending) {
        let mut hold = CallHold::new(tools, "x".into());
        let mut calls: Vec<(String, String)> = Vec::new();
        let mut join = |chunks: Vec<ToolCallChunk>| {
            for chunk in chunks {
                match chunk.function.name {
                    Some(name) => {
                        assert_eq!(chunk.index, calls.len());
                        assert_eq!(chunk.id, Some(call_id("x", chunk.index)));
                        calls.push((name, chunk.function.arguments));
                    }
                    None => calls[chunk.index].1.push_str(&chunk.function.arguments),
                }
            }
        };
        let mut texts = Vec::new();
        for piece in pieces {
            let (text, chunks) = hold.push(piece);
            texts.push(text);
            join(chunks);
        }
        let end = hold.finish(tools);
        if let Ending::Calls { pieces, .. } = &end {
            join(pieces.clone());
        }
        (texts, calls, end)
    }

    #[test]
    fn a_stream_holds_what_may_begin_a_call_and_sends_the_rest_as_it_comes() {
        let auto = tools(json!("auto"));
        let (sent, calls, end) = streamed(
            &auto,
            &[
                "It is",
                " <tool",
                "_call>{\"name\": \"get_time\"}",
                "</tool_call>",
            ],
        );
        assert_eq!(sent, ["It is", " ", "", ""]);
        assert_eq!(calls, [call("get_time", "{}")]);
        assert!(matches!(end, Ending::Calls { whole: true, .. }));
        let (sent, calls, _) = streamed(&auto, &["\n", "{\"name\": \"get_time\"}"]);
        assert_eq!(sent, ["", ""]);
        assert_eq!(calls, [call("get_time", "{}")]);
        // Held text that is no call goes out at the end.
        let (sent, calls, end) = streamed(&auto, &["It is <tool", " sunny"]);
        assert_eq!(sent, ["It is ", "<tool sunny"]);
        assert!(calls.is_empty());
        assert_eq!(end, Ending::Text(String::new()));
        let (sent, _, end) = streamed(&auto, &["{not a call", "}"]);
        assert_eq!(sent, ["", ""]);
        assert_eq!(end, Ending::Text("{not a call}".into()));
    }

    #[test]
    fn a_stream_sends_a_required_calls_name_once_whole_then_its_arguments_piece_by_piece() {
        let required = tools(json!("required"));
        let pieces = [
            "[{\"name\": \"get_",
            "weather\", \"arguments\": {\"ci",
            "ty\": \"Par",
            "is\"}}, {\"name\": \"get_time\", \"arguments\": {}}]",
        ];
        let mut hold = CallHold::new(&required, "x".into());
        let sizes: Vec<usize> = pieces.iter().map(|p| hold.push(p).1.len()).collect();
        // Nothing until the first name is whole; then a piece a push.
        assert_eq!(sizes, [0, 1, 1, 2]);
        let (texts, calls, end) = streamed(&required, &pieces);
        assert!(texts.iter().all(String::is_empty));
        let whole = required.read_calls(&pieces.concat()).unwrap();
        assert_eq!(calls, whole.calls);
        assert_eq!(calls[0], call("get_weather", "{\"city\": \"Paris\"}"));
        assert_eq!(
            end,
            Ending::Calls {
                pieces: Vec::new(),
                whole: true
            }
        );
        // Cut short, it keeps what it began, as the whole answer does.
        let (_, cut, end) = streamed(&required, &pieces[..3]);
        assert_eq!(cut, [call("get_weather", "{\"city\": \"Par")]);
        assert_eq!(
            cut,
            required.read_calls(&pieces[..3].concat()).unwrap().calls
        );
        assert_eq!(
            end,
            Ending::Calls {
                pieces: Vec::new(),
                whole: false
            }
        );
        assert_eq!(
            required.finish_reason(FinishReason::Length, false),
            "length"
        );
        assert_eq!(required.finish_reason(FinishReason::Stop, false), "stop");
        assert_eq!(
            required.finish_reason(FinishReason::Stop, true),
            "tool_calls"
        );
        // Cut before a name was whole, it is text.
        let (_, none, end) = streamed(&required, &pieces[..1]);
        assert!(none.is_empty());
        assert_eq!(end, Ending::Text(pieces[0].into()));
    }

    #[test]
    fn a_named_functions_arguments_stream_from_the_first_piece() {
        let named = tools(json!({"type": "function", "function": {"name": "get_weather"}}));
        let (_, calls, end) = streamed(&named, &[" {\"city\"", ": \"Rome\"}"]);
        assert_eq!(calls, [call("get_weather", "{\"city\": \"Rome\"}")]);
        assert!(matches!(end, Ending::Calls { whole: true, .. }));
        assert_eq!(named.finish_reason(FinishReason::Stop, true), "stop");
    }
}
