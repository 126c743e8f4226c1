//! Log-probabilities of generated tokens, as OpenAI's `logprobs` reports them.
//!
//! Invariants:
//! * They are the model's own: a log-softmax of the raw logits, before temperature,
//!   repetition penalty, top-k, top-p or the ban on an early end-of-sequence, so a sampled
//!   and a greedy request report the same numbers for the same token.
//! * `top_logprobs` lists the `top` most likely tokens, most likely first, a lower id first
//!   among equals; the chosen token may or may not be among them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ModelError;
use super::tokenizer::TextTokenizer;

/// The most alternatives a request may ask for per token (OpenAI's `top_logprobs` limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A generated token's log-probability, and the most likely tokens at its position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenLogprob {
    pub token_id: u32,
    /// The token decoded on its own (a piece of a character split over tokens is U+FFFD).
    pub token: String,
    pub logprob: f32,
    pub top_logprobs: Vec<TopLogprob>,
}

/// One of the most likely tokens at a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopLogprob {
    pub token_id: u32,
    pub token: String,
    pub logprob: f32,
}

/// A prompt's tokens' log-probabilities. Nothing before the first token scores it, so it
/// comes apart, decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PromptLogprobs {
    pub first_token_id: u32,
    pub first_token: String,
    /// The prompt's other tokens, each under the logits of the position before it.
    pub tokens: Vec<TokenLogprob>,
}

/// How many prompt positions' logits scoring holds at once: 64 positions of a 152k
/// vocabulary are 39 MB, and the LM head's batched kernels are as fast per row as on more.
pub const SCORED_POSITIONS_AT_ONCE: usize = 64;

/// What a sequence keeps of one step: ids and numbers; the texts are decoded when asked for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepLogprobs {
    chosen: (u32, f32),
    top: Vec<(u32, f32)>,
}

/// The log-probabilities of a step's tokens under the raw `logits`: `top` alternatives, and
/// a function giving any token's.
pub(crate) struct Distribution<'a> {
    logits: &'a [f32],
    log_sum: f64,
}

impl<'a> Distribution<'a> {
    pub(crate) fn of(logits: &'a [f32]) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // `exp` in f32, each run of 256 terms summed in f32, the runs in f64: with f64
        // exponentials, Qwen2.5's 152k-token vocabulary cost ~1.7 ms a decoded token (on a
        // 12 ms step), with these 0.2–1.0 ms.
        let sum: f64 = logits
            .chunks(256)
            .map(|run| run.iter().map(|&l| (l - max).exp()).sum::<f32>() as f64)
            .sum();
        Distribution {
            logits,
            log_sum: max as f64 + sum.ln(),
        }
    }

    fn logprob(&self, id: u32) -> f32 {
        (self.logits[id as usize] as f64 - self.log_sum) as f32
    }

    /// The step's record once `chosen` is picked, with the `top` most likely tokens.
    pub(crate) fn step(&self, chosen: u32, top: usize) -> StepLogprobs {
        // A short list kept sorted: `top` is at most 20, the vocabulary 50–150 thousand.
        let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
        for (id, &l) in self.logits.iter().enumerate() {
            if best.len() == top && best.last().is_none_or(|&(_, worst)| l <= worst) {
                continue;
            }
            let at = best.partition_point(|&(_, v)| v >= l);
            best.insert(at, (id as u32, l));
            best.truncate(top);
        }
        StepLogprobs {
            chosen: (chosen, self.logprob(chosen)),
            top: best
                .into_iter()
                .map(|(id, _)| (id, self.logprob(id)))
                .collect(),
        }
    }
}

impl StepLogprobs {
    /// With each token's text.
    pub(crate) fn decoded(&self, tokenizer: &TextTokenizer) -> Result<TokenLogprob, ModelError> {
        let text = |id: u32| tokenizer.decode(&[id]);
        Ok(TokenLogprob {
            token_id: self.chosen.0,
            token: text(self.chosen.0)?,
            logprob: self.chosen.1,
            top_logprobs: self
                .top
                .iter()
                .map(|&(token_id, logprob)| {
                    Ok(TopLogprob {
                        token_id,
                        token: text(token_id)?,
                        logprob,
                    })
                })
                .collect::<Result<_, ModelError>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_a_log_softmax_and_the_top_ones_come_most_likely_first_lower_id_first() {
        let logits = [1.0f32, 3.0, 2.0, 3.0, -1.0];
        let step = Distribution::of(&logits).step(2, 3);
        let norm: f64 = logits.iter().map(|&l| (l as f64).exp()).sum::<f64>().ln();
        let expected = |l: f32| (l as f64 - norm) as f32;
        let close = |(id, got): (u32, f32), (want_id, want): (u32, f32)| {
            assert_eq!(id, want_id);
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        };
        close(step.chosen, (2, expected(2.0)));
        let want = [(1, expected(3.0)), (3, expected(3.0)), (2, expected(2.0))];
        assert_eq!(step.top.len(), want.len());
        for (&got, want) in step.top.iter().zip(want) {
            close(got, want);
        }
        let total: f64 = logits.iter().map(|&l| (expected(l) as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }

    #[test]
    fn no_alternatives_when_none_are_asked_for_and_huge_logits_stay_finite() {
        let logits = [1e30f32, 0.0, -1e30];
        let step = Distribution::of(&logits).step(1, 0);
        assert!(step.top.is_empty());
        assert_eq!(step.chosen.0, 1);
        assert_eq!(step.chosen.1, -1e30);
        assert_eq!(Distribution::of(&logits).step(0, 1).chosen.1, 0.0);
    }
}
