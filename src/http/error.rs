//! The one error type of the HTTP API: each failure maps to a status and an `error_type`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use super::api::ErrorBody;
use crate::models::ModelError;
use crate::work::ActorError;

/// Seconds a client should wait before retrying a 429 or 503.
const RETRY_AFTER_SECS: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("the body is not valid UTF-8")]
    InvalidUtf8,
    #[error("{0}")]
    BadRequest(String),
    #[error("unsupported content type {found:?}: this endpoint takes {expected}")]
    UnsupportedMediaType {
        found: String,
        expected: &'static str,
    },
    #[error("the body is larger than the {limit}-byte limit")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    Validation(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("no model is called {name:?}; the models are: {}", available.join(", "))]
    ModelNotFound {
        name: String,
        available: Vec<String>,
    },
    #[error("model {model:?} is {} {role}; {route} needs {} {needs}", article(.role), article(.needs))]
    WrongRole {
        model: String,
        role: &'static str,
        route: &'static str,
        needs: &'static str,
    },
    /// A chat route for a generator without a template: never a made-up format.
    #[error(
        "model {model:?} cannot chat: no chat template (the model ships none; config.toml's \
         chat_template or chat_template_file can give it one)"
    )]
    NoChatTemplate { model: String },
    #[error("no graph is called {name:?}; the graphs are: {}", available.join(", "))]
    GraphNotFound {
        name: String,
        available: Vec<String>,
    },
    /// A switch step had no case for the request's data (a graph's answer, not a fault).
    #[error("{0}")]
    NoRoute(String),
    #[error(
        "this server runs no graph: it is a model node serving {models} on /v1/models/{{name}}/.."
    )]
    NoGraph { models: String },
    #[error("{0}")]
    ModelUnavailable(String),
    #[error("method {method} is not allowed here; allowed: {allow}")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("{0}")]
    Model(String),
    #[error("the models are still loading")]
    NotReady,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the request did not finish within {0} ms")]
    Timeout(u64),
    #[error("{0}; retry later")]
    Overloaded(String),
    #[error("the request was cancelled")]
    Cancelled,
    /// No API key, or one that is not (or no longer) accepted.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A foreign `Origin` or `Host` (`error_type` says which).
    #[error("{message}")]
    Forbidden {
        error_type: &'static str,
        message: String,
    },
}

impl ApiError {
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::BadRequest(_) => "bad_request",
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Validation(_) => "validation",
            Self::NotFound(_) => "not_found",
            Self::ModelNotFound { .. } => "model_not_found",
            Self::WrongRole { .. } => "wrong_role",
            Self::NoChatTemplate { .. } => "no_chat_template",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::NoGraph { .. } => "no_graph",
            Self::GraphNotFound { .. } => "graph_not_found",
            Self::NoRoute(_) => "no_route",
            Self::ModelUnavailable(_) => "model_unavailable",
            Self::Model(_) => "model_error",
            Self::NotReady => "not_ready",
            Self::ShuttingDown => "shutting_down",
            Self::Timeout(_) => "timeout",
            Self::Overloaded(_) => "overloaded",
            Self::Cancelled => "cancelled",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden { error_type, .. } => error_type,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::InvalidUtf8 | Self::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_)
            | Self::ModelNotFound { .. }
            | Self::NoGraph { .. }
            | Self::GraphNotFound { .. } => StatusCode::NOT_FOUND,
            Self::NoRoute(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::ModelUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::WrongRole { .. } | Self::NoChatTemplate { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Model(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotReady | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            // What nginx logs for a client that closed its request; rarely seen by anyone.
            Self::Cancelled => StatusCode::from_u16(499).expect("a valid status code"),
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if matches!(
            self.status_code(),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
        }
        if let Self::MethodNotAllowed { allow, .. } = self {
            response.insert_header((header::ALLOW, *allow));
        }
        if let Self::Unauthorized(_) = self {
            // RFC 6750: the scheme a client should answer with.
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"infergraph\""));
        }
        response.json(ErrorBody {
            error: self.to_string(),
            error_type: self.error_type().to_string(),
        })
    }
}

impl From<ActorError> for ApiError {
    fn from(error: ActorError) -> Self {
        Self::from(&error)
    }
}

impl From<&ActorError> for ApiError {
    fn from(error: &ActorError) -> Self {
        match error {
            ActorError::Model(ModelError::InvalidInput(message)) => {
                Self::Validation(message.clone())
            }
            ActorError::Overloaded { .. } => Self::Overloaded(error.to_string()),
            ActorError::Cancelled => Self::Cancelled,
            ActorError::Unreachable { .. } => Self::ModelUnavailable(error.to_string()),
            ActorError::NoRoute { .. } => Self::NoRoute(error.to_string()),
            other => Self::Model(other.to_string()),
        }
    }
}

/// `a` or `an`, for a role's name.
fn article(role: &str) -> &'static str {
    if role.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}
