//! The one interface the engine, actors and graph drive a text generator's model through,
//! whatever its architecture: prefill a batch of prompts, decode one token per row, and the
//! cache between them (`KvCache`). A new architecture implements `forward` and its
//! description; batching, padding and the vocabulary check come with the trait.

use burn::tensor::{Device, Tensor};

use super::dense::Dense;
use super::error::ModelError;
use super::kv_cache::KvCache;

/// What a causal LM is, as `/v1/models` and the benchmarks show it.
#[derive(Debug, Clone, PartialEq)]
pub struct LmDescription {
    /// `config.json`'s `model_type`.
    pub architecture: &'static str,
    pub layers: usize,
    pub hidden_size: usize,
    pub heads: usize,
    pub key_value_heads: usize,
    pub vocab_size: usize,
    /// Prompt plus continuation, in tokens.
    pub context_length: usize,
    /// The config key it comes from (`n_positions`, `max_position_embeddings`), for errors.
    pub context_key: &'static str,
    /// Parameters as loaded (a tied head counted once).
    pub parameters: usize,
}

/// A decoder-only language model with a KV cache.
pub trait CausalLm: std::fmt::Debug + Send + Sync {
    fn description(&self) -> &LmDescription;

    /// Where its weights live and its forward runs.
    fn device(&self) -> &Device;

    /// An empty cache for `batch` rows.
    fn new_cache(&self, batch: usize) -> KvCache;

    /// The transformer body: `ids` and `valid` are `[B][T]` (false = left padding), appended
    /// to `cache`. Returns the final hidden states `[B, T, hidden]` (after the last norm).
    /// Ids are already checked against the vocabulary.
    fn forward(
        &self,
        ids: &[Vec<u32>],
        valid: &[Vec<bool>],
        cache: &mut KvCache,
    ) -> Result<Tensor<3>, ModelError>;

    /// The token embeddings, `[vocab, hidden]`, looked up by row.
    fn embeddings(&self) -> &Dense;

    /// The LM head the checkpoint stores apart from the embeddings (`None`: tied).
    fn untied_lm_head(&self) -> Option<&Dense>;

    /// The blocks' dense layers in the order a forward pass runs them (the benchmark times
    /// them apart from the rest of a step).
    fn block_dense_layers(&self) -> Vec<&Dense>;

    /// The LM head (the embeddings when the checkpoint ties them).
    fn lm_head(&self) -> &Dense {
        self.untied_lm_head().unwrap_or(self.embeddings())
    }

    /// Bytes the dense layers' weights take in memory (a tied matrix once).
    fn dense_weight_bytes(&self) -> usize {
        let blocks: usize = self
            .block_dense_layers()
            .into_iter()
            .map(Dense::weight_bytes)
            .sum();
        blocks
            + self.embeddings().weight_bytes()
            + self.untied_lm_head().map_or(0, Dense::weight_bytes)
    }

    /// The blocks' dense layers' weight dtype (`f32`, `f16`, `bf16`, `int8`, `w8a8`, `q4` or
    /// `w4a8`); the embeddings may differ (a 4-bit GGUF's Q8_0 embedding is kept as int8).
    fn dtype(&self) -> &'static str {
        self.block_dense_layers()
            .first()
            .map_or_else(|| self.lm_head().dtype(), |dense| dense.dtype())
    }

    /// The final hidden states at every position of `ids`, `[T, hidden]`, in one forward
    /// without a cache. The caller applies the LM head to the positions it needs, as many at
    /// a time as it can hold (a position's logits are a whole vocabulary).
    fn hidden_all(&self, ids: &[u32]) -> Result<Tensor<2>, ModelError> {
        check_vocabulary(self.description(), [ids])?;
        let mut cache = self.new_cache(1);
        let hidden = self.forward(&[ids.to_vec()], &[vec![true; ids.len()]], &mut cache)?;
        let [_, t, c] = hidden.dims();
        Ok(hidden.reshape([t, c]))
    }

    /// Logits at every position of `ids`, `[T, vocab]`, in one forward without a cache: a
    /// short prompt's, as the parity tests compare them with transformers'.
    fn logits_all(&self, ids: &[u32]) -> Result<Tensor<2>, ModelError> {
        Ok(self.lm_head().forward(self.hidden_all(ids)?))
    }

    /// Runs a batch of prompts (left-padded to a common length) and returns the logits of
    /// each row's last token, `[B, vocab]`, with the cache to continue from.
    fn prefill(&self, prompts: &[Vec<u32>]) -> Result<(Tensor<2>, KvCache), ModelError> {
        if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
            return Err(ModelError::InvalidInput(
                "every prompt needs at least one token".into(),
            ));
        }
        check_vocabulary(self.description(), prompts.iter().map(Vec::as_slice))?;
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        // The padding's id is never seen: its keys are masked and its outputs dropped.
        let (ids, valid): (Vec<Vec<u32>>, Vec<Vec<bool>>) = prompts
            .iter()
            .map(|p| {
                let padding = longest - p.len();
                let mut ids = vec![0; padding];
                ids.extend_from_slice(p);
                let mut valid = vec![false; padding];
                valid.extend(std::iter::repeat_n(true, p.len()));
                (ids, valid)
            })
            .unzip();
        let mut cache = self.new_cache(prompts.len());
        let hidden = self.forward(&ids, &valid, &mut cache)?;
        Ok((last_logits(self.lm_head(), hidden), cache))
    }

    /// Feeds one token per row and returns each row's next-token logits, `[B, vocab]`.
    fn decode(&self, next: &[u32], cache: &mut KvCache) -> Result<Tensor<2>, ModelError> {
        if next.len() != cache.batch_size() {
            return Err(ModelError::InvalidInput(format!(
                "decode got {} tokens for a batch of {}",
                next.len(),
                cache.batch_size()
            )));
        }
        check_vocabulary(self.description(), [next])?;
        let ids: Vec<Vec<u32>> = next.iter().map(|&t| vec![t]).collect();
        let valid = vec![vec![true]; next.len()];
        let hidden = self.forward(&ids, &valid, cache)?;
        Ok(last_logits(self.lm_head(), hidden))
    }
}

/// Refuses an id the model has no embedding for, before any state changes.
fn check_vocabulary<'a>(
    description: &LmDescription,
    rows: impl IntoIterator<Item = &'a [u32]>,
) -> Result<(), ModelError> {
    let vocab_size = description.vocab_size;
    match rows
        .into_iter()
        .flatten()
        .find(|&&id| id as usize >= vocab_size)
    {
        Some(&id) => Err(ModelError::TokenOutOfVocabulary { id, vocab_size }),
        None => Ok(()),
    }
}

/// Each row's last position through the head: `[B, T, C]` → `[B, vocab]`.
fn last_logits(head: &Dense, hidden: Tensor<3>) -> Tensor<2> {
    let [b, t, c] = hidden.dims();
    head.forward(hidden.slice([0..b, t - 1..t, 0..c]).reshape([b, c]))
}
