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
//!   `eos_token`, `messages` and `add_generation_prompt` in the context. A single trailing
//!   newline of the template is dropped, as jinja2 does.
//! * **Bounded.** Rendering runs on a fuel budget: a template that loops without end fails
//!   with an error instead of holding a thread.

use std::path::Path;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde::Serialize;

use super::error::ModelError;

/// Instructions a render may execute: thousands of times what a long conversation takes
/// with the templates models ship.
const FUEL: u64 = 5_000_000;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
    /// Who wrote it, as OpenAI's `name` (a participant of several): templates that know the
    /// field show it (`message.name`), the others leave it out. Absent from the template's
    /// message unless given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
