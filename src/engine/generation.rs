//! One generator's engine: a bounded queue in front of a thread that runs continuous batching.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::admission::{take_jobs, Admission, EngineSettings, EngineStats};
use super::cancel::CancelToken;
use super::pool::{self, StartGate};
use crate::models::generator::Sequence;
use crate::models::kv_cache::KvCache;
use crate::models::logprobs::TokenLogprob;
use crate::models::tokenizer::TextTokenizer;
use crate::models::{Generation, GenerationParams, Generator, ModelError, Prompt};
use crate::work::{ActorError, WorkSpan};

/// What the engine answers: the generation and when the engine worked on it.
pub type Reply = Result<(Generation, WorkSpan), ActorError>;

/// One generated token, for streaming. `text` is what the token adds to the continuation,
/// held back while it would end in an incomplete UTF-8 character (GPT-2's tokens are bytes),
/// so the `text`s of a sequence's events concatenate to exactly its continuation's text.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    /// Position in the continuation, from 0.
    pub index: usize,
    pub token_id: u32,
    pub text: String,
    /// The token's log-probability, when the request asked for them.
    pub logprob: Option<TokenLogprob>,
}

/// Where a streaming request's token events go.
pub type TokenSender = tokio::sync::mpsc::UnboundedSender<TokenEvent>;

pub struct Job {
    prompt: Prompt,
    params: GenerationParams,
    cancel: CancelToken,
    reply: oneshot::Sender<Reply>,
    /// Set for streaming requests; closed once the request is answered.
    events: Option<TokenSender>,
    /// When it was queued, for time-to-first-token.
    submitted: Instant,
    /// The request's span, so the engine's events land under it.
    parent: tracing::Span,
}

/// A handle to a running engine; clones share it.
#[derive(Clone)]
pub struct GenerationEngine {
    admission: Admission<Job>,
}

impl GenerationEngine {
    /// Starts the engine's thread, which owns `generator` from now on.
    pub fn start(name: &str, generator: Generator, settings: EngineSettings) -> Self {
        Self::start_held(name, generator, settings).0
    }

    /// Like `start`, but the engine takes no job until the returned gate is dropped.
    pub fn start_held(
        name: &str,
        generator: Generator,
        settings: EngineSettings,
    ) -> (Self, StartGate) {
        let (admission, jobs) = Admission::new(name, settings.clone());
        let batcher = Batcher {
            name: name.to_string(),
            generator,
            max_batch: settings.max_batch.max(1),
            panic_on_prompt: settings.panic_on_prompt.clone(),
            panic_picking_on_prompt: settings.panic_picking_on_prompt.clone(),
            stats: admission.stats().clone(),
            rows: Vec::new(),
            cache: None,
        };
        let gate = pool::spawn_engine(name, move || batcher.run(jobs));
        (Self { admission }, gate)
    }

    /// Queues a text to continue, or refuses it at once when the queue is full.
    pub fn submit(
        &self,
        prompt: String,
        params: GenerationParams,
        cancel: CancelToken,
        parent: tracing::Span,
    ) -> Result<oneshot::Receiver<Reply>, ActorError> {
        self.submit_streaming(Prompt::Text(prompt), params, cancel, parent, None)
    }

    /// As `submit`, also sending each token to `events` as it is generated.
    pub fn submit_streaming(
        &self,
        prompt: Prompt,
        params: GenerationParams,
        cancel: CancelToken,
        parent: tracing::Span,
        events: Option<TokenSender>,
    ) -> Result<oneshot::Receiver<Reply>, ActorError> {
        let (reply, answer) = oneshot::channel();
        self.admission.submit(Job {
            prompt,
            params,
            cancel,
            reply,
            events,
            submitted: Instant::now(),
            parent,
        })?;
        Ok(answer)
    }

    /// Its name, limits and counters.
    pub fn admission(&self) -> &Admission<Job> {
        &self.admission
    }

    pub fn stats(&self) -> &EngineStats {
        self.admission.stats()
    }
}

/// A request in the running batch.
struct Row {
    /// The request's prompt, kept for fault injection.
    prompt: Prompt,
    sequence: Sequence,
    cancel: CancelToken,
    reply: oneshot::Sender<Reply>,
    parent: tracing::Span,
    submitted: Instant,
    started: Instant,
    /// Rows in the batch once this one joined it.
    joined_batch: usize,
    events: Option<TokenSender>,
    /// Tokens already sent as events.
    streamed_tokens: usize,
    /// Bytes of the continuation's text already sent.
    streamed_bytes: usize,
    /// Why picking this row's token panicked: the row is answered with it at the next
    /// retire, and the rows batched with it carry on.
    fault: Option<String>,
}

impl Row {
    /// Picks the row's next token from its logits, turning a panic into the row's fault
    /// (the next retire answers it, before it could pick again).
    fn pick(&mut self, logits: &mut [f32], injected: Option<&str>) {
        let inject = matches!(&self.prompt, Prompt::Text(text) if Some(text.as_str()) == injected);
        let sequence = &mut self.sequence;
        let picked = catch_unwind(AssertUnwindSafe(|| {
            if inject {
                panic!("injected fault: engine.panic_picking_on_prompt");
            }
            sequence.choose(logits)
        }));
        if let Err(payload) = picked {
            self.fault = Some(panic_message(payload.as_ref()));
        }
    }

    /// Sends the event of the newest token, if it has not gone out yet. `last` flushes
    /// whatever text is still held back.
    fn stream_newest(&mut self, tokenizer: &TextTokenizer, last: bool) {
        let Some(events) = &self.events else {
            return;
        };
        let new = self.sequence.new_tokens();
        if new.len() == self.streamed_tokens {
            return;
        }
        // The last event flushes the whole text, a trailing partial character included (as
        // U+FFFD, as the final text has it); before that only whole characters go out.
        let whole;
        let text = if last {
            whole = self
                .sequence
                .continuation_text(tokenizer)
                .unwrap_or_default();
            whole.as_str()
        } else {
            self.sequence.text_so_far()
        };
        let index = new.len() - 1;
        let _ = events.send(TokenEvent {
            index,
            logprob: self.sequence.logprob(index, tokenizer).ok().flatten(),
            token_id: *new.last().expect("a new token"),
            text: text
                .get(self.streamed_bytes..)
                .unwrap_or_default()
                .to_string(),
        });
        self.streamed_tokens = new.len();
        self.streamed_bytes = text.len();
    }
}

/// The engine thread's state: the model, the batch's rows and their shared KV cache.
struct Batcher {
    name: String,
    generator: Generator,
    max_batch: usize,
    /// See `EngineSettings::panic_on_prompt`.
    panic_on_prompt: Option<String>,
    /// See `EngineSettings::panic_picking_on_prompt`.
    panic_picking_on_prompt: Option<String>,
    stats: Arc<EngineStats>,
    /// In the same order as the cache's rows.
    rows: Vec<Row>,
    cache: Option<KvCache>,
}

impl Batcher {
    fn run(mut self, jobs: Receiver<Job>) {
        loop {
            // Idle, it sleeps until work comes; with a batch running it takes what waits.
            let room = self.max_batch - self.rows.len();
            let Some(arrived) = take_jobs(&jobs, &self.stats, room, self.rows.is_empty()) else {
                return;
            };
            self.admit(arrived);
            self.retire();
            if !self.rows.is_empty() {
                self.step();
                self.retire();
            }
        }
    }

    /// Prefills the arrived requests together and merges them into the batch.
    fn admit(&mut self, arrived: Vec<Job>) {
        let mut joining = Vec::new();
        for job in arrived {
            if job.cancel.is_cancelled() {
                self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                let _ = job.reply.send(Err(ActorError::Cancelled));
                continue;
            }
            let started = Instant::now();
            let sequence = self
                .generator
                .encode_prompt(&job.prompt)
                .and_then(|ids| self.generator.sequence(ids, &job.params))
                .map(|sequence| sequence.answering(&job.prompt))
                .map_err(ActorError::from)
                .and_then(|sequence| self.score_prompt(sequence, &job.params));
            match sequence {
                Ok(sequence) => joining.push(Row {
                    prompt: job.prompt,
                    sequence,
                    cancel: job.cancel,
                    reply: job.reply,
                    parent: job.parent,
                    submitted: job.submitted,
                    started,
                    joined_batch: 0,
                    events: job.events,
                    streamed_tokens: 0,
                    streamed_bytes: 0,
                    fault: None,
                }),
                Err(error) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = job.reply.send(Err(error));
                }
            }
        }
        if joining.is_empty() {
            return;
        }
        let prompts: Vec<Vec<u32>> = joining
            .iter()
            .map(|r| r.sequence.tokens().to_vec())
            .collect();
        // A request's `n` choices share their prompt: it is prefilled once, and its logits and
        // cache rows are copied to each of them.
        let (prompts, prompt_of_row) = distinct(prompts);
        let model = self.generator.model();
        let injected = self.panic_on_prompt.as_deref();
        let fault = joining
            .iter()
            .any(|r| matches!(&r.prompt, Prompt::Text(text) if Some(text.as_str()) == injected));
        let forward = Instant::now();
        let prefilled = guarded(|| {
            if fault {
                panic!("injected fault: engine.panic_on_prompt");
            }
            let (logits, cache) = model.prefill(&prompts)?;
            let logits = host_rows(logits);
            if prompts.len() == prompt_of_row.len() {
                return Ok((logits, cache));
            }
            let rows = prompt_of_row.iter().map(|&p| logits[p].clone()).collect();
            Ok((rows, cache.retain(&prompt_of_row)))
        });
        match prefilled {
            Ok((logits, fresh)) => {
                self.stats.record_forward(joining.len(), forward.elapsed());
                self.stats
                    .tokens
                    .fetch_add(joining.len() as u64, Ordering::Relaxed);
                let injected = self.panic_picking_on_prompt.as_deref();
                for (row, mut logits) in joining.iter_mut().zip(logits) {
                    row.pick(&mut logits, injected);
                    let waited = row.submitted.elapsed().as_secs_f64();
                    self.stats.time_to_first_token.observe(waited);
                }
                self.stats
                    .admitted
                    .fetch_add(joining.len() as u64, Ordering::Relaxed);
                self.cache = Some(match self.cache.take() {
                    Some(running) => running.concat(fresh),
                    None => fresh,
                });
                let batch = self.rows.len() + joining.len();
                for row in &mut joining {
                    row.joined_batch = batch;
                }
                self.rows.extend(joining);
                self.stats.active.store(self.rows.len(), Ordering::Release);
            }
            Err(message) => {
                self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                self.fail(joining, &message)
            }
        }
    }

    /// Scores `sequence`'s prompt when `params` ask for it; a model that fails or panics
    /// doing so fails this request alone.
    fn score_prompt(
        &self,
        mut sequence: Sequence,
        params: &GenerationParams,
    ) -> Result<Sequence, ActorError> {
        let Some(top) = params.prompt_scoring() else {
            return Ok(sequence);
        };
        let scored = catch_unwind(AssertUnwindSafe(|| {
            self.generator.score_prompt(sequence.prompt_ids(), top)
        }));
        match scored {
            Ok(Ok(scored)) => {
                sequence.set_prompt_logprobs(scored);
                Ok(sequence)
            }
            // As any of the request's own errors (an id outside the vocabulary, say).
            Ok(Err(error)) => Err(error.into()),
            Err(payload) => Err(ActorError::Failed {
                model: self.name.clone(),
                message: panic_message(payload.as_ref()),
            }),
        }
    }

    /// One decode step for every row.
    fn step(&mut self) {
        let next: Vec<u32> = self.rows.iter().map(|r| r.sequence.last_token()).collect();
        let model = self.generator.model();
        let cache = self.cache.as_mut().expect("rows have a cache");
        let forward = Instant::now();
        let decoded = guarded(|| Ok(host_rows(model.decode(&next, cache)?)));
        match decoded {
            Ok(logits) => {
                let elapsed = forward.elapsed();
                self.stats.record_forward(self.rows.len(), elapsed);
                self.stats.steps.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .tokens
                    .fetch_add(self.rows.len() as u64, Ordering::Relaxed);
                for _ in &self.rows {
                    self.stats.token_latency.observe(elapsed.as_secs_f64());
                }
                let injected = self.panic_picking_on_prompt.as_deref();
                for (row, mut logits) in self.rows.iter_mut().zip(logits) {
                    row.pick(&mut logits, injected);
                }
            }
            Err(message) => {
                self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                // The cache may be half-updated: start the batch afresh.
                self.cache = None;
                let rows = std::mem::take(&mut self.rows);
                self.stats.active.store(0, Ordering::Release);
                self.fail(rows, &message);
            }
        }
    }

    /// Answers and removes every row that is finished or cancelled.
    fn retire(&mut self) {
        let tokenizer = self.generator.tokenizer();
        let outcomes: Vec<Option<Result<crate::models::FinishReason, ActorError>>> = self
            .rows
            .iter_mut()
            .map(|row| {
                if let Some(message) = &row.fault {
                    tracing::error!(parent: &row.parent, model = %self.name, %message, "picking a token failed; its request gets an error");
                    return Some(Err(ActorError::Failed {
                        model: self.name.clone(),
                        message: message.clone(),
                    }));
                }
                if row.cancel.is_cancelled() {
                    return Some(Err(ActorError::Cancelled));
                }
                match row.sequence.finished(tokenizer) {
                    Ok(reason) => reason.map(Ok),
                    Err(error) => Some(Err(error.into())),
                }
            })
            .collect();
        for (row, outcome) in self.rows.iter_mut().zip(&outcomes) {
            if !matches!(outcome, Some(Err(_))) {
                row.stream_newest(tokenizer, outcome.is_some());
            }
        }
        if outcomes.iter().all(Option::is_none) {
            return;
        }
        let keep: Vec<usize> = (0..outcomes.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();
        self.cache = if keep.is_empty() {
            None
        } else {
            self.cache.take().map(|cache| cache.retain(&keep))
        };
        let rows = std::mem::take(&mut self.rows);
        let mut replies = Vec::new();
        for (row, outcome) in rows.into_iter().zip(outcomes) {
            let Some(outcome) = outcome else {
                self.rows.push(row);
                continue;
            };
            let span = WorkSpan {
                queued: row.submitted,
                started: row.started,
                finished: Instant::now(),
                batch_size: row.joined_batch,
            };
            let reply = match outcome {
                Ok(reason) => {
                    self.stats.completed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        parent: &row.parent,
                        model = %self.name,
                        generated_tokens = row.sequence.new_tokens().len(),
                        "generated"
                    );
                    row.sequence
                        .into_generation(tokenizer, reason)
                        .map(|generation| (generation, span))
                        .map_err(ActorError::from)
                }
                Err(error) => {
                    let counter = match error {
                        ActorError::Cancelled => &self.stats.cancelled,
                        _ => &self.stats.failed,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    Err(error)
                }
            };
            replies.push((row.reply, reply));
        }
        // The slots are free before anyone hears back, so a waiter that reads the stats
        // after its answer never sees its own row still active.
        self.stats.active.store(self.rows.len(), Ordering::Release);
        for (sender, reply) in replies {
            let _ = sender.send(reply);
        }
    }

    fn fail(&self, rows: Vec<Row>, message: &str) {
        tracing::error!(model = %self.name, rows = rows.len(), %message, "batch step failed; its requests get an error");
        for row in rows {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            let _ = row.reply.send(Err(ActorError::Failed {
                model: self.name.clone(),
                message: message.to_string(),
            }));
        }
    }
}

/// The distinct prompts of `prompts`, in order of first appearance, and for each of
/// `prompts` the index of its distinct prompt.
fn distinct(prompts: Vec<Vec<u32>>) -> (Vec<Vec<u32>>, Vec<usize>) {
    let mut unique: Vec<Vec<u32>> = Vec::new();
    let of_row = prompts
        .into_iter()
        .map(|prompt| match unique.iter().position(|u| *u == prompt) {
            Some(index) => index,
            None => {
                unique.push(prompt);
                unique.len() - 1
            }
        })
        .collect();
    (unique, of_row)
}

/// Runs model work, turning both errors and panics into a message.
pub(super) fn guarded<T>(work: impl FnOnce() -> Result<T, ModelError>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(payload) => Err(panic_message(payload.as_ref())),
    }
}

/// The text a panic was raised with.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// `[B, vocab]` logits as one host vector per row.
fn host_rows(logits: burn::tensor::Tensor<2>) -> Vec<Vec<f32>> {
    let [_, vocab] = logits.dims();
    logits
        .into_data()
        .try_into_vec::<f32>()
        .expect("logits are f32")
        .chunks_exact(vocab)
        .map(<[f32]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_prompts_are_prefilled_once_and_each_row_points_at_its_own() {
        let prompts = vec![vec![1, 2], vec![3], vec![1, 2], vec![1, 2], vec![3, 4]];
        let (unique, of_row) = distinct(prompts);
        assert_eq!(unique, vec![vec![1, 2], vec![3], vec![3, 4]]);
        assert_eq!(of_row, vec![0, 1, 0, 0, 2]);
    }

    #[test]
    fn a_panic_in_model_work_becomes_an_error_message() {
        let result: Result<(), String> = guarded(|| panic!("index out of bounds"));
        assert_eq!(result, Err("index out of bounds".to_string()));
        let result: Result<(), String> = guarded(|| Err(ModelError::InvalidInput("empty".into())));
        assert_eq!(result, Err("invalid input: empty".to_string()));
        assert_eq!(guarded(|| Ok(7)), Ok(7));
    }
}
