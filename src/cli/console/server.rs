//! The HTTP server: `tiny_http` accepts, one thread serves each request
//! (at most [`MAX_IN_FLIGHT`] at once; beyond, 503), [`Console::handle`]
//! decides, and the reply is written back with headers that keep the page
//! to itself (no framing, no sniffing, a content security policy that
//! allows only the console's own script and style). An event stream takes
//! the raw connection over and writes events as they come
//! ([`super::relay::stream`]).

use super::api::{Console, HttpRequest, MAX_BODY, Reply};
use crate::emg::{Emg, Module, phase};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests served at once (event streams included).
pub const MAX_IN_FLIGHT: usize = 256;

/// A usage error of `moverctl console`.
pub fn usage(message: &str) -> Emg {
    Emg::new(
        Module::Client,
        phase::CONNECT,
        crate::control::cause::BAD_ARGUMENTS,
        format!("moverctl console: {message}"),
        "See moverctl console --help.",
    )
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

/// Listens on `listen` and serves `console` until the process ends.
pub fn serve(listen: &str, console: Arc<Console>) -> Result<(), Emg> {
    let server = tiny_http::Server::http(listen)
        .map_err(|e| usage(&format!("cannot listen on {listen}: {e}")))?;
    if let Some(addr) = server.server_addr().to_ip() {
        let _ = console.bound.set(addr);
        println!("CONSOLE http://{addr}/");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let in_flight = Arc::new(AtomicUsize::new(0));
    for request in server.incoming_requests() {
        if in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let _ = request.respond(tiny_http::Response::empty(503));
            continue;
        }
        let (console, in_flight) = (console.clone(), in_flight.clone());
        let spawned = std::thread::Builder::new()
            .name("console request".into())
            .spawn(move || {
                serve_one(&console, request);
                in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            log::error!("console: no thread for a request: {e}");
        }
    }
    Ok(())
}

fn serve_one(console: &Console, mut request: tiny_http::Request) {
    let get = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_string())
    };
    let mut req = HttpRequest {
        method: request.method().as_str().to_string(),
        url: request.url().to_string(),
        cookie: get("Cookie"),
        content_type: get("Content-Type"),
        origin: get("Origin"),
        host: get("Host"),
        last_event_id: get("Last-Event-ID"),
        body: Vec::new(),
    };
    if request.body_length().unwrap_or(0) > MAX_BODY {
        let _ = request.respond(tiny_http::Response::empty(413));
        return;
    }
    let _ = request
        .as_reader()
        .take(MAX_BODY as u64)
        .read_to_end(&mut req.body);
    let reply = console.handle(&req);
    log::debug!("console: {} {} -> {}", req.method, req.url, reply.status());
    let security = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        (
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
        ("Cache-Control", "no-store"),
    ];
    let mut response = match reply {
        Reply::Events(since) => {
            let mut out = request.into_writer();
            let _ = super::relay::stream(
                &console.agents.hub,
                since,
                super::relay::KEEPALIVE,
                &mut out,
            );
            return;
        }
        Reply::Asset(kind, text) => {
            tiny_http::Response::from_string(text).with_header(header("Content-Type", kind))
        }
        Reply::Json(status, body, cookie) => {
            let mut r = tiny_http::Response::from_string(body.to_string())
                .with_status_code(status)
                .with_header(header("Content-Type", "application/json"));
            if let Some(c) = cookie {
                r.add_header(header("Set-Cookie", &c));
            }
            r
        }
    };
    for (k, v) in security {
        response.add_header(header(k, v));
    }
    let _ = request.respond(response);
}
