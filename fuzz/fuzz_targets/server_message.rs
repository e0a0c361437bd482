//! What a client (moverctl, or a source agent driving a destination)
//! reads from an agent: `decode_server_message` over arbitrary bytes
//! (greetings, replies, events) never panics, and what decodes re-encodes
//! to a line that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::control::{ServerMessage, decode_server_message, encode_greeting, encode_reply};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = decode_server_message(data) else {
        return;
    };
    let line = match &message {
        ServerMessage::Greeting(g) => encode_greeting(g),
        ServerMessage::Reply { id, result } => encode_reply(*id, result),
        ServerMessage::Event(e) => e.encode(),
    };
    let again = decode_server_message(line.as_bytes()).expect("a re-encoded message decodes");
    assert_eq!(again, message);
});
