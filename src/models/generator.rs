//! Text generation with a GPT-2 model: prompt text in, continuation out.

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::error::ModelError;
use super::gpt2::Gpt2LmHeadModel;
use super::sampling::{Sampler, SamplingParams};
use super::tokenizer::TextTokenizer;

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
        let (new_token_ids, finish_reason) = self.generate_ids(&prompt_ids, params)?;
        let all: Vec<u32> = prompt_ids.iter().chain(&new_token_ids).copied().collect();
        Ok(Generation {
            text: self.tokenizer.decode(&all)?,
            new_text: self.tokenizer.decode(&new_token_ids)?,
            prompt_ids,
            new_token_ids,
            finish_reason,
        })
    }

    /// Continues `prompt_ids`; the budget is cut to what `n_positions` (and `max_length`) leave.
    pub fn generate_ids(
        &self,
        prompt_ids: &[u32],
        params: &GenerationParams,
    ) -> Result<(Vec<u32>, FinishReason), ModelError> {
        let n_positions = self.model.config().n_positions;
        if prompt_ids.is_empty() {
            return Err(ModelError::InvalidInput("the prompt has no tokens".into()));
        }
        if prompt_ids.len() >= n_positions {
            return Err(ModelError::InvalidInput(format!(
                "the prompt is {} tokens long, which leaves no room under the model's n_positions ({n_positions})",
                prompt_ids.len()
            )));
        }
        if let Some(limit) = params.max_prompt_tokens.filter(|&l| prompt_ids.len() > l) {
            return Err(ModelError::InvalidInput(format!(
                "the prompt is {} tokens long; the limit is {limit}",
                prompt_ids.len()
            )));
        }
        let mut budget = params.max_new_tokens.min(n_positions - prompt_ids.len());
        if let Some(max_length) = params.max_length {
            if prompt_ids.len() >= max_length {
                return Err(ModelError::InvalidInput(format!(
                    "the prompt is {} tokens long, which leaves no room under max_length ({max_length})",
                    prompt_ids.len()
                )));
            }
            budget = budget.min(max_length - prompt_ids.len());
        }
        let eos = self.model.config().eos_token_id;
        let mut sequence = prompt_ids.to_vec();
        let mut new_tokens = Vec::with_capacity(budget);
        let mut cache = None;
        let mut sampler = Sampler::new(params.sampling.clone());
        while new_tokens.len() < budget {
            let logits = match cache.as_mut() {
                None if params.use_cache => {
                    let (logits, fresh) = self.model.prefill(&[sequence.clone()])?;
                    cache = Some(fresh);
                    logits
                }
                Some(cache) => self
                    .model
                    .decode(&[*sequence.last().expect("non-empty")], cache)?,
                None => {
                    let all = self.model.logits_all(&sequence)?;
                    let [t, v] = all.dims();
                    all.slice([t - 1..t, 0..v])
                }
            };
            let banned = eos.filter(|_| new_tokens.len() < params.min_new_tokens);
            let next = sampler.next_token(&mut row_values(logits), &sequence, banned);
            sequence.push(next);
            new_tokens.push(next);
            if Some(next) == eos {
                return Ok((new_tokens, FinishReason::Eos));
            }
            if !params.stop.is_empty() {
                let text = self.tokenizer.decode(&new_tokens)?;
                if params.stop.iter().any(|s| text.contains(s.as_str())) {
                    return Ok((new_tokens, FinishReason::Stop));
                }
            }
        }
        Ok((new_tokens, FinishReason::Length))
    }
}

/// The single row of a `[1, vocab]` logits tensor, on the host.
fn row_values(logits: Tensor<2>) -> Vec<f32> {
    logits
        .into_data()
        .try_into_vec::<f32>()
        .expect("logits are f32")
}
