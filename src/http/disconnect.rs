//! Noticing that a client has gone, which actix-web does not tell handlers (actix-web
//! #3462, #3029): each connection keeps a duplicate of its socket, and a request's
//! watcher polls it until the request ends. A peer that closed its side (end of stream,
//! plain or under TLS) is seen; the watcher then cancels the request, and the engines drop
//! its work.

use std::any::Any;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use actix_web::HttpRequest;

use crate::engine::CancelToken;

/// How often a waiting request checks on its client.
const POLL: Duration = Duration::from_millis(20);

/// A duplicate of the connection's socket, closed when the connection's data is dropped.
#[derive(Clone)]
struct PeerSocket(Arc<OwnedFd>);

/// `HttpServer::on_connect` hook: remembers each TCP connection's socket, under TLS too.
pub fn remember_socket(connection: &dyn Any, data: &mut Extensions) {
    let tcp = connection.downcast_ref::<TcpStream>().or_else(|| {
        connection
            .downcast_ref::<TlsStream<TcpStream>>()
            .map(|tls| tls.get_ref().0)
    });
    if let Some(stream) = tcp {
        // SAFETY: `dup` returns a new descriptor we own (or -1, which we skip).
        let fd = unsafe { libc::dup(stream.as_raw_fd()) };
        if fd >= 0 {
            // SAFETY: `fd` is a freshly duplicated, open descriptor owned by nobody else.
            data.insert(PeerSocket(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) })));
        }
    }
}

/// Cancels `cancel` if the client of `req` disconnects before the returned guard drops.
pub fn watch(req: &HttpRequest, cancel: CancelToken) -> Option<WatchGuard> {
    let socket = req.conn_data::<PeerSocket>()?.clone();
    let task = actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(POLL).await;
            if cancel.is_cancelled() {
                return;
            }
            if peer_closed(&socket.0) {
                tracing::info!("the client disconnected; cancelling its request");
                cancel.cancel();
                return;
            }
        }
    });
    Some(WatchGuard(task))
}

/// Stops the watcher when the request is over.
pub struct WatchGuard(actix_web::rt::task::JoinHandle<()>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether the peer has closed the connection: the socket reports the peer's end of
/// stream (`POLLRDHUP`, seen even with unread bytes before it, such as a TLS close alert),
/// a hang-up or an error.
fn peer_closed(socket: &OwnedFd) -> bool {
    let mut poll = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd on a descriptor we own; a zero timeout never blocks.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}
