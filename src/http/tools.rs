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
//!   structured outputs, so their calls always read (unless `max_tokens` cuts them: then the
//!   text is returned as it is, `finish_reason` "length").
//! * A stream sends text as it comes, but holds back what may begin a call (a `<tool_call>`
//!   tag, or a `{` or `[` that opens the answer): a call goes out whole, once the answer has
//!   ended, in the chunk before the last.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::api::{FunctionCall, Tool, ToolCall, ToolCallChunk};
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

    /// Whether the whole answer is calls (the grammar keeps it to them).
    pub(super) fn constrained(&self) -> bool {
        matches!(self.choice, ToolChoice::Required | ToolChoice::Function(_))
    }

    /// A choice's `finish_reason` when its answer is calls: OpenAI's "stop" for a named
    /// function, else "tool_calls"; "length" when `max_tokens` ended it.
    pub(super) fn finish_reason(&self, reason: FinishReason) -> &'static str {
        match (reason, &self.choice) {
            (FinishReason::Length, _) => "length",
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
        match &self.choice {
            ToolChoice::None => None,
            // The grammar wrote the arguments alone.
            ToolChoice::Function(name) => {
                let arguments: Value = serde_json::from_str(text).ok()?;
                arguments.is_object().then(|| Calls {
                    text: None,
                    calls: vec![(name.clone(), text.trim().to_string())],
                })
            }
            ToolChoice::Required => {
                let value: Value = serde_json::from_str(text).ok()?;
                self.calls_in(value)
            }
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
                    })
                }
                None => self.calls_in(serde_json::from_str(text.trim()).ok()?),
            },
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
        Some(Calls { text: None, calls })
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

/// The answer's calls as the response writes them, numbered for their ids.
pub(super) fn tool_calls(calls: Vec<(String, String)>, id: &str) -> Vec<ToolCall> {
    calls
        .into_iter()
        .enumerate()
        .map(|(i, (name, arguments))| ToolCall {
            id: format!("call_{id}_{i}"),
            kind: "function".into(),
            function: FunctionCall { name, arguments },
        })
        .collect()
}

/// The answer's calls as a stream's `delta.tool_calls` writes them.
pub(super) fn tool_call_chunks(calls: Vec<(String, String)>, id: &str) -> Vec<ToolCallChunk> {
    tool_calls(calls, id)
        .into_iter()
        .enumerate()
        .map(|(index, call)| ToolCallChunk {
            index,
            id: call.id,
            kind: call.kind,
            function: call.function,
        })
        .collect()
}

/// Streams an answer that may call tools: text goes out as it comes, but from where a call
/// may begin, everything is held until the answer ends.
pub(super) struct CallHold {
    /// Received but not sent.
    held: String,
    /// Whether any text but white space has been sent (a JSON call opens the answer only).
    opened: bool,
    /// A call may have begun: all that comes is held.
    capturing: bool,
}

impl CallHold {
    pub(super) fn new(tools: &ToolUse) -> Self {
        Self {
            held: String::new(),
            opened: false,
            // The whole answer is calls: nothing is sent before the end.
            capturing: tools.constrained(),
        }
    }

    /// What of the text so far, ending with `text`, can be sent now.
    pub(super) fn push(&mut self, text: &str) -> String {
        self.held.push_str(text);
        if self.capturing {
            return String::new();
        }
        let start = self.held.trim_start();
        if !self.opened && (start.starts_with('{') || start.starts_with('[')) {
            self.capturing = true;
            return String::new();
        }
        if let Some(at) = self.held.find(OPEN_TAG) {
            self.capturing = true;
            return self.send(at);
        }
        if !self.opened && start.is_empty() {
            return String::new();
        }
        // The longest end that may begin a tag stays.
        let kept = (1..OPEN_TAG.len().min(self.held.len() + 1))
            .rev()
            .find(|&n| {
                self.held.is_char_boundary(self.held.len() - n)
                    && OPEN_TAG.starts_with(&self.held[self.held.len() - n..])
            })
            .unwrap_or(0);
        self.send(self.held.len() - kept)
    }

    /// The first `len` bytes held, sent.
    fn send(&mut self, len: usize) -> String {
        let sent: String = self.held.drain(..len).collect();
        self.opened |= !sent.trim().is_empty();
        sent
    }

    /// Once the answer has ended: what is held, read for calls (`Err`: it is text, to send).
    pub(super) fn finish(&mut self, tools: &ToolUse) -> Result<Vec<(String, String)>, String> {
        let held = std::mem::take(&mut self.held);
        if !self.capturing {
            return Err(held);
        }
        match tools.read_calls(&held) {
            // Text before a call was sent as it came; none is held with one (and a
            // constrained answer has none).
            Some(calls) if calls.text.is_none() => Ok(calls.calls),
            _ => Err(held),
        }
    }
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

    #[test]
    fn a_stream_holds_what_may_begin_a_call_and_sends_the_rest_as_it_comes() {
        let auto = tools(json!("auto"));
        let streamed = |pieces: &[&str]| {
            let mut hold = CallHold::new(&auto);
            let sent: Vec<String> = pieces.iter().map(|p| hold.push(p)).collect();
            (sent, hold.finish(&auto))
        };
        let (sent, end) = streamed(&[
            "It is",
            " <tool",
            "_call>{\"name\": \"get_time\"}",
            "</tool_call>",
        ]);
        assert_eq!(sent, ["It is", " ", "", ""]);
        assert_eq!(end, Ok(vec![call("get_time", "{}")]));
        let (sent, end) = streamed(&["\n", "{\"name\": \"get_time\"}"]);
        assert_eq!(sent, ["", ""]);
        assert_eq!(end, Ok(vec![call("get_time", "{}")]));
        // Held text that is no call goes out at the end.
        let (sent, end) = streamed(&["It is <tool", " sunny"]);
        assert_eq!(sent, ["It is ", "<tool sunny"]);
        assert_eq!(end, Err(String::new()));
        let (sent, end) = streamed(&["{not a call", "}"]);
        assert_eq!(sent, ["", ""]);
        assert_eq!(end, Err("{not a call}".into()));
    }
}
