//! Choosing the next token from a row of logits: greedy, or drawn with transformers' logits
//! processors, in transformers' order: repetition penalty, EOS suppression (for
//! `min_new_tokens`), temperature, top-k, top-p, min-p, then a draw from the request's own RNG.
//! OpenAI's adjustments come first, as vLLM applies them: the logit bias, then (after the
//! repetition penalty) the frequency and presence penalties, which count the generated
//! tokens only (the sampler's own picks), not the prompt's.
//!
//! Candidates are kept as `(token id, value)` pairs through every sort and cut, so no
//! truncation can lose track of which token a probability belongs to.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::rng::SplitMix64;

/// How one request picks its tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 is greedy (argmax). Otherwise logits are divided by it before the draw.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the fewest most-likely tokens whose probabilities add up to at least `p`.
    pub top_p: Option<f32>,
    /// Keep the tokens at least `p` times as likely as the most likely one (transformers'
    /// and vLLM's `min_p`; 0 keeps all).
    pub min_p: Option<f32>,
    /// Above 1 discourages every token already in the sequence (prompt included).
    pub repetition_penalty: f32,
    /// OpenAI's: subtracted from a token's logit once it has been generated (−2 to 2; 0 is
    /// none, below 0 encourages repeats).
    pub presence_penalty: f32,
    /// OpenAI's: subtracted from a token's logit as many times as it has been generated (−2
    /// to 2; 0 is none).
    pub frequency_penalty: f32,
    /// OpenAI's: added to these tokens' logits (−100 to 100: −100 in effect bans a token,
    /// 100 all but forces it). Ids must be in the model's vocabulary (the HTTP layer checks
    /// them; one past the logits is skipped here).
    pub logit_bias: Vec<(u32, f32)>,
    /// Seeds this request's RNG, so a sampled result can be reproduced; drawn when absent.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            min_p: None,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Checks every field, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if !self.temperature.is_finite() || !(0.0..=100.0).contains(&self.temperature) {
            return Err(format!(
                "temperature: {} is out of range 0..=100 (0 is greedy)",
                self.temperature
            ));
        }
        if self.top_k == Some(0) {
            return Err("top_k: must be at least 1".into());
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(format!("top_p: {p} is out of range (0, 1]"));
            }
        }
        if let Some(p) = self.min_p {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("min_p: {p} is out of range [0, 1]"));
            }
        }
        if !self.repetition_penalty.is_finite()
            || !(0.0..=100.0).contains(&self.repetition_penalty)
            || self.repetition_penalty == 0.0
        {
            return Err(format!(
                "repetition_penalty: {} is out of range (0, 100] (1 is none)",
                self.repetition_penalty
            ));
        }
        for (name, penalty) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-MAX_PENALTY..=MAX_PENALTY).contains(&penalty) {
                return Err(format!(
                    "{name}: {penalty} is out of range -{MAX_PENALTY}..={MAX_PENALTY} (0 is none)"
                ));
            }
        }
        if let Some((id, bias)) = self
            .logit_bias
            .iter()
            .find(|(_, bias)| !(-MAX_LOGIT_BIAS..=MAX_LOGIT_BIAS).contains(bias))
        {
            return Err(format!(
                "logit_bias: token {id}'s bias {bias} is out of range -{MAX_LOGIT_BIAS}..={MAX_LOGIT_BIAS}"
            ));
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// OpenAI's bound on the presence and frequency penalties, either sign.
pub const MAX_PENALTY: f32 = 2.0;
/// OpenAI's bound on a token's logit bias, either sign.
pub const MAX_LOGIT_BIAS: f32 = 100.0;

/// The per-request token picker: its parameters and its own RNG.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: SplitMix64,
    /// How often each token has been picked so far, for the presence and frequency
    /// penalties (kept only while one of them is set).
    picked: HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let seed = params
            .seed
            .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0);
        Self {
            params,
            rng: SplitMix64::new(seed),
            picked: HashMap::new(),
        }
    }

    /// Picks the next token. `context` is every token so far (prompt and generated);
    /// `banned` (the EOS ids before `min_new_tokens`) are never picked.
    pub fn next_token(&mut self, logits: &mut [f32], context: &[u32], banned: &[u32]) -> u32 {
        let next = self.pick(logits, context, banned);
        let SamplingParams {
            presence_penalty,
            frequency_penalty,
            ..
        } = self.params;
        if presence_penalty != 0.0 || frequency_penalty != 0.0 {
            *self.picked.entry(next).or_default() += 1;
        }
        next
    }

    fn pick(&mut self, logits: &mut [f32], context: &[u32], banned: &[u32]) -> u32 {
        for &(id, bias) in &self.params.logit_bias {
            if let Some(slot) = logits.get_mut(id as usize) {
                *slot += bias;
            }
        }
        apply_repetition_penalty(logits, context, self.params.repetition_penalty);
        for (&id, &count) in &self.picked {
            if let Some(slot) = logits.get_mut(id as usize) {
                *slot -=
                    self.params.frequency_penalty * count as f32 + self.params.presence_penalty;
            }
        }
        for &b in banned {
            if let Some(slot) = logits.get_mut(b as usize) {
                *slot = f32::NEG_INFINITY;
            }
        }
        if self.params.is_greedy() {
            return argmax(logits);
        }
        let temperature = self.params.temperature;
        // Measured from the largest logit: a tiny temperature then sends the others to −∞
        // and keeps the largest at 0, where dividing the logits themselves would overflow
        // them to ±∞ (whose softmax is NaN).
        let largest = logits
            .iter()
            .copied()
            .filter(|l| l.is_finite())
            .fold(f32::NEG_INFINITY, f32::max);
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(id, &l)| (id as u32, (l - largest) / temperature))
            .collect();
        if candidates.is_empty() {
            return argmax(logits);
        }
        if let Some(k) = self.params.top_k.filter(|&k| k < candidates.len()) {
            candidates.select_nth_unstable_by(k - 1, by_value_descending);
            candidates.truncate(k);
        }
        let mut probabilities = softmax(&candidates);
        if let Some(p) = self.params.top_p.filter(|&p| p < 1.0) {
            probabilities.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut total = 0.0;
            let keep = probabilities
                .iter()
                .position(|&(_, q)| {
                    total += q;
                    total >= p as f64
                })
                .map_or(probabilities.len(), |i| i + 1);
            probabilities.truncate(keep);
        }
        if let Some(min_p) = self.params.min_p.filter(|&p| p > 0.0) {
            let most = probabilities.iter().map(|&(_, q)| q).fold(0.0, f64::max);
            probabilities.retain(|&(_, q)| q >= f64::from(min_p) * most);
        }
        let total: f64 = probabilities.iter().map(|(_, q)| q).sum();
        let mut target = self.rng.uniform() * total;
        for &(id, q) in &probabilities {
            target -= q;
            if target <= 0.0 {
                return id;
            }
        }
        // Rounding can leave the draw a hair above the total: the last candidate then.
        probabilities
            .last()
            .map_or_else(|| argmax(logits), |&(id, _)| id)
    }
}

/// transformers' `RepetitionPenaltyLogitsProcessor`: a seen token's logit is divided by the
/// penalty when positive and multiplied by it when negative (each token once).
fn apply_repetition_penalty(logits: &mut [f32], context: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = std::collections::HashSet::with_capacity(context.len());
    for &id in context {
        if seen.insert(id) {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
            }
        }
    }
}

/// Larger values first; equal values by token id, so the order never depends on the sort.
fn by_value_descending(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.partial_cmp(&a.1)
        .unwrap_or(Ordering::Equal)
        .then(a.0.cmp(&b.0))
}

fn softmax(candidates: &[(u32, f32)]) -> Vec<(u32, f64)> {
    let max = candidates
        .iter()
        .map(|c| c.1)
        .fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<(u32, f64)> = candidates
        .iter()
        .map(|&(id, l)| (id, (l as f64 - max).exp()))
        .collect();
    let sum: f64 = exps.iter().map(|e| e.1).sum();
    exps.into_iter().map(|(id, e)| (id, e / sum)).collect()
}

/// Index of the largest value, the first on ties (as torch.argmax).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(params: SamplingParams) -> Sampler {
        Sampler::new(SamplingParams {
            seed: Some(7),
            ..params
        })
    }

    fn draws(params: SamplingParams, logits: &[f32], n: usize) -> Vec<u32> {
        let mut s = sampler(params);
        (0..n)
            .map(|_| s.next_token(&mut logits.to_vec(), &[], &[]))
            .collect()
    }

    #[test]
    fn greedy_takes_the_first_largest_and_skips_the_banned_token() {
        let mut s = sampler(SamplingParams::default());
        assert_eq!(s.next_token(&mut [0.1, 0.9, 0.9, 0.2], &[], &[]), 1);
        assert_eq!(s.next_token(&mut [0.1, 0.9, 0.5, 0.2], &[], &[1]), 2);
    }

    #[test]
    fn top_k_keeps_the_ids_of_the_k_largest_logits_wherever_they_sit() {
        let mut logits = vec![0.0f32; 50];
        logits[37] = 5.0;
        logits[3] = 4.9;
        logits[12] = 4.8;
        let params = SamplingParams {
            temperature: 1.0,
            top_k: Some(2),
            ..Default::default()
        };
        let picked = draws(params, &logits, 400);
        assert!(picked.iter().all(|&t| t == 37 || t == 3), "{picked:?}");
        assert!(picked.contains(&37) && picked.contains(&3));
    }

    #[test]
    fn top_p_keeps_the_fewest_likely_ids_that_reach_p() {
        // Probabilities 0.5 (id 9), 0.3 (id 2), 0.2 (id 5), spread over unsorted positions.
        let mut logits = vec![f32::NEG_INFINITY; 12];
        logits[9] = 0.5f32.ln();
        logits[2] = 0.3f32.ln();
        logits[5] = 0.2f32.ln();
        let params = SamplingParams {
            temperature: 1.0,
            top_p: Some(0.7),
            ..Default::default()
        };
        let picked = draws(params, &logits, 400);
        assert!(picked.iter().all(|&t| t == 9 || t == 2), "{picked:?}");
        assert!(picked.contains(&9) && picked.contains(&2));
    }

    #[test]
    fn min_p_keeps_the_ids_at_least_that_fraction_as_likely_as_the_top_one() {
        // Probabilities 0.5 (id 4), 0.3 (id 1), 0.15 (id 7), 0.05 (id 0).
        let mut logits = vec![f32::NEG_INFINITY; 9];
        logits[4] = 0.5f32.ln();
        logits[1] = 0.3f32.ln();
        logits[7] = 0.15f32.ln();
        logits[0] = 0.05f32.ln();
        let params = SamplingParams {
            temperature: 1.0,
            // 0.4 of 0.5 is 0.2: ids 4 and 1 stay, 7 (0.15) and 0 go.
            min_p: Some(0.4),
            ..Default::default()
        };
        let picked = draws(params, &logits, 400);
        assert!(picked.iter().all(|&t| t == 4 || t == 1), "{picked:?}");
        assert!(picked.contains(&4) && picked.contains(&1));
        let only_top = SamplingParams {
            temperature: 1.0,
            min_p: Some(1.0),
            ..Default::default()
        };
        assert!(draws(only_top, &logits, 100).iter().all(|&t| t == 4));
    }

    #[test]
    fn a_temperature_near_zero_samples_the_top_token_under_every_filter() {
        // Divided by the temperature, all of these would overflow f32.
        let logits = [10.0, 30.0, -20.0, 29.0];
        for (top_p, min_p) in [(None, None), (Some(0.5), None), (None, Some(0.5))] {
            let params = SamplingParams {
                temperature: f32::MIN_POSITIVE,
                top_p,
                min_p,
                ..Default::default()
            };
            assert!(draws(params, &logits, 50).iter().all(|&t| t == 1));
        }
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_logits_once() {
        let mut logits = vec![2.0, -2.0, 2.0];
        apply_repetition_penalty(&mut logits, &[0, 1, 1, 0], 2.0);
        assert_eq!(logits, vec![1.0, -4.0, 2.0]);
    }

    #[test]
    fn presence_and_frequency_penalties_count_the_generated_tokens_only() {
        let mut s = sampler(SamplingParams {
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            ..Default::default()
        });
        // Token 0 leads by 1.2 and is in the prompt (the context), which costs it nothing.
        let logits = [2.2, 1.0, 0.0];
        let prompt = [0, 0, 0];
        // Each pick of 0 costs it 0.5 + 0.25 per pick: 0.75 after one, 1.0 after two, 1.25
        // after three, which is when token 1 (1.0) wins.
        let picks: Vec<u32> = (0..4)
            .map(|_| s.next_token(&mut logits.to_vec(), &prompt, &[]))
            .collect();
        assert_eq!(picks, vec![0, 0, 0, 1]);
        // Now 0 is at 2.2 − 0.5 − 3·0.25 and 1 at 1.0 − 0.5 − 0.25.
        let mut row = logits.to_vec();
        assert_eq!(s.next_token(&mut row, &prompt, &[]), 0);
        assert_eq!(row, vec![2.2 - 1.25, 1.0 - 0.75, 0.0]);
    }

    #[test]
    fn a_negative_presence_penalty_favours_what_was_generated() {
        let mut s = sampler(SamplingParams {
            presence_penalty: -2.0,
            ..Default::default()
        });
        assert_eq!(s.next_token(&mut [1.0, 0.0, 2.0], &[], &[]), 2);
        // 2 once only counts once: the presence penalty does not grow with repeats.
        assert_eq!(s.next_token(&mut [1.0, 0.0, 2.0], &[], &[]), 2);
        let mut row = vec![3.0, 0.0, 2.0];
        assert_eq!(s.next_token(&mut row, &[], &[]), 2);
        assert_eq!(row, vec![3.0, 0.0, 4.0]);
    }

    #[test]
    fn a_logit_bias_of_minus_100_bans_a_token_and_100_forces_one() {
        let banned = SamplingParams {
            logit_bias: vec![(1, -100.0)],
            ..Default::default()
        };
        assert_eq!(
            sampler(banned).next_token(&mut [0.1, 9.0, 0.5], &[], &[]),
            2
        );
        let forced = SamplingParams {
            temperature: 1.0,
            logit_bias: vec![(0, 100.0), (7, 100.0)],
            ..Default::default()
        };
        // Id 7 is past this row: skipped, not a panic.
        assert!(draws(forced, &[0.1, 9.0, 0.5], 50).iter().all(|&t| t == 0));
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens_and_another_seed_differs() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32 * 0.3).collect();
        let params = |seed| SamplingParams {
            temperature: 1.0,
            seed: Some(seed),
            ..Default::default()
        };
        let run = |seed| {
            let mut s = Sampler::new(params(seed));
            (0..64)
                .map(|_| s.next_token(&mut logits.clone(), &[], &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn a_low_temperature_concentrates_on_the_top_token() {
        let logits = [1.0, 2.0, 1.5];
        let params = SamplingParams {
            temperature: 0.01,
            ..Default::default()
        };
        assert!(draws(params, &logits, 100).iter().all(|&t| t == 1));
    }

    #[test]
    fn validation_names_the_offending_field() {
        let bad = |p: SamplingParams| p.validate().unwrap_err();
        assert!(bad(SamplingParams {
            temperature: -1.0,
            ..Default::default()
        })
        .starts_with("temperature"));
        assert!(bad(SamplingParams {
            top_k: Some(0),
            ..Default::default()
        })
        .starts_with("top_k"));
        assert!(bad(SamplingParams {
            top_p: Some(1.5),
            ..Default::default()
        })
        .starts_with("top_p"));
        assert!(bad(SamplingParams {
            min_p: Some(-0.1),
            ..Default::default()
        })
        .starts_with("min_p"));
        assert!(bad(SamplingParams {
            repetition_penalty: 0.0,
            ..Default::default()
        })
        .starts_with("repetition_penalty"));
        assert!(bad(SamplingParams {
            presence_penalty: 2.5,
            ..Default::default()
        })
        .starts_with("presence_penalty"));
        assert!(bad(SamplingParams {
            frequency_penalty: f32::NAN,
            ..Default::default()
        })
        .starts_with("frequency_penalty"));
        assert!(bad(SamplingParams {
            logit_bias: vec![(3, -100.5)],
            ..Default::default()
        })
        .starts_with("logit_bias: token 3"));
        assert!(SamplingParams::default().validate().is_ok());
    }
}
