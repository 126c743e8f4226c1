//! `POST /v1/embeddings`: OpenAI's embeddings API over the embedders, so the official OpenAI
//! clients work against the server.
//!
//! FIDELITY: `input` is a string or a list of strings (token-id inputs are refused, as is
//! `dimensions`: embeddings keep the model's size); `encoding_format` `float` gives lists of numbers,
//! `base64` the little-endian f32 bytes of each embedding, base64-encoded, which is what the
//! official Python client asks for when the caller names no format. Unknown fields are
//! refused by name. Each text is one call on the model's engine, so a request's texts batch
//! with each other and with other requests'.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::api::{
    EmbeddingData, EmbeddingsInput, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsUsage,
    EncodingFormat, RequestErrors,
};
use super::error::ApiError;
use super::model_calls::{find_embedder, run_embeddings};
use super::request::{call_context, read_json, validate_text, TRACE_ID_HEADER};
use super::state::AppState;

/// The most texts one request may carry.
const MAX_INPUTS: usize = 32;

/// OpenAI-compatible embeddings with an embedder.
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai", request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "One embedding per input, in order", body = EmbeddingsResponse,
            headers(("x-trace-id" = String, description = "The request's trace"))),
        RequestErrors))]
pub(super) async fn embeddings(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let begun = Instant::now();
    state.ready_graph()?;
    let body: Map<String, Value> = read_json(&state, &req, payload).await?;
    let request = parse(body)?;
    let embedder = find_embedder(&state, &request.model, "/v1/embeddings")?;
    let texts = match request.input {
        EmbeddingsInput::One(text) => vec![text],
        EmbeddingsInput::Many(texts) => texts,
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(ApiError::Validation(format!(
            "input: {} texts; give 1 to {MAX_INPUTS}",
            texts.len()
        )));
    }
    for (i, text) in texts.iter().enumerate() {
        validate_text(&state, &format!("input[{i}]"), text)?;
    }
    if let Some(asked) = request.dimensions {
        return Err(ApiError::Validation(format!(
            "dimensions: {asked} is not supported: embeddings keep the model's own size \
             (`GET /v1/models` says it)"
        )));
    }
    let (context, _guards) = call_context(&state, &req);
    let (embedded, trace_id) = run_embeddings(&state, &embedder, texts, &context, begun).await?;
    let format = request.encoding_format.unwrap_or(EncodingFormat::Float);
    let prompt_tokens = embedded.iter().map(|e| e.embedding.input_ids.len()).sum();
    let data = embedded
        .into_iter()
        .enumerate()
        .map(|(index, e)| EmbeddingData {
            object: "embedding".into(),
            index,
            embedding: match format {
                EncodingFormat::Float => serde_json::json!(e.embedding.embedding),
                EncodingFormat::Base64 => base64_f32(&e.embedding.embedding).into(),
            },
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((TRACE_ID_HEADER, trace_id))
        .json(EmbeddingsResponse {
            object: "list".into(),
            data,
            model: embedder.name.clone(),
            usage: EmbeddingsUsage {
                prompt_tokens,
                total_tokens: prompt_tokens,
            },
        }))
}

/// Every field `EmbeddingsRequest` reads; anything else is refused by name.
const KNOWN_FIELDS: [&str; 5] = ["model", "input", "encoding_format", "dimensions", "user"];

/// Reads the body field by field, so that every refusal names its field.
fn parse(body: Map<String, Value>) -> Result<EmbeddingsRequest, ApiError> {
    let unknown: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !KNOWN_FIELDS.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::Validation(format!(
            "unknown fields: {}",
            unknown.join(", ")
        )));
    }
    fn field<T: DeserializeOwned>(
        body: &Map<String, Value>,
        name: &str,
    ) -> Result<Option<T>, ApiError> {
        body.get(name)
            .filter(|v| !v.is_null())
            .map(|v| {
                serde_json::from_value(v.clone())
                    .map_err(|e| ApiError::Validation(format!("{name}: {e}")))
            })
            .transpose()
    }
    let required = |name: &str| ApiError::Validation(format!("{name}: missing"));
    Ok(EmbeddingsRequest {
        model: field(&body, "model")?.ok_or_else(|| required("model"))?,
        input: field(&body, "input")?.ok_or_else(|| required("input"))?,
        encoding_format: field(&body, "encoding_format")?,
        dimensions: field(&body, "dimensions")?,
        user: field(&body, "user")?,
    })
}

/// The little-endian bytes of `values`, in standard base64 with padding (what OpenAI sends,
/// and its clients decode with `numpy.frombuffer(base64.b64decode(..), dtype=float32)`).
fn base64_f32(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64_f32;

    #[test]
    fn base64_matches_the_standard_encoding_of_the_little_endian_bytes() {
        // 1.0f32 = 00 00 80 3f; 1.0, 2.0 = 00 00 80 3f 00 00 00 40.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, 2.0]), "AACAPwAAAEA=");
        assert_eq!(base64_f32(&[]), "");
    }
}
