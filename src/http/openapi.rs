//! `GET /openapi.json`, generated from the API types and route annotations; `GET /docs`, a
//! page that renders it; and `GET /`, a page to try the graph. The pages are embedded in the
//! binary and load nothing from elsewhere.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};
use utoipa::OpenApi;

use super::state::AppState;
use crate::config::Limits;

use super::{handlers, metrics, model_routes, openai, stream};

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
        model_routes::generate,
        model_routes::generate_stream,
        model_routes::classify,
        openai::completions,
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
pub async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(document(&state.config.limits))
}

/// The document, with what the types alone cannot say: this server's configured limits,
/// and the rules that join several fields. Everything the schema allows, the server takes
/// (short of a prompt too long in tokens for the model, which only its tokenizer can tell).
pub fn document(limits: &Limits) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    let text = json!({
        "type": "string",
        "minLength": 1,
        "maxLength": limits.max_input_chars,
        "pattern": r"\S",
    });
    let schemas = &mut doc["components"]["schemas"];
    for (schema, field) in [
        ("GenerationRequest", "text"),
        ("GenerateScoreRequest", "original_sentence"),
    ] {
        schemas[schema]["properties"][field] = text.clone();
    }
    let nullable = |mut schema: Value| {
        schema["type"] = json!([schema["type"], "null"]);
        schema
    };
    let classify = &mut schemas["ClassifyRequest"];
    classify["properties"]["text"] = nullable(text.clone());
    classify["properties"]["text_pair"] = nullable(text.clone());
    classify["properties"]["texts"]["items"] = text.clone();
    // Exactly one of `text` and `texts` (a null one counts as absent).
    classify["oneOf"] = json!([
        {"required": ["text"], "properties": {"text": {"type": "string"}}},
        {"required": ["texts"], "properties": {"texts": {"type": "array"}}},
    ]);
    let generation = &mut schemas["GenerationRequest"];
    generation["properties"]["max_new_tokens"]["maximum"] = json!(limits.max_new_tokens);
    generation["properties"]["max_length"]["maximum"] =
        json!(limits.max_input_tokens + limits.max_new_tokens);
    schemas["CompletionRequest"]["properties"]["max_tokens"]["maximum"] =
        json!(limits.max_new_tokens);
    let prompt = &mut schemas["Prompt"];
    prompt["oneOf"][0] = text.clone();
    prompt["oneOf"][1]["items"] = text.clone();
    prompt["oneOf"][1]["minItems"] = json!(1);
    prompt["oneOf"][1]["maxItems"] = json!(16);
    doc["paths"]["/classify_generated_texts"]["post"]["requestBody"]["content"]["text/plain"]
        ["schema"] = text;
    doc
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
