//! A fair share per client: one client's burst answers 429 to that client, not to everyone.
//!
//! INVARIANTS:
//! - A client is its API key when auth is on (told by `auth`, as a digest prefix: the key
//!   itself never reaches a label), else its address. Graph nodes calling with the node key
//!   are not limited: one carries many users, each held to a share where they came in.
//! - With `[auth] max_in_flight_per_client` set, a client holds at most that many requests
//!   at once, queued or running; the next gets 429 `overloaded` with `Retry-After` at once,
//!   before any work, while other clients are admitted as before. A request holds its place
//!   until its answer is fully sent (a stream's last event, a websocket's close), so a
//!   streaming client cannot hold more than its share either.
//! - Runs before routing (every route but the public probes counts), after the key check.
//! - `/metrics` counts admitted and refused requests per key; clients known by address are
//!   counted together (`client="address"`), so strangers cannot grow the series without bound.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{web, Error, HttpMessage, ResponseError};

use super::auth::{Client, PUBLIC};
use super::error::ApiError;
use crate::config::Config;
use crate::telemetry::metrics::Exposition;

/// Requests in flight per client, and what was admitted and refused.
pub struct Fairness {
    /// 0: no limit.
    limit: usize,
    in_flight: Mutex<HashMap<Client, usize>>,
    /// (client label, `admitted` or `refused`) → requests.
    counts: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Fairness {
    pub fn from_config(config: &Config) -> Self {
        Self {
            limit: config.auth.max_in_flight_per_client,
            in_flight: Mutex::default(),
            counts: Mutex::default(),
        }
    }

    /// A place for `client`, or `None` when it holds its share already.
    fn admit(fairness: &web::Data<Self>, client: Client) -> Option<Permit> {
        let admitted = {
            let mut in_flight = fairness.in_flight.lock().expect("fairness lock");
            let held = in_flight.entry(client.clone()).or_insert(0);
            let free = fairness.limit == 0 || client == Client::Node || *held < fairness.limit;
            if free {
                *held += 1;
            }
            free
        };
        let outcome = if admitted { "admitted" } else { "refused" };
        *fairness
            .counts
            .lock()
            .expect("fairness lock")
            .entry((client.label().to_string(), outcome))
            .or_insert(0) += 1;
        admitted.then(|| Permit {
            fairness: fairness.clone(),
            client,
        })
    }

    /// Per-client counters and places held now, for `/metrics`.
    pub fn expose(&self, out: &mut Exposition) {
        out.family(
            "infergraph_client_requests_total",
            "counter",
            "Requests by client (an API key's digest prefix, `node`, or `address` for all \
             clients without a key) and outcome (admitted, or refused past the client's share).",
        );
        for ((client, outcome), count) in self.counts.lock().expect("fairness lock").iter() {
            out.sample(
                "infergraph_client_requests_total",
                &[("client", client), ("outcome", outcome)],
                *count as f64,
            );
        }
        out.family(
            "infergraph_client_in_flight",
            "gauge",
            "Requests each client holds now, queued or running (clients without a key together).",
        );
        let mut held: BTreeMap<&str, usize> = BTreeMap::new();
        let in_flight = self.in_flight.lock().expect("fairness lock");
        for (client, count) in in_flight.iter() {
            *held.entry(client.label()).or_insert(0) += count;
        }
        for (client, count) in held {
            out.sample(
                "infergraph_client_in_flight",
                &[("client", client)],
                count as f64,
            );
        }
    }
}

/// A client's place, given back when the response's body is done or dropped.
struct Permit {
    fairness: web::Data<Fairness>,
    client: Client,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut in_flight = self.fairness.in_flight.lock().expect("fairness lock");
        if let Some(held) = in_flight.get_mut(&self.client) {
            *held -= 1;
            // Clients come and go; only those holding a place are remembered.
            if *held == 0 {
                in_flight.remove(&self.client);
            }
        }
    }
}

/// A response body that holds its client's place until it is sent or dropped.
pub struct Held {
    body: BoxBody,
    _permit: Permit,
}

impl MessageBody for Held {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

/// The middleware: admits a request within its client's share, or answers 429.
pub async fn fair_share(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<Held, BoxBody>>, Error> {
    let fairness = request
        .app_data::<web::Data<Fairness>>()
        .cloned()
        .expect("serve registers Fairness");
    if PUBLIC.contains(&request.path()) {
        let response = next.call(request).await?.map_into_boxed_body();
        return Ok(response.map_into_right_body());
    }
    let client = request.extensions().get::<Client>().cloned();
    let client = client.unwrap_or_else(|| {
        Client::Address(
            request
                .peer_addr()
                .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip()),
        )
    });
    let Some(permit) = Fairness::admit(&fairness, client) else {
        let error = ApiError::Overloaded(format!(
            "this client holds {} requests already, its share of this server",
            fairness.limit
        ));
        let response = request
            .into_response(error.error_response())
            .map_into_boxed_body();
        return Ok(response.map_into_right_body());
    };
    let response = next.call(request).await?;
    Ok(response
        .map_body(|_, body| Held {
            body: body.boxed(),
            _permit: permit,
        })
        .map_into_left_body())
}
