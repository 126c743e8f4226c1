//! `GET /openapi.json`, generated from the API types and route annotations; `GET /docs`, a
//! page that renders it; and `GET /`, a page to try the graph. The pages are embedded in the
//! binary and load nothing from elsewhere.

use actix_web::HttpResponse;
use utoipa::OpenApi;

use super::{handlers, metrics, stream};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "infergraph",
        description = "An inference graph: GPT-2 generators feeding a BERT classifier. \
                       Every error body is `{\"error\", \"error_type\"}`."
    ),
    paths(
        handlers::classify_generated_texts,
        handlers::generate_score,
        handlers::graph,
        stream::sse,
        stream::websocket,
        handlers::models,
        handlers::engines,
        handlers::traces,
        handlers::trace,
        metrics::metrics,
        handlers::livez,
        handlers::readyz,
        handlers::healthz,
        openapi_json,
        docs,
        page,
    )
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "The API reference, rendered from /openapi.json", content_type = "text/html", body = String)))]
pub async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("../../assets/docs.html"))
}

#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, description = "A page to try the graph: streams, scores and the waterfall", content_type = "text/html", body = String)))]
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("../../assets/index.html"))
}
