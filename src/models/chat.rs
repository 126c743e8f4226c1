//! Chat templates: a generator's conversation format, rendered as transformers'
//! `apply_chat_template` renders it.
//!
//! # Invariants
//!
//! * **Where templates come from.** Only the model folder (`chat_template.jinja`, else
//!   `tokenizer_config.json`'s `chat_template`: a string, or the named list some models ship,
//!   whose `default` entry is taken) or the operator's config. Never a request: a template is
//!   code, and one sent by a client was a code-execution hole elsewhere.
//! * **Rendering.** jinja with `trim_blocks` and `lstrip_blocks`, loop controls, the Python
//!   string methods templates call (`strip`, `startswith`, `split`, …), `raise_exception`,
//!   `strftime_now`, and `tojson` as Python's `json.dumps` writes it; `bos_token`,
//!   `eos_token`, `messages`, `add_generation_prompt` and (given any) `tools` in the context.
//!   A single trailing newline of the template is dropped, as jinja2 does.
//! * **Tools.** A template that reads `tools` gets them as transformers passes them (OpenAI's
//!   `{"type": "function", "function": {..}}` objects) and writes its own tool prompt. One
//!   that does not (SmolLM2's, GPT-2's made-up ones) would hide them from the model, so the
//!   conversation gets a system text listing them and asking for Hermes-style
//!   `<tool_call>{"name": .., "arguments": {..}}</tool_call>` answers (appended to a leading
//!   system message, or one of its own first), as TGI adds a tool prompt.
//! * **Bounded.** Rendering runs on a fuel budget: a template that loops without end fails
//!   with an error instead of holding a thread.

use std::path::Path;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

use super::error::ModelError;

/// Instructions a render may execute: thousands of times what a long conversation takes
/// with the templates models ship.
const FUEL: u64 = 5_000_000;

/// One message of a conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Empty for an assistant's message that only calls tools (the templates test
    /// `message.content` for truth, which an empty text and OpenAI's null both fail).
    pub content: String,
    /// Who wrote it, as OpenAI's `name` (a participant of several): templates that know the
    /// field show it (`message.name`), the others leave it out. Absent from the template's
    /// message unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An assistant's calls, `[{"id", "type": "function", "function": {"name", "arguments"}}]`
    /// with `arguments` an object (not OpenAI's JSON text), as the templates write them with
    /// `tojson` and as vLLM hands them over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<serde_json::Value>>,
    /// A `tool` message's answer to this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            ..Self::default()
        }
    }
}

/// A conversation to render: its messages and the tools its answer may call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub messages: Vec<ChatMessage>,
    /// OpenAI's `tools` as sent (`{"type": "function", "function": {..}}`); empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<serde_json::Value>,
}

impl From<Vec<ChatMessage>> for Conversation {
    fn from(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            tools: Vec::new(),
        }
    }
}

/// Where a model's template was found (shown in `/v1/models`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateSource {
    /// `chat_template.jinja` in the model folder.
    JinjaFile,
    /// `tokenizer_config.json`'s `chat_template`.
    TokenizerConfig,
    /// A GGUF file's `tokenizer.chat_template`.
    Gguf,
    /// `config.toml`'s `chat_template` or `chat_template_file` (which win over the model's).
    Config,
}

impl TemplateSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JinjaFile => "chat_template.jinja",
            Self::TokenizerConfig => "tokenizer_config.json",
            Self::Gguf => "gguf",
            Self::Config => "config",
        }
    }
}

/// A compiled chat template with the special tokens it may write.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: TemplateSource,
    /// The end-of-turn token the template writes (`eos_token`), when the tokenizer config
    /// names one: generation stops there too.
    eos_token: Option<String>,
    bos_token: Option<String>,
    /// The template reads `tools` (writes its own tool prompt).
    reads_tools: bool,
    /// The template writes an assistant's `tool_calls` (else they go into its text).
    writes_calls: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `template` (from `path`, for errors), with the special tokens of
    /// `tokenizer_config` (`bos_token`, `eos_token`: strings or added-token objects).
    pub fn new(
        template: String,
        source: TemplateSource,
        tokenizer_config: Option<&serde_json::Value>,
        path: &Path,
    ) -> Result<Self, ModelError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        let reads_tools = template.contains("tools");
        let writes_calls = template.contains("tool_calls");
        env.add_template_owned("chat", template)
            .map_err(|e| ModelError::InvalidConfig {
                path: path.to_path_buf(),
                reason: format!("the chat template does not compile: {e:#}"),
            })?;
        let token = |key: &str| -> Option<String> {
            let value = tokenizer_config?.get(key)?;
            value
                .as_str()
                .or_else(|| value.get("content")?.as_str())
                .map(str::to_string)
        };
        Ok(Self {
            env,
            source,
            eos_token: token("eos_token"),
            bos_token: token("bos_token"),
            reads_tools,
            writes_calls,
        })
    }

    /// The template of the model folder `dir`, if it has one: `chat_template.jinja`, else
    /// `tokenizer_config.json`'s `chat_template`.
    pub fn from_folder(
        dir: &Path,
        tokenizer_config: Option<&serde_json::Value>,
    ) -> Result<Option<Self>, ModelError> {
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            let text = std::fs::read_to_string(&jinja).map_err(|e| ModelError::io(&jinja, e))?;
            return Self::new(text, TemplateSource::JinjaFile, tokenizer_config, &jinja).map(Some);
        }
        let path = dir.join("tokenizer_config.json");
        let Some(template) = tokenizer_config.and_then(|c| c.get("chat_template")) else {
            return Ok(None);
        };
        let text = match template {
            serde_json::Value::String(text) => text.clone(),
            // `[{"name": "default", "template": ..}, {"name": "tool_use", ..}]`.
            serde_json::Value::Array(named) => named
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str())
                .ok_or_else(|| ModelError::InvalidConfig {
                    path: path.clone(),
                    reason: "chat_template is a list without a \"default\" template".into(),
                })?
                .to_string(),
            _ => {
                return Err(ModelError::InvalidConfig {
                    path,
                    reason: "chat_template must be a string or a list of named templates".into(),
                })
            }
        };
        Self::new(
            text,
            TemplateSource::TokenizerConfig,
            tokenizer_config,
            &path,
        )
        .map(Some)
    }

    pub fn source(&self) -> TemplateSource {
        self.source
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The prompt for `messages`; with `add_generation_prompt`, ending where the assistant's
    /// answer starts. `kwargs` are extra template variables (e.g. Qwen3's `enable_thinking`).
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, ModelError> {
        let mut context = kwargs.clone();
        context.insert(
            "messages".into(),
            serde_json::to_value(messages).expect("serializable"),
        );
        context.insert("add_generation_prompt".into(), add_generation_prompt.into());
        context.insert("bos_token".into(), self.bos_token.clone().into());
        context.insert("eos_token".into(), self.eos_token.clone().into());
        let template = self
            .env
            .get_template("chat")
            .expect("added at construction");
        template
            .render(Value::from_serialize(&context))
            .map_err(|e| {
                ModelError::InvalidInput(format!("the chat template failed: {}", describe(&e)))
            })
    }

    /// The prompt for `conversation`, ending where the assistant's answer starts.
    pub fn render_conversation(&self, conversation: &Conversation) -> Result<String, ModelError> {
        let mut kwargs = serde_json::Map::new();
        let mut messages = conversation.messages.clone();
        if !self.writes_calls {
            // The calls go into the text, as the tool prompt asks the model to write them.
            for message in messages.iter_mut().filter(|m| m.tool_calls.is_some()) {
                for call in message.tool_calls.take().unwrap_or_default() {
                    let mut block = String::from("<tool_call>\n");
                    write_python_json(&call["function"], None, 0, &mut block);
                    block.push_str("\n</tool_call>");
                    if !message.content.is_empty() {
                        message.content.push('\n');
                    }
                    message.content.push_str(&block);
                }
            }
        }
        if !conversation.tools.is_empty() && self.reads_tools {
            kwargs.insert("tools".into(), conversation.tools.clone().into());
        } else if !conversation.tools.is_empty() {
            let prompt = tool_prompt(&conversation.tools);
            match messages.first_mut() {
                Some(first) if first.role == "system" => {
                    first.content = format!("{}\n\n{prompt}", first.content);
                }
                _ => messages.insert(0, ChatMessage::new("system", prompt)),
            }
        }
        self.render(&messages, true, &kwargs)
    }
}

/// What a template that does not read `tools` is given instead: the functions, one JSON
/// object a line (as Qwen2.5's template lists them), and the Hermes call format.
fn tool_prompt(tools: &[serde_json::Value]) -> String {
    let mut prompt = String::from(
        "You may call one or more functions to answer. The functions, one JSON object a line:\n",
    );
    for tool in tools {
        write_python_json(tool, None, 0, &mut prompt);
        prompt.push('\n');
    }
    prompt.push_str(
        "To call a function, answer with a JSON object of its name and arguments inside \
         <tool_call></tool_call> tags, one a call:\n<tool_call>\n{\"name\": <function name>, \
         \"arguments\": <arguments as a JSON object>}\n</tool_call>",
    );
    prompt
}

/// The error's own words (a `raise_exception` message as the template wrote it).
fn describe(error: &Error) -> String {
    match error.kind() {
        ErrorKind::OutOfFuel => "it ran past its time bound (a loop without end?)".into(),
        _ => error
            .detail()
            .map_or_else(|| error.to_string(), str::to_string),
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// Today's date (UTC) in a C `strftime` format, as transformers' `strftime_now`.
fn strftime_now(format: String) -> Result<Value, Error> {
    let format = std::ffi::CString::new(format)
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "a format with a NUL byte"))?;
    let mut buffer = [0u8; 256];
    // SAFETY: `time` and `gmtime_r` write into the locals given; `strftime` writes at most
    // `buffer.len()` bytes into `buffer` and returns how many.
    let written = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::gmtime_r(&now, &mut tm);
        libc::strftime(
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            format.as_ptr(),
            &tm,
        )
    };
    Ok(Value::from(
        String::from_utf8_lossy(&buffer[..written]).into_owned(),
    ))
}

/// `json.dumps(value, ensure_ascii=False, indent=indent)`, as transformers' `tojson`.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = String::new();
    write_python_json(&json, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

/// Python's `json.dumps` layout: `", "` and `": "` between items on one line; with an
/// indent, one item a line and `","` at line ends. Strings and numbers as serde_json writes
/// them (the same escapes as Python's with `ensure_ascii=False`).
fn write_python_json(
    value: &serde_json::Value,
    indent: Option<usize>,
    depth: usize,
    out: &mut String,
) {
    let (open, close, items): (char, char, Vec<(Option<&String>, &serde_json::Value)>) = match value
    {
        serde_json::Value::Array(items) => ('[', ']', items.iter().map(|v| (None, v)).collect()),
        serde_json::Value::Object(map) => {
            ('{', '}', map.iter().map(|(k, v)| (Some(k), v)).collect())
        }
        scalar => {
            out.push_str(&scalar.to_string());
            return;
        }
    };
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return;
    }
    for (i, (key, item)) in items.iter().enumerate() {
        match indent {
            Some(width) => {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                out.push_str(&" ".repeat(width * (depth + 1)));
            }
            None if i > 0 => out.push_str(", "),
            None => {}
        }
        if let Some(key) = key {
            out.push_str(&serde_json::Value::from(key.as_str()).to_string());
            out.push_str(": ");
        }
        write_python_json(item, indent, depth + 1, out);
    }
    if let Some(width) = indent {
        out.push('\n');
        out.push_str(&" ".repeat(width * depth));
    }
    out.push(close);
}
