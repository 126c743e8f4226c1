//! The route table: every path the server answers, with its handler. The router is built
//! from it, and it is the only module that points at every route module (and at
//! `openapi.rs`, which documents the same handlers).

use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    for (path, allow, route) in table() {
        cfg.service(resource(path, allow, route));
    }
    cfg.default_service(web::to(not_found));
}

/// Every route the server answers: (path, method, handler). The router is built from this
/// list and nothing else, so `paths` is what the route-walking tests can trust.
fn table() -> Vec<(&'static str, &'static str, actix_web::Route)> {
    use super::{chat, embeddings, handlers, metrics, model_routes, openai, openapi, stream};
    vec![
        ("/openapi.json", "GET", web::get().to(openapi::openapi_json)),
        ("/docs", "GET", web::get().to(openapi::docs)),
        ("/", "GET", web::get().to(openapi::page)),
        (
            "/classify_generated_texts",
            "POST",
            web::post().to(handlers::classify_generated_texts),
        ),
        (
            "/generate_score",
            "POST",
            web::post().to(handlers::generate_score),
        ),
        ("/v1/graph", "POST", web::post().to(handlers::graph)),
        ("/v1/graph/stream", "POST", web::post().to(stream::sse)),
        ("/v1/graph/ws", "GET", web::get().to(stream::websocket)),
        ("/v1/graphs", "GET", web::get().to(handlers::graphs)),
        (
            "/v1/graphs/{name}",
            "POST",
            web::post().to(handlers::named_graph),
        ),
        (
            "/v1/graphs/{name}/stream",
            "POST",
            web::post().to(stream::named_sse),
        ),
        ("/v1/models", "GET", web::get().to(handlers::models)),
        (
            "/v1/models/{name}/generate",
            "POST",
            web::post().to(model_routes::generate),
        ),
        (
            "/v1/models/{name}/generate/stream",
            "POST",
            web::post().to(model_routes::generate_stream),
        ),
        (
            "/v1/models/{name}/chat",
            "POST",
            web::post().to(model_routes::chat),
        ),
        (
            "/v1/models/{name}/chat/stream",
            "POST",
            web::post().to(model_routes::chat_stream),
        ),
        (
            "/v1/models/{name}/classify",
            "POST",
            web::post().to(model_routes::classify),
        ),
        (
            "/v1/models/{name}/embed",
            "POST",
            web::post().to(model_routes::embed),
        ),
        (
            "/v1/embeddings",
            "POST",
            web::post().to(embeddings::embeddings),
        ),
        (
            "/v1/completions",
            "POST",
            web::post().to(openai::completions),
        ),
        (
            "/v1/chat/completions",
            "POST",
            web::post().to(chat::chat_completions),
        ),
        ("/v1/engines", "GET", web::get().to(handlers::engines)),
        ("/metrics", "GET", web::get().to(metrics::metrics)),
        ("/v1/traces", "GET", web::get().to(handlers::traces)),
        ("/v1/traces/{id}", "GET", web::get().to(handlers::trace)),
        ("/livez", "GET", web::get().to(handlers::livez)),
        ("/readyz", "GET", web::get().to(handlers::readyz)),
        ("/healthz", "GET", web::get().to(handlers::healthz)),
    ]
}

/// Each route's path and method, as the router serves them.
pub fn paths() -> Vec<(&'static str, &'static str)> {
    table()
        .into_iter()
        .map(|(path, method, _)| (path, method))
        .collect()
}

/// `path`, answered by `route`; any other method gets 405 with `Allow: allow`.
fn resource(path: &str, allow: &'static str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(move |req: HttpRequest| async move {
            Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
                method: req.method().to_string(),
                allow,
            })
        }))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "{} {}",
        req.method(),
        req.path()
    )))
}
