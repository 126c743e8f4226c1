//! The generator actor: owns one GPT-2 model and continues prompts with it.

use std::sync::Arc;

use actix::{Actor, Addr, Handler, Message, SyncArbiter, SyncContext};

use super::{run_guarded, ActorError, WorkSpan};
use crate::models::{Generation, GenerationParams, Generator};

pub struct GeneratorActor {
    /// The name results are reported under.
    name: String,
    /// Shared with the arbiter's factory, which builds the actor on its thread.
    generator: Arc<Generator>,
}

impl Actor for GeneratorActor {
    type Context = SyncContext<Self>;
}

impl GeneratorActor {
    /// Starts the actor on a thread of its own.
    pub fn start(name: String, generator: Generator) -> Addr<Self> {
        let generator = Arc::new(generator);
        SyncArbiter::start(1, move || GeneratorActor {
            name: name.clone(),
            generator: generator.clone(),
        })
    }
}

/// Continue `prompt`.
pub struct Generate {
    pub prompt: String,
    pub params: GenerationParams,
    /// The request this work is for, recorded on the actor's span.
    pub request_id: String,
    /// The HTTP request's span: the actor's work is recorded as its child.
    pub parent: tracing::Span,
}

impl Message for Generate {
    type Result = Result<Generated, ActorError>;
}

pub struct Generated {
    pub generation: Generation,
    pub span: WorkSpan,
}

impl Handler<Generate> for GeneratorActor {
    type Result = Result<Generated, ActorError>;

    fn handle(&mut self, msg: Generate, _: &mut SyncContext<Self>) -> Self::Result {
        let _span =
            tracing::info_span!(parent: &msg.parent, "generate", model = %self.name, request_id = %msg.request_id).entered();
        let (generation, span) = run_guarded(&self.name, || {
            self.generator.generate(&msg.prompt, &msg.params)
        })?;
        tracing::debug!(
            prompt_tokens = generation.prompt_ids.len(),
            generated_tokens = generation.new_token_ids.len(),
            ms = (span.finished - span.started).as_secs_f64() * 1e3,
            "generated"
        );
        Ok(Generated { generation, span })
    }
}
