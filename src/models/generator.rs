//! Text generation with a GPT-2 model: prompt text in, continuation out.

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::error::ModelError;
use super::gpt2::Gpt2LmHeadModel;
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
        }
    }
}

/// A finished generation, shaped as `infergraph generate --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub new_token_ids: Vec<u32>,
    /// Prompt plus continuation, as Hugging Face's text-generation pipeline returns it.
    pub text: String,
    pub new_text: String,
    pub finish_reason: FinishReason,
}

/// A GPT-2 model with its tokenizer.
#[derive(Debug)]
pub struct Generator {
    dir: PathBuf,
    model: Gpt2LmHeadModel,
    tokenizer: TextTokenizer,
}

impl Generator {
    pub fn new(dir: PathBuf, model: Gpt2LmHeadModel, tokenizer: TextTokenizer) -> Self {
        Self {
            dir,
            model,
            tokenizer,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn model(&self) -> &Gpt2LmHeadModel {
        &self.model
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
        let (sequence, reason) =
            self.run_alone(self.sequence(prompt_ids, params)?, params.use_cache)?;
        sequence.into_generation(&self.tokenizer, reason)
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
                    let all = self.model.logits_all(&sequence.tokens)?;
                    let [t, v] = all.dims();
                    all.slice([t - 1..t, 0..v])
                }
            };
            sequence.choose(&mut row_values(logits));
        }
    }

    /// Checks `prompt_ids` against the model's context and the request's limits, and sets
    /// the sequence up to be continued.
    pub fn sequence(
        &self,
        prompt_ids: Vec<u32>,
        params: &GenerationParams,
    ) -> Result<Sequence, ModelError> {
        let n_positions = self.model.config().n_positions;
        let len = prompt_ids.len();
        if len == 0 {
            return Err(ModelError::InvalidInput("the prompt has no tokens".into()));
        }
        if len >= n_positions {
            return Err(ModelError::InvalidInput(format!(
                "the prompt is {len} tokens long, which leaves no room under the model's n_positions ({n_positions})"
            )));
        }
        if let Some(limit) = params.max_prompt_tokens.filter(|&l| len > l) {
            return Err(ModelError::InvalidInput(format!(
                "the prompt is {len} tokens long; the limit is {limit}"
            )));
        }
        let mut budget = params.max_new_tokens.min(n_positions - len);
        if let Some(max_length) = params.max_length {
            if len >= max_length {
                return Err(ModelError::InvalidInput(format!(
                    "the prompt is {len} tokens long, which leaves no room under max_length ({max_length})"
                )));
            }
            budget = budget.min(max_length - len);
        }
        Ok(Sequence {
            tokens: prompt_ids,
            prompt_len: len,
            budget,
            eos: self.model.config().eos_token_id,
            min_new_tokens: params.min_new_tokens,
            stop: params.stop.clone(),
            sampler: Sampler::new(params.sampling.clone()),
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
    eos: Option<u32>,
    min_new_tokens: usize,
    stop: Vec<String>,
    sampler: Sampler,
}

impl Sequence {
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
        let banned = self
            .eos
            .filter(|_| self.new_tokens().len() < self.min_new_tokens);
        let next = self.sampler.next_token(logits, &self.tokens, banned);
        self.tokens.push(next);
        next
    }

    /// Why the sequence is done, if it is: EOS, a stop string, or its budget.
    pub fn finished(&self, tokenizer: &TextTokenizer) -> Result<Option<FinishReason>, ModelError> {
        let new = self.new_tokens();
        if new.last().is_some() && new.last().copied() == self.eos {
            return Ok(Some(FinishReason::Eos));
        }
        if !new.is_empty() && !self.stop.is_empty() {
            let text = tokenizer.decode(new)?;
            if self.stop.iter().any(|s| text.contains(s.as_str())) {
                return Ok(Some(FinishReason::Stop));
            }
        }
        Ok((new.len() >= self.budget).then_some(FinishReason::Length))
    }

    /// The finished result, with its text decoded.
    pub fn into_generation(
        self,
        tokenizer: &TextTokenizer,
        finish_reason: FinishReason,
    ) -> Result<Generation, ModelError> {
        Ok(Generation {
            text: tokenizer.decode(&self.tokens)?,
            new_text: tokenizer.decode(self.new_tokens())?,
            prompt_ids: self.prompt_ids().to_vec(),
            new_token_ids: self.new_tokens().to_vec(),
            finish_reason,
        })
    }
}

/// The single row of a `[1, vocab]` logits tensor, on the host.
fn row_values(logits: Tensor<2>) -> Vec<f32> {
    logits
        .into_data()
        .try_into_vec::<f32>()
        .expect("logits are f32")
}
