//! The messages of the management protocol and their one decoder of
//! outside input, [`decode_request`].
//!
//! ```text
//! request  {"id":<u64>,"execute":"<command>","arguments":{…}}   arguments optional
//! reply    {"id":<u64>,"return":{…}}  |  {"id":<u64|null>,"error":<Emg>}
//! event    {"event":"<NAME>","data":{…},"timestamp_ns":<u64>}
//! greeting {"greeting":{"agent":…,"build":{…},"protocol":1}}
//! ```

use super::MAX_LINE;
use super::{COMMANDS, Command, Event};
use crate::build_identity::BuildIdentity;
use crate::emg::{Emg, Module, phase};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Causes of the management protocol's own errors (op1's `CCCCCCCC`).
pub mod cause {
    /// A line that is not a request.
    pub const MALFORMED: u32 = 0x10;
    /// A line over `MAX_LINE` bytes.
    pub const OVERSIZED: u32 = 0x11;
    /// A command this agent does not know.
    pub const UNKNOWN_COMMAND: u32 = 0x12;
    /// Anything but `authenticate` before a correct token.
    pub const NOT_AUTHENTICATED: u32 = 0x13;
    /// A wrong token.
    pub const BAD_TOKEN: u32 = 0x14;
    /// No room for another connection.
    pub const TOO_MANY_CONNECTIONS: u32 = 0x15;
    /// Arguments that do not parse, or a number out of its bounds.
    pub const BAD_ARGUMENTS: u32 = 0x16;
    /// A connection to another agent failed (refused, timed out, another
    /// protocol version).
    pub const CONNECTION: u32 = 0x17;
    /// Not in the stage that allows it (`extend`, `cancel`).
    pub const WRONG_STAGE: u32 = 0x18;
    /// No such migration on this agent.
    pub const NO_SUCH_MIGRATION: u32 = 0x19;
    /// The agent failed serving a request (a bug; the log has the details).
    pub const INTERNAL: u32 = 0x1A;
    /// A peer agent this one does not know: its greeting names an agent
    /// not in `peers`, or its key is neither pinned nor signed by the site
    /// CA.
    pub const UNKNOWN_PEER: u32 = 0x1B;
    /// A peer's certificate is outside its validity period (expired, or
    /// not yet valid).
    pub const CERT_EXPIRED: u32 = 0x1C;
    /// A peer's certificate is wrong: not signed by the site CA, or not
    /// the one of the key that signed the handshake.
    pub const WRONG_CERTIFICATE: u32 = 0x1D;
    /// Plaintext offered to a TLS-only management listener (or TLS to an
    /// agent that answers in clear).
    pub const PLAINTEXT_REFUSED: u32 = 0x1E;
}

/// An error of the management protocol itself, raised by `moverd`.
pub fn protocol_error(cause: u32, message: impl Into<String>, action: impl Into<String>) -> Emg {
    Emg::new(Module::Management, phase::CONNECT, cause, message, action)
}

/// A decoded request.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestLine {
    /// The client's id for it, repeated in the reply.
    pub id: u64,
    /// The command and its arguments.
    pub command: Command,
}

impl RequestLine {
    /// The request as one line (without the newline).
    pub fn encode(&self) -> String {
        let mut v = serde_json::to_value(&self.command).expect("commands serialise");
        v["id"] = json!(self.id);
        v.to_string()
    }
}

/// Why a line is not a request, and the id to answer with when it had one.
#[derive(Debug)]
pub struct BadRequest {
    /// The request's id, when the line had one.
    pub id: Option<u64>,
    /// What to answer.
    pub error: Emg,
}

/// A request line read as far as its envelope: its id, its command's
/// name and its arguments, still undecoded. An unauthenticated connection
/// gets no further (nothing about a command's arguments leaks before the
/// token).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The request's id.
    pub id: u64,
    /// The command's name.
    pub execute: String,
    #[serde(default)]
    arguments: Option<Value>,
}

/// Decodes one request line. Total: any input gives a request or a typed
/// error, never a panic, and nothing larger than [`MAX_LINE`] is parsed.
pub fn decode_request(line: &[u8]) -> Result<RequestLine, BadRequest> {
    decode_envelope(line)?.decode()
}

/// Decodes a request line's envelope only (see [`Envelope`]).
pub fn decode_envelope(line: &[u8]) -> Result<Envelope, BadRequest> {
    let bad = |id, cause, message: String, action: &str| BadRequest {
        id,
        error: protocol_error(cause, message, action),
    };
    if line.len() > MAX_LINE {
        return Err(bad(
            None,
            cause::OVERSIZED,
            format!("request of {} bytes exceeds {MAX_LINE} bytes", line.len()),
            "Send one JSON object per line, at most 1 MiB.",
        ));
    }
    serde_json::from_slice(line).map_err(|e| {
        // Answer with the id when the line at least has one.
        let id = serde_json::from_slice::<Value>(line)
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_u64));
        bad(
            id,
            cause::MALFORMED,
            format!("malformed request: {e}"),
            "Send {\"id\":<number>,\"execute\":\"<command>\",\"arguments\":{…}} on one line \
             (see docs/protocol.md).",
        )
    })
}

impl Envelope {
    /// Decodes the command and its arguments.
    pub fn decode(self) -> Result<RequestLine, BadRequest> {
        let raw = self;
        let bad = |id, cause, message: String, action: &str| BadRequest {
            id,
            error: protocol_error(cause, message, action),
        };
        if !COMMANDS.contains(&raw.execute.as_str()) {
            return Err(bad(
                Some(raw.id),
                cause::UNKNOWN_COMMAND,
                format!("unknown command '{}'", raw.execute.escape_debug()),
                &format!("Use one of: {}.", COMMANDS.join(", ")),
            ));
        }
        let arguments = match raw.arguments {
            None | Some(Value::Null) => json!({}),
            Some(a) => a,
        };
        let command: Command =
            serde_json::from_value(json!({"execute": raw.execute, "arguments": arguments}))
                .map_err(|e| {
                    bad(
                        Some(raw.id),
                        cause::BAD_ARGUMENTS,
                        format!("bad arguments for '{}': {e}", raw.execute),
                        "Check the command's arguments in docs/protocol.md.",
                    )
                })?;
        Ok(RequestLine {
            id: raw.id,
            command,
        })
    }
}

/// The first line an agent sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Greeting {
    /// The agent's name.
    pub agent: String,
    /// Its build.
    pub build: BuildIdentity,
    /// Its protocol version ([`PROTOCOL_VERSION`](super::PROTOCOL_VERSION)).
    pub protocol: u32,
}

/// The greeting line.
pub fn encode_greeting(g: &Greeting) -> String {
    json!({ "greeting": g }).to_string()
}

/// A reply line.
pub fn encode_reply(id: Option<u64>, result: &Result<Value, Emg>) -> String {
    match result {
        Ok(v) => json!({"id": id, "return": v}).to_string(),
        Err(e) => json!({"id": id, "error": e}).to_string(),
    }
}

/// Anything an agent sends, as a client reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage {
    /// The first line.
    Greeting(Greeting),
    /// A reply: `return` or `error`.
    Reply {
        /// The request's id (`None`: a line that was no request).
        id: Option<u64>,
        /// The reply's `return`, or its `error`.
        result: Result<Value, Emg>,
    },
    /// An event.
    Event(Event),
}

/// Decodes one line from an agent.
pub fn decode_server_message(line: &[u8]) -> Result<ServerMessage, String> {
    let v: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let fail = |what: &str, e: serde_json::Error| format!("bad {what}: {e}");
    if let Some(g) = v.get("greeting") {
        return Ok(ServerMessage::Greeting(
            Greeting::deserialize(g).map_err(|e| fail("greeting", e))?,
        ));
    }
    if v.get("event").is_some() {
        return Ok(ServerMessage::Event(
            Event::deserialize(&v).map_err(|e| fail("event", e))?,
        ));
    }
    let id = v.get("id").and_then(Value::as_u64);
    if let Some(r) = v.get("return") {
        return Ok(ServerMessage::Reply {
            id,
            result: Ok(r.clone()),
        });
    }
    if let Some(e) = v.get("error") {
        return Ok(ServerMessage::Reply {
            id,
            result: Err(Emg::deserialize(e).map_err(|e| fail("error", e))?),
        });
    }
    Err("neither greeting, event, return nor error".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_with_any_number_reencodes_to_the_same_message() {
        // Found by fuzz_targets/server_message: without serde_json's
        // `float_roundtrip`, a float read back from its own text could
        // differ in the last bit (7.999959999999998e28 became 7.99996e28).
        let line = br#"{"id":2,"return":{"rate":79999599999999999999999999999,"ms":0.1}}"#;
        let message = decode_server_message(line).unwrap();
        let ServerMessage::Reply { id, result } = &message else {
            panic!("a reply: {message:?}");
        };
        let again = decode_server_message(encode_reply(*id, result).as_bytes()).unwrap();
        assert_eq!(again, message);
    }

    #[test]
    fn requests_round_trip_through_one_line() {
        let r = RequestLine {
            id: 9,
            command: Command::Migrate {
                lpar: "web1".into(),
                to: "127.0.0.1:7400".into(),
                max_suspend_ms: Some(20),
                bandwidth: None,
                streams: Some(4),
                timeout_s: None,
                path: None,
                insecure_plaintext: false,
            },
        };
        let line = r.encode();
        assert!(line.contains(r#""execute":"migrate""#), "{line}");
        assert_eq!(decode_request(line.as_bytes()).unwrap(), r);
        let list = decode_request(br#"{"id":1,"execute":"lpar-list"}"#).unwrap();
        assert_eq!(list.command, Command::LparList {});
    }

    #[test]
    fn bad_requests_are_typed_and_keep_the_id_when_there_is_one() {
        let e = decode_request(b"{not json").unwrap_err();
        assert_eq!((e.id, e.error.cause), (None, cause::MALFORMED));
        let e = decode_request(br#"{"id":4,"execute":"format-disk"}"#).unwrap_err();
        assert_eq!((e.id, e.error.cause), (Some(4), cause::UNKNOWN_COMMAND));
        assert!(e.error.message.contains("format-disk"));
        let e =
            decode_request(br#"{"id":5,"execute":"cancel","arguments":{"id":"x"}}"#).unwrap_err();
        assert_eq!((e.id, e.error.cause), (Some(5), cause::BAD_ARGUMENTS));
        let e = decode_request(br#"{"id":6,"execute":"lpar-list","extra":1}"#).unwrap_err();
        assert_eq!(e.error.cause, cause::MALFORMED);
    }

    #[test]
    fn an_emg_crosses_the_protocol_intact() {
        let emg = Emg::new(Module::MoverDestination, phase::DEFINE, 0xF00B, "m", "a")
            .detail(3)
            .reason(0x101)
            .needing_recovery();
        let line = encode_reply(Some(2), &Err(emg.clone()));
        assert_eq!(
            decode_server_message(line.as_bytes()).unwrap(),
            ServerMessage::Reply {
                id: Some(2),
                result: Err(emg.clone())
            }
        );
        let ev = Event::MigrationFailed {
            migration: 1,
            lpar: "l".into(),
            error: emg,
        };
        assert_eq!(
            decode_server_message(ev.encode().as_bytes()).unwrap(),
            ServerMessage::Event(ev)
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_to_a_request_or_a_typed_error(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            match decode_request(&bytes) {
                Ok(r) => proptest::prop_assert_eq!(decode_request(r.encode().as_bytes()).unwrap(), r),
                Err(e) => proptest::prop_assert_eq!(e.error.module, Module::Management),
            }
        }

        #[test]
        fn requests_with_any_names_and_numbers_round_trip(
            id in proptest::num::u64::ANY,
            name in "\\PC{0,40}",
            seconds in proptest::num::u64::ANY,
        ) {
            for command in [
                Command::LparShow { name: name.clone() },
                Command::Extend { id, seconds },
                Command::Status { id: Some(seconds) },
            ] {
                let r = RequestLine { id, command };
                proptest::prop_assert_eq!(decode_request(r.encode().as_bytes()).unwrap(), r);
            }
        }
    }
}
