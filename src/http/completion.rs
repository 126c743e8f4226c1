//! What `/v1/completions` (`openai.rs`) and `/v1/chat/completions` (`chat.rs`) share: the
//! sampling checks and the logit bias, the frames of a stream, OpenAI's finish reasons, usage
//! and log-probability shapes, leaving stop strings out of the text, and the request's trace.

use std::time::Instant;

use serde_json::json;

use super::api::{
    ChatLogprobs, ChatTokenLogprob, ChatTopLogprob, CompletionLogprobs, CompletionUsage,
};
use super::error::ApiError;
use super::model_calls::generation_attributes;
use super::state::AppState;
use crate::actors::{CallContext, Generated};
use crate::models::logprobs::{PromptLogprobs, TokenLogprob};
use crate::models::{FinishReason, GenerationParams};
use crate::telemetry::traces::model_trace;

/// Refuses, in one 422, `unsupported` (what the route found); then checks the temperature
/// against OpenAI's range.
pub(super) fn check_sampling(
    unsupported: Vec<&'static str>,
    temperature: Option<f64>,
) -> Result<(), ApiError> {
    if !unsupported.is_empty() {
        return Err(ApiError::Validation(format!(
            "not implemented: {}",
            unsupported.join(", ")
        )));
    }
    if let Some(t) = temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::Validation(format!(
                "temperature: {t} is out of range 0..=2"
            )));
        }
    }
    Ok(())
}

/// A native parameter's error under the name the OpenAI routes take it by.
pub(super) fn named_as_openai(error: ApiError) -> ApiError {
    match error {
        ApiError::Validation(m) => ApiError::Validation(
            m.replace("max_new_tokens", "max_tokens")
                .replace("min_new_tokens", "min_tokens"),
        ),
        other => other,
    }
}

/// The tokens an answer holds its end back for: vLLM's `min_tokens`, or with `ignore_eos`
/// the whole budget (`max_tokens`), so that only the budget or a stop string ends it.
pub(super) fn least_tokens(
    min_tokens: Option<usize>,
    ignore_eos: Option<bool>,
    max_tokens: usize,
) -> Option<usize> {
    match ignore_eos {
        Some(true) => Some(max_tokens),
        _ => min_tokens,
    }
}

/// One `data:` line of a streamed completion (or chat completion).
pub(super) enum Frame<C> {
    Chunk(C),
    Error(ApiError),
    Done,
}

impl<C: serde::Serialize> Frame<C> {
    pub(super) fn render(&self) -> String {
        let data = match self {
            Self::Chunk(chunk) => serde_json::to_string(chunk).expect("chunks serialize"),
            Self::Error(error) => json!({"error": {
                "message": error.to_string(),
                "type": error.error_type(),
            }})
            .to_string(),
            Self::Done => "[DONE]".into(),
        };
        format!("data: {data}\n\n")
    }
}

/// OpenAI's names: an end-of-sequence token or a stop string are both `stop`.
pub(super) fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        FinishReason::Eos | FinishReason::Stop => "stop",
    }
}

/// `text` up to the first of the `stops` in it (all of it when none is): OpenAI's answers
/// leave out the stop string that ended them, and whatever its last token held past it.
pub(super) fn before_stop<'a>(text: &'a str, stops: &[String]) -> &'a str {
    let first = stops
        .iter()
        .filter_map(|stop| text.find(stop.as_str()))
        .min();
    &text[..first.unwrap_or(text.len())]
}

/// Streams a continuation as [`before_stop`] cuts it: text that may be the start of a stop
/// string is held back until the next token's text shows whether it is.
pub(super) struct StopHold {
    /// The request's stop strings.
    stops: Vec<String>,
    /// Received but not yet sent: the longest end of the text that begins some stop string.
    held: String,
    /// A stop string has been seen: nothing more is sent.
    stopped: bool,
}

impl StopHold {
    pub(super) fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            held: String::new(),
            stopped: false,
        }
    }

    /// What of the text so far, ending with `text`, can be sent now.
    pub(super) fn push(&mut self, text: &str) -> String {
        if self.stopped {
            return String::new();
        }
        self.held.push_str(text);
        let cut = before_stop(&self.held, &self.stops).len();
        if cut < self.held.len() {
            self.stopped = true;
            let sent = self.held[..cut].to_string();
            self.held.clear();
            return sent;
        }
        let kept = self
            .stops
            .iter()
            .map(|stop| held_start(&self.held, stop))
            .max()
            .unwrap_or(0);
        self.held.drain(..self.held.len() - kept).collect()
    }

    /// What is still held once the generation has ended without completing a stop string.
    pub(super) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// The length of the longest end of `text` that is a proper start of `stop`.
fn held_start(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&len| stop.is_char_boundary(len) && text.ends_with(&stop[..len]))
        .unwrap_or(0)
}

/// The most choices a prompt may ask for (`n`): they share one prefill, but each decodes on
/// its own, and a CPU server's requests should stay within its request timeout.
pub(super) const MAX_N: usize = 4;

/// Refuses an `n` outside 1..=[`MAX_N`].
pub(super) fn check_n(n: Option<u32>) -> Result<(), ApiError> {
    match n {
        Some(n) if n == 0 || n as usize > MAX_N => Err(ApiError::Validation(format!(
            "n: {n} choices; give 1 to {MAX_N}"
        ))),
        _ => Ok(()),
    }
}

/// The parameters of choice `choice` of a prompt's `n`: the request's, with its seed plus
/// `choice`, so that sampled choices differ and each is reproducible (and choice 0 is what
/// the request alone would give).
pub(super) fn choice_params(params: &GenerationParams, choice: usize) -> GenerationParams {
    let mut params = params.clone();
    let seed = &mut params.sampling.seed;
    *seed = seed.map(|s| s.wrapping_add(choice as u64));
    // A prompt's scores are the same for each of its choices: its first choice alone pays
    // the forward that scores it.
    params.prompt_logprobs &= choice == 0;
    params
}

/// Tokens' log-probabilities as `/v1/completions` shows them: with `echo`, the prompt's
/// first (its first token unscored, as OpenAI shows it). The first token's text starts
/// `offset` characters in (0 with `echo`, else the prompt's length), each later one after the
/// earlier ones' texts.
pub(super) fn completion_logprobs(
    echo: Option<&PromptLogprobs>,
    tokens: &[TokenLogprob],
    offset: usize,
) -> CompletionLogprobs {
    let mut shown = CompletionLogprobs {
        tokens: Vec::new(),
        token_logprobs: Vec::new(),
        top_logprobs: Vec::new(),
        text_offset: Vec::new(),
    };
    let mut at = offset;
    let mut push = |token: &str, logprob, top| {
        shown.tokens.push(token.to_string());
        shown.token_logprobs.push(logprob);
        shown.top_logprobs.push(top);
        shown.text_offset.push(at);
        at += token.chars().count();
    };
    if let Some(prompt) = echo {
        push(&prompt.first_token, None, None);
    }
    let prompt_tokens = echo.map_or(&[][..], |prompt| &prompt.tokens);
    for t in prompt_tokens.iter().chain(tokens) {
        let mut top = std::collections::BTreeMap::new();
        // Most likely first, so a text two ids share keeps the likelier's number.
        for alt in &t.top_logprobs {
            top.entry(alt.token.clone()).or_insert(alt.logprob);
        }
        push(&t.token, Some(t.logprob), Some(top));
    }
    shown
}

/// Tokens' log-probabilities as `/v1/chat/completions` shows them.
pub(super) fn chat_logprobs(tokens: &[TokenLogprob]) -> ChatLogprobs {
    ChatLogprobs {
        content: tokens
            .iter()
            .map(|t| ChatTokenLogprob {
                token: t.token.clone(),
                logprob: t.logprob,
                bytes: t.token.as_bytes().to_vec(),
                top_logprobs: t
                    .top_logprobs
                    .iter()
                    .map(|alt| ChatTopLogprob {
                        token: alt.token.clone(),
                        logprob: alt.logprob,
                        bytes: alt.token.as_bytes().to_vec(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The usage of `generated`, `n` choices a prompt in a row: each prompt counts once, as
/// OpenAI counts it.
pub(super) fn usage(generated: &[Generated], n: usize) -> CompletionUsage {
    let prompt_tokens = generated
        .iter()
        .step_by(n.max(1))
        .map(|g| g.generation.prompt_ids.len())
        .sum();
    let completion_tokens = generated
        .iter()
        .map(|g| g.generation.new_token_ids.len())
        .sum();
    CompletionUsage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    }
}

/// Keeps the request's trace (one `generate` span per prompt); returns its id.
pub(super) fn record(
    state: &AppState,
    context: &CallContext,
    model: &str,
    begun: Instant,
    generated: &[Generated],
) -> String {
    let calls: Vec<_> = generated
        .iter()
        .map(|g| (g.span, generation_attributes(model, &g.generation)))
        .collect();
    let trace = model_trace(
        &context.request_id,
        &context.trace_id,
        begun,
        Instant::now(),
        "generate",
        &calls,
    );
    state.record_trace(trace)
}

#[cfg(test)]
mod tests {
    use super::{before_stop, StopHold};

    fn stops(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// The pieces `StopHold` sends for `tokens`, then what `finish` flushes.
    fn streamed(list: &[&str], tokens: &[&str]) -> (Vec<String>, String) {
        let mut hold = StopHold::new(stops(list));
        let sent = tokens.iter().map(|t| hold.push(t)).collect();
        (sent, hold.finish())
    }

    #[test]
    fn the_text_ends_before_the_first_stop_string_in_it() {
        let list = stops(&["Paris", "is"]);
        assert_eq!(before_stop("The capital is Paris.", &list), "The capital ");
        assert_eq!(
            before_stop("No stop here", &stops(&["Rome"])),
            "No stop here"
        );
        assert_eq!(before_stop("anything", &[]), "anything");
    }

    #[test]
    fn a_stream_holds_what_may_begin_a_stop_string_and_never_sends_the_stop_string() {
        let (sent, rest) = streamed(
            &["France is Paris"],
            &["The", " capital", " of", " France", " is", " Paris", "."],
        );
        assert_eq!(sent, ["The", " capital", " of", " ", "", "", ""]);
        assert_eq!(rest, "");
    }

    #[test]
    fn held_text_that_turns_out_not_to_be_a_stop_string_is_sent_in_full() {
        let (sent, rest) = streamed(&["Paris!"], &["in", " Par", "is", "."]);
        assert_eq!(sent, ["in", " ", "", "Paris."]);
        assert_eq!(rest, "");
        // The generation ended while text was held: finish sends it.
        let (sent, rest) = streamed(&[".\n"], &["Paris", "."]);
        assert_eq!(sent, ["Paris", ""]);
        assert_eq!(rest, ".");
    }

    #[test]
    fn streamed_pieces_join_to_the_cut_text_for_every_split_of_a_multibyte_text() {
        const STOPS: [&str; 3] = ["€,", "déjà", "zz"];
        let text = "Ça coûte 5 €, déjà payé.";
        let want = before_stop(text, &stops(&STOPS));
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        for width in 1..6 {
            let tokens: Vec<&str> = chars
                .chunks(width)
                .map(|c| {
                    let start = c[0].0;
                    let end = start + c.iter().map(|(_, ch)| ch.len_utf8()).sum::<usize>();
                    &text[start..end]
                })
                .collect();
            let (sent, rest) = streamed(&STOPS, &tokens);
            assert_eq!(sent.concat() + &rest, want, "tokens of {width} characters");
        }
    }
}
