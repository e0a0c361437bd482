//! The console's HTTP routes: which requests are served, to whom, and the
//! checks every request passes first. Independent of the HTTP crate: the
//! server ([`super::server`]) turns a request into an [`HttpRequest`] and
//! writes the [`Reply`] back, so routing and authentication are tested
//! here without a socket.
//!
//! | route | method | session | what |
//! |---|---|---|---|
//! | `/`, `/console.js`, `/console-policy.js`, `/console.css` | GET | no | the page (no data in it) |
//! | `/api/login` | GET | no | `{"per_agent", "agents"}`: one token, or one per agent (their addresses) |
//! | `/api/login` | POST | no | `{"token"}` or `{"tokens": {address: token}}` → session cookie, or 401 |
//! | `/api/logout` | POST | no | ends the session |
//! | `/api/session` | GET | yes | the agents' addresses, the latest event number |
//! | `/api/events` | GET | yes | server-sent events ([`super::relay`]) |
//! | `/api/hosts`, `/api/lpars`, `/api/history`, `/api/status` | GET | yes | reads ([`super::handlers`]) |
//! | `/api/policy`, `/api/policy/{run,stop,resume}` | GET, POST | yes | the policy screen ([`super::policy`]) |
//! | `/api/lpar/{create,activate,deactivate,delete}`, `/api/validate`, `/api/migrate`, `/api/extend`, `/api/cancel`, `/api/recover`, `/api/rollback-wwn`, `/api/connectivity`, `/api/rehearse` | POST | yes | one agent request each |
//!
//! Order of the checks: the `Host` header (DNS rebinding), then for a POST
//! its `Content-Type` (`application/json`, which a cross-site form cannot
//! send without a preflight) and `Origin` (when sent, this console's own),
//! then the session for every `/api/` route but login and logout, and only
//! then whether the route exists: without a session every `/api/` path
//! answers 401 alike.

use super::agents::Agents;
use super::auth::{Given, Sessions, set_cookie};
pub use super::error::{ApiError, console_error};

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The page and its script and style, embedded in the binary.
pub const INDEX_HTML: &str = include_str!("assets/index.html");
/// The page's script.
pub const CONSOLE_JS: &str = include_str!("assets/console.js");
/// The policy screen's script.
pub const POLICY_JS: &str = include_str!("assets/console-policy.js");
/// The page's style.
pub const CONSOLE_CSS: &str = include_str!("assets/console.css");

/// Largest request body read (a login or a command's arguments).
pub const MAX_BODY: usize = 64 << 10;

/// One HTTP request, as much of it as the console reads.
#[derive(Clone, Debug, Default)]
pub struct HttpRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query (`/api/history?agent=…`).
    pub url: String,
    /// The `Cookie` header.
    pub cookie: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The `Origin` header.
    pub origin: Option<String>,
    /// The `Host` header.
    pub host: Option<String>,
    /// The `Last-Event-ID` header (an event stream reconnecting).
    pub last_event_id: Option<String>,
    /// The body (at most [`MAX_BODY`] bytes).
    pub body: Vec<u8>,
}

/// What to send back.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// A JSON body with this status, and a `Set-Cookie` when given.
    Json(u16, Value, Option<String>),
    /// An embedded asset: content type and text.
    Asset(&'static str, &'static str),
    /// The event stream, from after this event number.
    Events(u64),
}

impl Reply {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Reply::Json(s, _, _) => *s,
            _ => 200,
        }
    }
}

impl From<ApiError> for Reply {
    fn from(ApiError(status, e): ApiError) -> Reply {
        Reply::Json(status, json!({"error": e, "emg": e.to_string()}), None)
    }
}

fn refuse(status: u16, message: &str, action: &str) -> Reply {
    ApiError(status, console_error(message, action)).into()
}

/// The console: its agents, sessions and event hub.
pub struct Console {
    /// Its agents and their relayed events.
    pub agents: Agents,
    /// Who is logged in.
    pub sessions: Sessions,
    /// The policy the console runs (one at a time).
    pub policy: super::policy::Runner,
    /// The address the server is bound to (set once it listens).
    pub bound: OnceLock<std::net::SocketAddr>,
}

impl Console {
    /// A console for `agents` (address, checked, and its token).
    pub fn new(agents: Vec<(String, String)>) -> Console {
        Console {
            agents: Agents::new(&agents),
            sessions: Sessions::new(agents),
            policy: super::policy::Runner::default(),
            bound: OnceLock::new(),
        }
    }

    /// Whether the `Host` header names this console: its bound address,
    /// or a loopback name on its port. Unbound or unspecified (0.0.0.0):
    /// any host.
    fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(bound) = self.bound.get() else {
            return true;
        };
        if bound.ip().is_unspecified() {
            return true;
        }
        let Some(host) = host else {
            return false;
        };
        let Some((name, port)) = host.rsplit_once(':') else {
            return false;
        };
        port.parse::<u16>().ok() == Some(bound.port())
            && (name == "localhost"
                || name == "[::1]"
                || name == "127.0.0.1"
                || name.trim_matches(['[', ']']) == bound.ip().to_string())
    }

    /// Serves one request.
    pub fn handle(&self, req: &HttpRequest) -> Reply {
        if !self.host_allowed(req.host.as_deref()) {
            return refuse(
                403,
                &format!(
                    "Host '{}' is not this console",
                    req.host.as_deref().unwrap_or("")
                ),
                "Open the console at the address it listens on (moverctl console --listen).",
            );
        }
        let (path, query) = match req.url.split_once('?') {
            Some((p, q)) => (p, parse_query(q)),
            None => (req.url.as_str(), HashMap::new()),
        };
        if req.method == "POST" {
            let json = req
                .content_type
                .as_deref()
                .is_some_and(|c| c.split(';').next().unwrap_or("").trim() == "application/json");
            if !json {
                return refuse(
                    415,
                    "a POST must carry Content-Type: application/json",
                    "Send the arguments as a JSON object.",
                );
            }
            if let Some(origin) = &req.origin
                && Some(origin.as_str())
                    != req.host.as_ref().map(|h| format!("http://{h}")).as_deref()
            {
                return refuse(
                    403,
                    &format!("Origin '{origin}' is not this console"),
                    "Use the console's own page.",
                );
            }
        }
        match (req.method.as_str(), path) {
            ("GET", "/" | "/index.html") => {
                return Reply::Asset("text/html; charset=utf-8", INDEX_HTML);
            }
            ("GET", "/console.js") => {
                return Reply::Asset("text/javascript; charset=utf-8", CONSOLE_JS);
            }
            ("GET", "/console-policy.js") => {
                return Reply::Asset("text/javascript; charset=utf-8", POLICY_JS);
            }
            ("GET", "/console.css") => return Reply::Asset("text/css; charset=utf-8", CONSOLE_CSS),
            ("GET", "/api/login") => return self.login_form(),
            ("POST", "/api/login") => return self.login(&req.body),
            ("POST", "/api/logout") => {
                self.sessions.logout(req.cookie.as_deref());
                return Reply::Json(200, json!({}), Some(set_cookie(None)));
            }
            _ => {}
        }
        if !path.starts_with("/api/") {
            return refuse(404, &format!("no page {path}"), "Open the console at /.");
        }
        if !self.sessions.check(req.cookie.as_deref()) {
            return refuse(
                401,
                "not logged in",
                "Log in with the agents' token (the file moverctl console --token-file names).",
            );
        }
        let route = &path["/api/".len()..];
        match (req.method.as_str(), route) {
            ("GET", "session") => Reply::Json(
                200,
                json!({
                    "agents": self.agents.links.iter().map(|l| l.address.clone()).collect::<Vec<_>>(),
                    "latest_event": self.agents.hub.latest(),
                }),
                None,
            ),
            ("GET", "events") => {
                let since = req
                    .last_event_id
                    .as_deref()
                    .or(query.get("since").map(String::as_str))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| self.agents.hub.latest());
                Reply::Events(since)
            }
            ("GET", "policy") => Reply::Json(200, self.policy.view(), None),
            ("POST", r) if super::policy::COMMANDS.contains(&r) => match object(&req.body) {
                Some(body) => {
                    self.answer(super::policy::command(&self.policy, &self.agents, r, &body))
                }
                None => not_object(),
            },
            ("GET", r) if super::handlers::READS.contains(&r) => {
                self.answer(super::handlers::read(&self.agents, r, &query))
            }
            ("POST", r) if super::handlers::COMMANDS.contains(&r) => match object(&req.body) {
                Some(body) => self.answer(super::handlers::command(&self.agents, r, &body)),
                None => not_object(),
            },
            (_, r)
                if super::handlers::READS.contains(&r)
                    || super::handlers::COMMANDS.contains(&r)
                    || super::policy::COMMANDS.contains(&r)
                    || r == "session"
                    || r == "policy"
                    || r == "events" =>
            {
                refuse(
                    405,
                    &format!("{} is not allowed on {path}", req.method),
                    "See the console's API table (src/cli/console/api.rs).",
                )
            }
            _ => refuse(
                404,
                &format!("no API route {path}"),
                "See the console's API table (src/cli/console/api.rs).",
            ),
        }
    }

    fn answer(&self, result: Result<Value, ApiError>) -> Reply {
        match result {
            Ok(v) => Reply::Json(200, v, None),
            Err(e) => e.into(),
        }
    }

    /// What the login form asks: one token, or one per agent (then the
    /// agents' addresses, to label each field).
    fn login_form(&self) -> Reply {
        let per_agent = self.sessions.per_agent();
        let agents: Vec<&str> = if per_agent {
            self.agents
                .links
                .iter()
                .map(|l| l.address.as_str())
                .collect()
        } else {
            Vec::new()
        };
        Reply::Json(200, json!({"per_agent": per_agent, "agents": agents}), None)
    }

    fn login(&self, body: &[u8]) -> Reply {
        let v = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
        let given = Given {
            token: v.get("token").and_then(Value::as_str).map(str::to_string),
            tokens: v
                .get("tokens")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, t)| Some((k.clone(), t.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
        };
        match self.sessions.login(&given) {
            Some(id) => Reply::Json(200, json!({"ok": true}), Some(set_cookie(Some(&id)))),
            None => {
                // A wrong token costs the guesser time.
                std::thread::sleep(std::time::Duration::from_millis(300));
                refuse(
                    401,
                    if self.sessions.per_agent() {
                        "wrong token for at least one agent"
                    } else {
                        "wrong token"
                    },
                    "Use each agent's token (the files moverctl console --token-file or its \
                     --config [[agents]] token_file name).",
                )
            }
        }
    }
}

fn object(body: &[u8]) -> Option<Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

fn not_object() -> Reply {
    refuse(
        400,
        "the body is not a JSON object",
        "Send the arguments as a JSON object.",
    )
}

/// `a=1&b=x%3Ay` → {a: 1, b: x:y}.
pub fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(b[i + 1]) << 4 | hex(b[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[path = "api_tests.rs"]
pub(super) mod tests;
