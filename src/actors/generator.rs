//! The generator actor: the graph's handle on one GPT-2 model, whose engine batches every
//! request the actor receives on the model's own thread.

use actix::{Actor, Context, Handler, Message, ResponseFuture};

use super::CallContext;
use crate::engine::generation::TokenSender;
use crate::engine::{EngineSettings, GenerationEngine};
use crate::models::{Generation, GenerationParams, Generator, Prompt};
use crate::work::{ActorError, WorkSpan};

pub struct GeneratorActor {
    /// The name results are reported under.
    name: String,
    /// Owns the model; the actor only forwards work to it, so it never blocks its arbiter.
    engine: GenerationEngine,
}

impl Actor for GeneratorActor {
    type Context = Context<Self>;
}

impl GeneratorActor {
    /// Starts the model's engine thread; `start()` the returned actor on an arbiter.
    pub fn new(name: String, generator: Generator, settings: EngineSettings) -> Self {
        let engine = GenerationEngine::start(&name, generator, settings);
        Self { name, engine }
    }

    pub fn engine(&self) -> &GenerationEngine {
        &self.engine
    }
}

/// Continue `prompt` (or answer it, for a conversation). Local (`GeneratorActor`) and remote
/// (`RemoteModel`) generators both take it, so the coordinator does not know which it
/// talks to.
pub struct Generate {
    pub prompt: Prompt,
    pub params: GenerationParams,
    /// For streaming requests: where each token goes as it is generated.
    pub events: Option<TokenSender>,
    /// The request it serves: ids, deadline, cancellation, span.
    pub context: CallContext,
}

impl Message for Generate {
    type Result = Result<Generated, ActorError>;
}

pub struct Generated {
    pub generation: Generation,
    pub span: WorkSpan,
}

impl Handler<Generate> for GeneratorActor {
    type Result = ResponseFuture<Result<Generated, ActorError>>;

    fn handle(&mut self, msg: Generate, _: &mut Context<Self>) -> Self::Result {
        let context = msg.context;
        let span = tracing::info_span!(parent: &context.parent, "generate", model = %self.name, request_id = %context.request_id);
        let submitted =
            self.engine
                .submit_streaming(msg.prompt, msg.params, context.cancel, span, msg.events);
        let model = self.name.clone();
        Box::pin(async move {
            let (generation, span) = submitted?
                .await
                .map_err(|_| ActorError::Unavailable { model })??;
            Ok(Generated { generation, span })
        })
    }
}
