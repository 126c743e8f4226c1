//! Which pages and which host names may reach the server: the browser's side of who may call.
//!
//! INVARIANTS:
//! - Runs before routing and before the key check (a CORS preflight carries no key), so
//!   every route, the websocket upgrade included, is covered without doing anything.
//! - `Origin`: a request that carries one is refused (403 `forbidden_origin`) unless it is
//!   the server's own origin (the scheme and the `Host` it was called by) or listed in
//!   `[auth] allowed_origins`. Browsers apply no CORS to websockets and send simple
//!   cross-site POSTs without asking, so this, not CORS, is what stops a foreign page.
//!   Requests without `Origin` (curl, SDKs, same-origin GETs) are left to the key check.
//! - `Host`: on a server bound to loopback (or with `[auth] allowed_hosts` set) the host
//!   name must be a loopback name or listed, so a DNS-rebinding page, whose requests name
//!   its own domain, reads nothing (403 `forbidden_host`).
//! - CORS: only listed origins get `Access-Control-Allow-Origin`, and only for themselves
//!   (never `*`); a preflight from one is answered here with 204.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpResponse, ResponseError};

use super::auth::is_loopback;
use super::error::ApiError;
use crate::config::Config;

/// What a listed origin's page may send across origins.
const CORS_METHODS: &str = "GET, POST";
const CORS_HEADERS: &str =
    "authorization, content-type, x-api-key, x-request-id, traceparent, x-infergraph-deadline-ms";

/// The allow-lists, settled at start.
pub struct Origins {
    /// Lower-case `scheme://host[:port]`, as browsers send `Origin`.
    allowed_origins: Vec<String>,
    /// Lower-case host names (no port); `None` when any host is accepted.
    allowed_hosts: Option<Vec<String>>,
}

impl Origins {
    pub fn from_config(config: &Config) -> Self {
        let settings = &config.auth;
        let listed: Vec<String> = settings
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let allowed_hosts = (is_loopback(&config.server.host) || !listed.is_empty()).then(|| {
            let loopback = ["localhost", "127.0.0.1", "[::1]"].map(String::from);
            loopback.into_iter().chain(listed).collect()
        });
        Self {
            allowed_origins: settings
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            allowed_hosts,
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let Some(allowed) = &self.allowed_hosts else {
            return true;
        };
        let name = host_name(host).to_ascii_lowercase();
        allowed.contains(&name) || is_loopback(&name)
    }

    fn is_listed(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// `host` without its port: `example.com:80` → `example.com`, `[::1]:3000` → `[::1]`.
fn host_name(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

/// The middleware: refuses foreign hosts and origins, answers listed origins' preflights.
pub async fn check_origin(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let origins = request
        .app_data::<web::Data<Origins>>()
        .cloned()
        .expect("serve registers Origins");
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    if let Some(host) = &host {
        if !origins.host_allowed(host) {
            let error = ApiError::Forbidden {
                error_type: "forbidden_host",
                message: format!(
                    "host {host:?} is not one this server answers to; add it to [auth] allowed_hosts"
                ),
            };
            return Ok(request
                .into_response(error.error_response())
                .map_into_right_body());
        }
    }
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("").to_string())
    else {
        return Ok(next.call(request).await?.map_into_left_body());
    };
    let scheme = request.connection_info().scheme().to_string();
    let own = host.is_some_and(|h| origin.eq_ignore_ascii_case(&format!("{scheme}://{h}")));
    let listed = origins.is_listed(&origin);
    if !own && !listed {
        let error = ApiError::Forbidden {
            error_type: "forbidden_origin",
            message: format!(
                "pages from {origin:?} may not call this server; add the origin to [auth] allowed_origins"
            ),
        };
        return Ok(request
            .into_response(error.error_response())
            .map_into_right_body());
    }
    if !listed {
        return Ok(next.call(request).await?.map_into_left_body());
    }
    let value = header::HeaderValue::from_str(&origin).expect("it came from a header");
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let response = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, value))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, CORS_METHODS))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .insert_header((header::VARY, "Origin"))
            .finish();
        return Ok(request.into_response(response).map_into_right_body());
    }
    let mut response = next.call(request).await?;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        header::HeaderValue::from_static("x-request-id, retry-after, www-authenticate"),
    );
    headers.append(header::VARY, header::HeaderValue::from_static("Origin"));
    Ok(response.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(host: &str, extra: &str) -> Origins {
        let toml = format!(
            "[server]\nhost = \"{host}\"\n{extra}\n[[models]]\nname = \"g\"\npath = \"g\"\nrole = \"generator\"\n"
        );
        Origins::from_config(&Config::from_toml(&toml, std::path::Path::new(".")).unwrap())
    }

    #[test]
    fn a_loopback_server_answers_loopback_names_and_listed_ones_only() {
        let local = origins("127.0.0.1", "");
        for host in [
            "127.0.0.1:3000",
            "localhost:3000",
            "LOCALHOST",
            "[::1]:3000",
            "127.0.0.1",
        ] {
            assert!(local.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example:3000",
            "evil.example",
            "127.0.0.1.evil.example:3000",
        ] {
            assert!(!local.host_allowed(host), "{host}");
        }
        let listed = origins("127.0.0.1", "[auth]\nallowed_hosts = [\"box.lan\"]");
        assert!(listed.host_allowed("box.lan:3000") && !listed.host_allowed("other.lan"));
        let open = origins("0.0.0.0", "[auth]\nmode = \"none\"");
        assert!(open.host_allowed("anything.example:3000"));
    }

    #[test]
    fn host_names_lose_their_port_only() {
        assert_eq!(host_name("example.com:80"), "example.com");
        assert_eq!(host_name("example.com"), "example.com");
        assert_eq!(host_name("[::1]:3000"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
    }
}
