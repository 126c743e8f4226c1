//! Server-Sent Events responses, as the streaming routes send them.

use actix_web::{web, HttpResponse};
use tokio::sync::mpsc;

/// A `text/event-stream` response writing each of `events` as `frame` renders it, until the
/// sender is gone. `guards` live as long as the body: dropping it (the client is gone)
/// drops them.
pub(super) fn event_stream<E: 'static, G: 'static>(
    events: mpsc::UnboundedReceiver<E>,
    guards: G,
    frame: fn(&E) -> String,
) -> HttpResponse {
    let body =
        futures_util::stream::unfold((events, guards), move |(mut events, guards)| async move {
            let event = events.recv().await?;
            Some((
                Ok::<_, actix_web::Error>(web::Bytes::from(frame(&event))),
                (events, guards),
            ))
        });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(body)
}
