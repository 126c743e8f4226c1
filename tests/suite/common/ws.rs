//! A real websocket client for the graph's `/v1/graph/ws`.

use awc::ws;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

use super::server::TestServer;

pub type Socket = actix_codec::Framed<awc::BoxedSocket, ws::Codec>;

pub async fn connect(server: &TestServer) -> Socket {
    let (response, socket) = awc::Client::new()
        .ws(server.url("/v1/graph/ws"))
        .max_frame_size(1 << 22)
        .connect()
        .await
        .expect("the websocket upgrade succeeds");
    assert_eq!(response.status().as_u16(), 101);
    socket
}

pub async fn send(socket: &mut Socket, value: Value) {
    socket
        .send(ws::Message::Text(value.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON text frame (answering nothing else).
pub async fn next_event(socket: &mut Socket) -> Value {
    loop {
        match socket
            .next()
            .await
            .expect("the connection stays open")
            .unwrap()
        {
            ws::Frame::Text(bytes) => return serde_json::from_slice(&bytes).unwrap(),
            ws::Frame::Ping(_) | ws::Frame::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Every event of request `id` up to its `done` or `error`.
pub async fn events_until_last(socket: &mut Socket, id: &str) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let event = next_event(socket).await;
        if event["id"] != id {
            continue;
        }
        let last = event["type"] == "done" || event["type"] == "error";
        events.push(event);
        if last {
            return events;
        }
    }
}
