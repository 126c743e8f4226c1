//! Text generation with a causal LM of any architecture: prompt text in, continuation out.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::causal_lm::CausalLm;
use super::chat::{ChatTemplate, Conversation};
use super::error::ModelError;
use super::json_mode::{JsonMode, JsonSchema, Vocabulary};
use super::logprobs::{
    Distribution, PromptLogprobs, StepLogprobs, TokenLogprob, SCORED_POSITIONS_AT_ONCE,
};
use super::sampling::{Sampler, SamplingParams};
use super::tokenizer::TextTokenizer;

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// It reached its token budget (or the model's context).
    Length,
    /// The model produced its end-of-sequence token.
    Eos,
    /// The continuation produced one of the request's stop strings.
    Stop,
}

/// What a generation continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// A text, encoded with the tokenizer's special tokens (Llama's BOS, none for GPT-2);
    /// the generation's text is prompt plus continuation, as HF pipelines return it.
    Text(String),
    /// A conversation (and the tools it offers), rendered with the model's chat template,
    /// which writes every special token itself; the generation's text is the answer alone.
    Chat(Conversation),
    /// Token ids as the client's own tokenizer made them (an evaluation harness's), taken
    /// as they are; the generation's text is their decoded text plus continuation.
    Tokens(Vec<u32>),
}

/// What shape the continuation's text must have (OpenAI's `response_format`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(try_from = "FormatObject", into = "FormatObject")]
pub enum ResponseFormat {
    /// Any text.
    #[default]
    Text,
    /// A JSON object: each token keeps the text a prefix of one, and the generation ends
    /// only once it is whole (or its budget runs out).
    JsonObject,
    /// A value of a JSON Schema (OpenAI's structured outputs), likewise.
    JsonSchema(Arc<JsonSchema>),
}

/// `ResponseFormat` as JSON: `{"type": "text" | "json_object"}`, or `{"type":
/// "json_schema", "json_schema": {"name", "schema", ...}}`, no other field (serde's
/// internally tagged enums would take any).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FormatObject {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    json_schema: Option<serde_json::Value>,
}

impl TryFrom<FormatObject> for ResponseFormat {
    type Error = String;

    fn try_from(object: FormatObject) -> Result<Self, String> {
        match (object.kind.as_str(), object.json_schema) {
            ("text", None) => Ok(ResponseFormat::Text),
            ("json_object", None) => Ok(ResponseFormat::JsonObject),
            ("json_schema", Some(spec)) => JsonSchema::from_openai(&spec)
                .map(|schema| ResponseFormat::JsonSchema(Arc::new(schema)))
                .map_err(|e| format!("response_format.json_schema: {e}")),
            ("json_schema", None) => Err("response_format: json_schema needs its json_schema".into()),
            (_, Some(_)) => Err("response_format: json_schema only with its type".into()),
            (other, None) => Err(format!(
                "response_format: type {other:?} is not supported (\"text\", \"json_object\" or \"json_schema\")"
            )),
        }
    }
}

impl From<ResponseFormat> for FormatObject {
    fn from(format: ResponseFormat) -> Self {
        let (kind, json_schema) = match format {
            ResponseFormat::Text => ("text", None),
            ResponseFormat::JsonObject => ("json_object", None),
            ResponseFormat::JsonSchema(schema) => ("json_schema", Some(schema.source().clone())),
        };
        FormatObject {
            kind: kind.into(),
            json_schema,
        }
    }
}

/// How much to generate, and how to pick tokens.
#[derive(Debug, Clone)]
pub struct GenerationParams {
    pub max_new_tokens: usize,
    /// A cap on prompt plus continuation, in tokens, as transformers' `max_length`.
    pub max_length: Option<usize>,
    /// Prompts longer than this are refused before any model work.
    pub max_prompt_tokens: Option<usize>,
    /// EOS is suppressed until this many tokens exist, as transformers' `min_new_tokens`.
    pub min_new_tokens: usize,
    /// Greedy by default.
    pub sampling: SamplingParams,
    /// Generation ends once the continuation's text contains one of these; the token that
    /// completed it is the last one kept.
    pub stop: Vec<String>,
    /// Decode with the KV cache (the fast path) or recompute the whole sequence each step
    /// (the reference the cache is checked against).
    pub use_cache: bool,
    /// Report each new token's log-probability with this many most likely alternatives
    /// (`None`: report none).
    pub logprobs: Option<usize>,
    /// With `logprobs`, report the prompt's tokens' too (OpenAI's `echo`).
    pub prompt_logprobs: bool,
    pub response_format: ResponseFormat,
}

impl GenerationParams {
    /// How many alternatives the prompt's scores come with, when it is to be scored.
    pub fn prompt_scoring(&self) -> Option<usize> {
        self.logprobs.filter(|_| self.prompt_logprobs)
    }
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 16,
            max_length: None,
            max_prompt_tokens: None,
            min_new_tokens: 0,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            use_cache: true,
            logprobs: None,
            prompt_logprobs: false,
            response_format: ResponseFormat::Text,
        }
    }
}

/// A finished generation, shaped as `infergraph generate --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub new_token_ids: Vec<u32>,
    /// Prompt plus continuation, as Hugging Face's text-generation pipeline returns it (the
    /// answer alone for a conversation).
    pub text: String,
    pub new_text: String,
    pub finish_reason: FinishReason,
    /// Each new token's log-probability, when the parameters asked for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// The prompt's, when the parameters asked for them too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_logprobs: Option<PromptLogprobs>,
}

/// A causal LM with its tokenizer and its end-of-sequence ids.
#[derive(Debug)]
pub struct Generator {
    dir: PathBuf,
    model: Box<dyn CausalLm>,
    tokenizer: TextTokenizer,
    /// Generation stops at any of these: `config.json`'s and `generation_config.json`'s
    /// `eos_token_id`s together (instruct models list their end-of-turn token in the latter),
    /// and the end-of-turn token its chat template writes.
    eos: Vec<u32>,
    /// How a conversation becomes a prompt for it; `None`: it cannot chat.
    chat_template: Option<ChatTemplate>,
    /// Its tokens as bytes, for JSON mode: made by the first request that asks for it.
    vocabulary: OnceLock<Arc<Vocabulary>>,
}

impl Generator {
    /// A generator stopping at `eos` and at `chat_template`'s end-of-turn token.
    pub fn new(
        dir: PathBuf,
        model: Box<dyn CausalLm>,
        tokenizer: TextTokenizer,
        eos: Vec<u32>,
        chat_template: Option<ChatTemplate>,
    ) -> Self {
        let mut generator = Self {
            dir,
            model,
            tokenizer,
            eos,
            chat_template: None,
            vocabulary: OnceLock::new(),
        };
        if let Some(template) = chat_template {
            generator.set_chat_template(template);
        }
        generator
    }

    /// Chats through `template` (in place of the model's own, when `config.toml` names one),
    /// stopping at its end-of-turn token too: a turn ends there even where the config's eos
    /// list leaves it out (Qwen2.5 base lists <|endoftext|> only; the template writes
    /// <|im_end|>).
    pub fn set_chat_template(&mut self, template: ChatTemplate) {
        let end_of_turn = template
            .eos_token()
            .and_then(|token| self.tokenizer.token_id(token));
        if let Some(id) = end_of_turn.filter(|id| !self.eos.contains(id)) {
            self.eos.push(id);
        }
        self.chat_template = Some(template);
    }

    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn model(&self) -> &dyn CausalLm {
        self.model.as_ref()
    }

    /// The ids that end a generation.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn generate(
        &self,
        prompt: &str,
        params: &GenerationParams,
    ) -> Result<Generation, ModelError> {
        let prompt_ids = self.tokenizer.encode(prompt, None)?.ids;
        let mut sequence = self.sequence(prompt_ids, params)?;
        if let Some(top) = params.prompt_scoring() {
            sequence.set_prompt_logprobs(self.score_prompt(sequence.prompt_ids(), top)?);
        }
        let (sequence, reason) = self.run_alone(sequence, params.use_cache)?;
        sequence.into_generation(&self.tokenizer, reason)
    }

    /// The prompt's token ids. A conversation is rendered with the chat template and
    /// encoded without the tokenizer's special tokens, which the template already wrote (a
    /// second BOS would change the answer). Rendering runs on the caller's thread, bounded
    /// by the template's fuel; templates come only from the model or the operator.
    pub fn encode_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>, ModelError> {
        match prompt {
            Prompt::Text(text) => Ok(self.tokenizer.encode(text, None)?.ids),
            Prompt::Tokens(ids) => Ok(ids.clone()),
            Prompt::Chat(conversation) => {
                let template = self.chat_template.as_ref().ok_or_else(|| {
                    ModelError::InvalidInput("cannot chat: the model has no chat template".into())
                })?;
                let rendered = template.render_conversation(conversation)?;
                self.tokenizer.encode_rendered(&rendered)
            }
        }
    }

    /// Continues `prompt_ids`, returning the new tokens.
    pub fn generate_ids(
        &self,
        prompt_ids: &[u32],
        params: &GenerationParams,
    ) -> Result<(Vec<u32>, FinishReason), ModelError> {
        let (sequence, reason) = self.run_alone(
            self.sequence(prompt_ids.to_vec(), params)?,
            params.use_cache,
        )?;
        Ok((sequence.new_tokens().to_vec(), reason))
    }

    /// Runs one sequence to its end on its own (the batching engine runs many at once).
    fn run_alone(
        &self,
        mut sequence: Sequence,
        use_cache: bool,
    ) -> Result<(Sequence, FinishReason), ModelError> {
        let mut cache = None;
        loop {
            if let Some(reason) = sequence.finished(&self.tokenizer)? {
                return Ok((sequence, reason));
            }
            let logits = match cache.as_mut() {
                None if use_cache => {
                    let (logits, fresh) = self.model.prefill(&[sequence.tokens.clone()])?;
                    cache = Some(fresh);
                    logits
                }
                Some(cache) => self.model.decode(&[sequence.last_token()], cache)?,
                None => {
                    let hidden = self.model.hidden_all(&sequence.tokens)?;
                    let [t, c] = hidden.dims();
                    self.model.lm_head().forward(hidden.slice([t - 1..t, 0..c]))
                }
            };
            sequence.choose(&mut row_values(logits));
        }
    }

    /// Scores each of `ids`' tokens after the first on the tokens before it, with `top`
    /// alternatives: a forward over the whole prompt apart from the prefill, whose cache
    /// keeps the last position's logits alone. The LM head runs on `SCORED_POSITIONS_AT_ONCE`
    /// positions at a time, so a prompt as long as the context holds that many positions'
    /// logits, not all of them.
    pub fn score_prompt(&self, ids: &[u32], top: usize) -> Result<PromptLogprobs, ModelError> {
        if ids.is_empty() {
            return Err(ModelError::InvalidInput("the prompt has no tokens".into()));
        }
        let hidden = self.model.hidden_all(ids)?;
        let [_, width] = hidden.dims();
        // The last position scores nothing of the prompt.
        let scored = ids.len() - 1;
        let mut tokens = Vec::with_capacity(scored);
        for start in (0..scored).step_by(SCORED_POSITIONS_AT_ONCE) {
            let end = (start + SCORED_POSITIONS_AT_ONCE).min(scored);
            let logits = self
                .model
                .lm_head()
                .forward(hidden.clone().slice([start..end, 0..width]));
            let [_, vocab] = logits.dims();
            let values = logits
                .into_data()
                .try_into_vec::<f32>()
                .expect("logits are f32");
            for (position, before) in (start..end).zip(values.chunks_exact(vocab)) {
                let step = Distribution::of(before).step(ids[position + 1], top);
                tokens.push(step.decoded(&self.tokenizer)?);
            }
        }
        Ok(PromptLogprobs {
            first_token_id: ids[0],
            first_token: self.tokenizer.decode(&ids[..1])?,
            tokens,
        })
    }

    /// Checks `prompt_ids` against the model's context and the request's limits, and sets
    /// the sequence up to be continued.
    pub fn sequence(
        &self,
        prompt_ids: Vec<u32>,
        params: &GenerationParams,
    ) -> Result<Sequence, ModelError> {
        let (context, key) = (
            self.model.description().context_length,
            self.model.description().context_key,
        );
        let len = prompt_ids.len();
        if len == 0 {
            return Err(ModelError::InvalidInput("the prompt has no tokens".into()));
        }
        if len >= context {
            return Err(ModelError::InvalidInput(format!(
                "the prompt is {len} tokens long, which leaves no room under the model's {key} ({context})"
            )));
        }
        // Checked here, for this request alone: a batch's forward refuses the whole batch. A
        // text's id outside the vocabulary is the checkpoint's fault (its tokenizer does not
        // match it); a client's token ids are checked before they come here.
        let vocab_size = self.model.description().vocab_size;
        if let Some(&id) = prompt_ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(ModelError::TokenOutOfVocabulary { id, vocab_size });
        }
        if let Some(limit) = params.max_prompt_tokens.filter(|&l| len > l) {
            return Err(ModelError::InvalidInput(format!(
                "the prompt is {len} tokens long; the limit is {limit}"
            )));
        }
        let mut budget = params.max_new_tokens.min(context - len);
        if let Some(max_length) = params.max_length {
            // As transformers: a prompt that already fills `max_length` still gets one token
            // (transformers warns; its length check runs after each new token).
            budget = budget.min(max_length.saturating_sub(len).max(1));
        }
        Ok(Sequence {
            tokens: prompt_ids,
            prompt_len: len,
            budget,
            eos: self.eos.clone(),
            min_new_tokens: params.min_new_tokens,
            stop: params.stop.clone(),
            sampler: Sampler::new(params.sampling.clone()),
            text: IncrementalText::after_prompt(len),
            echo: true,
            top_logprobs: params.logprobs,
            logprobs: Vec::new(),
            prompt_logprobs: None,
            json: {
                let vocabulary = || {
                    self.vocabulary
                        .get_or_init(|| Arc::new(Vocabulary::new(&self.tokenizer, vocab_size)))
                        .clone()
                };
                match &params.response_format {
                    ResponseFormat::Text => None,
                    ResponseFormat::JsonObject => Some(JsonMode::object(vocabulary())),
                    ResponseFormat::JsonSchema(schema) => {
                        Some(JsonMode::schema(vocabulary(), schema.clone()))
                    }
                }
            },
        })
    }
}

/// One sequence being generated: its tokens so far, what it may still add, and how it
/// picks the next one. The same whether it runs alone or in a batch.
#[derive(Debug, Clone)]
pub struct Sequence {
    /// Prompt then continuation.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// How many tokens it may add.
    budget: usize,
    /// Any of these ends the sequence.
    eos: Vec<u32>,
    min_new_tokens: usize,
    stop: Vec<String>,
    sampler: Sampler,
    /// The continuation decoded so far, for stop strings and streaming.
    text: IncrementalText,
    /// Whether the finished text starts with the prompt's (not for a conversation, whose
    /// rendered prompt is the template's markup, not the caller's words).
    echo: bool,
    /// How many alternatives each new token's log-probability comes with; `None`: no
    /// log-probabilities are kept.
    top_logprobs: Option<usize>,
    /// One per new token, while `top_logprobs` is set.
    logprobs: Vec<StepLogprobs>,
    /// The prompt's, once scored ([`Generator::score_prompt`]).
    prompt_logprobs: Option<PromptLogprobs>,
    /// Where its text stands in JSON mode; `None`: any text.
    json: Option<JsonMode>,
}

impl Sequence {
    /// Set up to answer `prompt`: a conversation's text is the answer alone.
    pub fn answering(mut self, prompt: &Prompt) -> Self {
        self.echo = !matches!(prompt, Prompt::Chat(_));
        self
    }

    /// Prompt then continuation.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn prompt_ids(&self) -> &[u32] {
        &self.tokens[..self.prompt_len]
    }

    pub fn new_tokens(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    /// The token the next decode step feeds.
    pub fn last_token(&self) -> u32 {
        *self.tokens.last().expect("a sequence is never empty")
    }

    /// Picks the next token from this sequence's row of logits and appends it.
    pub fn choose(&mut self, logits: &mut [f32]) -> u32 {
        let banned: &[u32] = if self.new_tokens().len() < self.min_new_tokens {
            &self.eos
        } else {
            &[]
        };
        // The sampler rewrites the row (penalties, temperature), and the log-probabilities
        // are the model's own.
        let raw = self.top_logprobs.map(|top| (top, logits.to_vec()));
        if let Some(json) = &self.json {
            json.restrict(logits, &self.eos, !banned.is_empty());
        }
        let next = self.sampler.next_token(logits, &self.tokens, banned);
        if let Some(json) = &mut self.json {
            json.advance(next);
        }
        if let Some((top, raw)) = raw {
            self.logprobs.push(Distribution::of(&raw).step(next, top));
        }
        self.tokens.push(next);
        next
    }

    /// Keeps the prompt's log-probabilities for the finished generation.
    pub fn set_prompt_logprobs(&mut self, scored: PromptLogprobs) {
        self.prompt_logprobs = Some(scored);
    }

    /// New token `index`'s log-probability, if the parameters asked for them.
    pub fn logprob(
        &self,
        index: usize,
        tokenizer: &TextTokenizer,
    ) -> Result<Option<TokenLogprob>, ModelError> {
        self.logprobs
            .get(index)
            .map(|step| step.decoded(tokenizer))
            .transpose()
    }

    /// Brings the decoded text up to the newest token, then says why the sequence is done, if
    /// it is: EOS, a stop string, or its budget.
    pub fn finished(
        &mut self,
        tokenizer: &TextTokenizer,
    ) -> Result<Option<FinishReason>, ModelError> {
        self.text.update(&self.tokens, tokenizer)?;
        let new = &self.tokens[self.prompt_len..];
        if new.last().is_some_and(|id| self.eos.contains(id)) {
            return Ok(Some(FinishReason::Eos));
        }
        let text = &self.text.text;
        if !new.is_empty() && self.stop.iter().any(|s| text.contains(s.as_str())) {
            return Ok(Some(FinishReason::Stop));
        }
        Ok((new.len() >= self.budget).then_some(FinishReason::Length))
    }

    /// The continuation's text up to the last token `finished` saw, as far as it decodes to
    /// whole characters (a character split over tokens waits for its last token).
    pub fn text_so_far(&self) -> &str {
        &self.text.text
    }

    /// The whole continuation's text, a trailing partial character included (as U+FFFD):
    /// what follows the prompt's text in the whole sequence's. Decoded after the prompt, not
    /// alone, since SentencePiece decoders drop a text's leading space ("▁Hello" alone is
    /// "Hello", after a prompt " Hello"). A character that the prompt's (token-id) prompt
    /// ends inside of and the continuation completes is the continuation's.
    pub fn continuation_text(&self, tokenizer: &TextTokenizer) -> Result<String, ModelError> {
        let whole = tokenizer.decode(&self.tokens)?;
        let prompt = tokenizer.decode(self.prompt_ids())?;
        match after_prefix(&whole, &prompt) {
            Some(continuation) => Ok(continuation.to_string()),
            None => tokenizer.decode(self.new_tokens()),
        }
    }

    /// The finished result, with its text decoded.
    pub fn into_generation(
        self,
        tokenizer: &TextTokenizer,
        finish_reason: FinishReason,
    ) -> Result<Generation, ModelError> {
        let new_text = self.continuation_text(tokenizer)?;
        let logprobs = match self.top_logprobs {
            Some(_) => Some(
                self.logprobs
                    .iter()
                    .map(|step| step.decoded(tokenizer))
                    .collect::<Result<_, _>>()?,
            ),
            None => None,
        };
        Ok(Generation {
            text: if self.echo {
                tokenizer.decode(&self.tokens)?
            } else {
                new_text.clone()
            },
            new_text,
            prompt_ids: self.prompt_ids().to_vec(),
            new_token_ids: self.new_tokens().to_vec(),
            finish_reason,
            logprobs,
            prompt_logprobs: self.prompt_logprobs,
        })
    }
}

/// `text` after `prefix`, or after `prefix` less a partial character at its end (U+FFFD)
/// that `text` completes: "Helloé" after "Hello\u{FFFD}" is "é".
fn after_prefix<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.strip_prefix(prefix)
        .or_else(|| text.strip_prefix(prefix.trim_end_matches('\u{FFFD}')))
}

/// A continuation's text, decoded token by token. Each new token costs a decode of the last
/// few tokens, not of the whole continuation (which made streaming O(n²) in tokens).
#[derive(Debug, Clone, Default)]
struct IncrementalText {
    /// The text of the tokens before `read`: whole characters only.
    text: String,
    /// Tokens `prefix..read` are decoded again with the newer ones, as context, since some
    /// decoders render a token differently at the start of a text.
    prefix: usize,
    /// Tokens from `read` on wait until they decode to whole characters.
    read: usize,
}

impl IncrementalText {
    /// Prompt tokens decoded before the first new one, as its context.
    const PROMPT_CONTEXT: usize = 4;

    /// Text that starts after the first `prompt_len` tokens, the last few of them its context.
    fn after_prompt(prompt_len: usize) -> Self {
        Self {
            text: String::new(),
            prefix: prompt_len.saturating_sub(Self::PROMPT_CONTEXT),
            read: prompt_len,
        }
    }

    fn update(&mut self, tokens: &[u32], tokenizer: &TextTokenizer) -> Result<(), ModelError> {
        if tokens.len() == self.read {
            return Ok(());
        }
        let context = tokenizer.decode(&tokens[self.prefix..self.read])?;
        let extended = tokenizer.decode(&tokens[self.prefix..])?;
        // U+FFFD at the end: the newest tokens end inside a character.
        if extended.ends_with('\u{FFFD}') {
            return Ok(());
        }
        if let Some(added) = after_prefix(&extended, &context) {
            self.text.push_str(added);
            self.prefix = self.read;
            self.read = tokens.len();
        }
        Ok(())
    }
}

/// The single row of a `[1, vocab]` logits tensor, on the host.
fn row_values(logits: Tensor<2>) -> Vec<f32> {
    logits
        .into_data()
        .try_into_vec::<f32>()
        .expect("logits are f32")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What JSON mode walks is what a decode writes: a text's tokens' bytes, joined, are the
    /// text (after SentencePiece's leading space), and special tokens have none.
    #[test]
    fn each_tokens_bytes_are_what_it_adds_to_a_decoded_text() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (tokenizer, prefix) in [
            ("model-weights/gpt2/tokenizer.json", ""),
            ("tests/fixtures/models/llama-tiny/tokenizer.json", ""),
            ("tests/fixtures/models/mistral-tiny/tokenizer.json", " "),
        ] {
            let tokenizer = TextTokenizer::from_file(&root.join(tokenizer)).unwrap();
            let text = "{\"Zürich\": [\"🦀\", \"東京\"], \"n\": -1.5e3}\n\tñandú!";
            let ids = tokenizer.encode(text, None).unwrap().ids;
            let vocab_size = *ids.iter().max().unwrap() as usize + 1;
            let bytes = tokenizer.token_bytes(vocab_size);
            let joined: Vec<u8> = ids
                .iter()
                .filter_map(|&id| bytes[id as usize].clone())
                .flatten()
                .collect();
            assert_eq!(
                String::from_utf8(joined).unwrap(),
                format!("{prefix}{text}")
            );
        }
        let gpt2 = TextTokenizer::from_file(&root.join("model-weights/gpt2/tokenizer.json"));
        assert_eq!(
            gpt2.unwrap().token_bytes(50257)[50256],
            None,
            "<|endoftext|>"
        );
    }

    #[test]
    fn a_response_format_is_text_a_json_object_or_a_json_schema_and_nothing_else() {
        let read = |json: &str| serde_json::from_str::<ResponseFormat>(json);
        assert!(matches!(
            read(r#"{"type": "text"}"#),
            Ok(ResponseFormat::Text)
        ));
        assert!(matches!(
            read(r#"{"type": "json_object"}"#),
            Ok(ResponseFormat::JsonObject)
        ));
        let schema = r#"{"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}"#;
        assert!(matches!(read(schema), Ok(ResponseFormat::JsonSchema(_))));
        assert!(read(r#"{"type": "text", "json_schema": {}}"#).is_err());
        assert!(read(r#"{"type": "json_schema"}"#).is_err());
        assert!(read(r#"{"type": "json_object", "schema": {}}"#).is_err());
        assert!(read(r#"{}"#).is_err());
    }

    /// GPT-2's byte-level BPE, Llama 3's, and Llama 2's SentencePiece with byte fallback
    /// (where an emoji or a CJK character is several `<0x..>` tokens).
    #[test]
    fn text_decoded_token_by_token_holds_back_split_characters_and_ends_as_the_whole_decode() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for tokenizer in [
            "model-weights/gpt2/tokenizer.json",
            "tests/fixtures/models/llama-tiny/tokenizer.json",
            "tests/fixtures/models/mistral-tiny/tokenizer.json",
        ] {
            let tokenizer = TextTokenizer::from_file(&root.join(tokenizer)).unwrap();
            let text = "Zürich 🦀 and 東京, then plain words: ñandú!";
            let ids = tokenizer.encode(text, None).unwrap().ids;
            let mut incremental = IncrementalText::default();
            let mut held_back = 0;
            for n in 1..=ids.len() {
                incremental.update(&ids[..n], &tokenizer).unwrap();
                assert!(
                    text.starts_with(&incremental.text),
                    "{tokenizer:?} after {n} tokens"
                );
                if tokenizer.decode(&ids[..n]).unwrap().ends_with('\u{FFFD}') {
                    held_back += 1;
                }
            }
            assert!(
                held_back > 0,
                "{tokenizer:?}: some character is split over tokens"
            );
            assert_eq!(incremental.text, text, "{tokenizer:?}");
        }
    }
}
