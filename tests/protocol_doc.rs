//! Every JSON example in `docs/protocol.md` reads as the protocol's types:
//! requests (`>>`) decode into a `Command`, replies (`<<` with `return`)
//! into the reply type of the request with the same `id` just before them,
//! errors into an `Emg`, events into an `Event`, the greeting into a
//! `Greeting`, and a lone `{"item":…}` line into a validation `Check`.
//!
//! The document shortens long values with `…`. Inside a string that is
//! text; outside one, `{…}`, `[…]`, `…,` and `…as something…` mark an
//! elision, which this test removes. An example without elisions must
//! parse into its type and name no field the type lacks; an elided one
//! must name only fields the type has (each checked against the type's
//! own field list).

use lpar_mover::control::{
    Command, Greeting, Request, ServerMessage, cause, decode_request, decode_server_message, reply,
    request,
};
use lpar_mover::emg::Emg;
use serde::de::{self, DeserializeOwned, Visitor};
use serde_json::Value;
use std::path::Path;

/// The example with its elisions removed, and whether it had any.
fn unelide(text: &str) -> (String, bool) {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let (mut in_string, mut escaped, mut elided) = (false, false, false);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '…' {
            elided = true;
            // `…as connectivity-test…`: a phrase between two ellipses.
            let rest: String = chars[i + 1..].iter().collect();
            if let Some(end) = rest.find('…')
                && !rest[..end].contains(['"', '{', '}', '[', ']', ','])
            {
                i += rest[..end].chars().count() + 1;
            }
        } else {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
        i += 1;
    }
    // Commas left next to a removed elision.
    let mut text = out;
    for (from, to) in [
        (",,", ","),
        ("{,", "{"),
        (",}", "}"),
        ("[,", "["),
        (",]", "]"),
    ] {
        while text.contains(from) {
            text = text.replace(from, to);
        }
    }
    (text, elided)
}

/// The field names a type's `Deserialize` asks for (structs only).
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe;
    #[derive(Debug)]
    struct Found(&'static [&'static str]);
    impl std::fmt::Display for Found {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl std::error::Error for Found {}
    impl de::Error for Found {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Found(&[])
        }
    }
    impl<'de> de::Deserializer<'de> for Probe {
        type Error = Found;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Found> {
            Err(Found(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Found(fields)) => fields,
        Ok(_) => &[],
    }
}

/// `value` read as `T`: whole when it is complete, field names only when
/// it was elided.
fn check_as<T: DeserializeOwned + serde::Serialize>(
    what: &str,
    value: &Value,
    elided: bool,
) -> Result<(), String> {
    let keys: Vec<&String> = value
        .as_object()
        .ok_or(format!("{what}: not an object"))?
        .keys()
        .collect();
    if elided {
        let fields = fields_of::<T>();
        if fields.is_empty() {
            return Ok(());
        }
        return match keys.iter().find(|k| !fields.contains(&k.as_str())) {
            Some(k) => Err(format!(
                "{what}: the type has no field '{k}' (it has {fields:?})"
            )),
            None => Ok(()),
        };
    }
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| format!("{what}: {e}"))?;
    let back = serde_json::to_value(&typed).unwrap();
    if let Some(k) = keys.iter().find(|k| back.get(k.as_str()).is_none()) {
        return Err(format!("{what}: the type drops field '{k}'"));
    }
    // A complete example shows every field the agent sends.
    match back
        .as_object()
        .and_then(|b| b.keys().find(|k| value.get(k.as_str()).is_none()))
    {
        Some(k) => Err(format!("{what}: the example lacks field '{k}'")),
        None => Ok(()),
    }
}

/// Checks a reply's `return` against the reply type of `command`.
fn check_reply(command: &Command, value: &Value, elided: bool) -> Result<(), String> {
    macro_rules! by_command {
        ($($variant:ident),*) => {
            match command {
                $(Command::$variant { .. } => check_as::<<request::$variant as Request>::Reply>(
                    command.name(), value, elided),)*
            }
        };
    }
    by_command!(
        Authenticate,
        LparCreate,
        LparList,
        LparShow,
        LparActivate,
        LparDeactivate,
        LparDelete,
        Migrate,
        Status,
        Extend,
        Cancel,
        PrepareIncoming,
        AbandonIncoming,
        Recover,
        JournalRead,
        RecoverResolve,
        MigrateShutdown,
        ReceiveShutdown,
        RollbackWwn,
        History,
        HostResources,
        HistoryRecord,
        Validate,
        ConnectivityTest,
        Rehearse,
        ValidateIncoming,
        ConnectivityIncoming,
        RehearseIncoming,
        LparConsole,
        WwnStatus,
        LparModify,
        Backup,
        Restore,
        HostInfo
    )
}

/// Checks one line of a code block; returns what it was, for the count.
fn check_line(line: &str, last: &mut Option<(u64, Command)>) -> Result<&'static str, String> {
    if let Some(text) = line.strip_prefix(">> ") {
        let (text, elided) = unelide(text);
        if text == "garbage" {
            return Ok("request");
        }
        if elided {
            return Err("a request example must be complete".into());
        }
        // An example of a refused request (an unknown command) is answered
        // with an error, which the next line shows.
        let r = match decode_request(text.as_bytes()) {
            Ok(r) => r,
            Err(e) if e.error.cause == cause::UNKNOWN_COMMAND => return Ok("request"),
            Err(e) => return Err(e.error.message),
        };
        *last = Some((r.id, r.command));
        return Ok("request");
    }
    let (text, elided) = unelide(line.strip_prefix("<< ").unwrap_or(line));
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e} in {text}"))?;
    if let Some(g) = v.get("greeting") {
        check_as::<Greeting>("greeting", g, elided)?;
        return Ok("greeting");
    }
    if v.get("event").is_some() {
        // Elisions are only ever inside a report, which is a JSON value.
        return match decode_server_message(text.as_bytes())? {
            ServerMessage::Event(_) => Ok("event"),
            other => Err(format!("not an event: {other:?}")),
        };
    }
    if v.get("item").is_some() {
        check_as::<reply::Check>("check", &v, elided)?;
        return Ok("check");
    }
    if let Some(e) = v.get("error") {
        check_as::<Emg>("error", e, elided)?;
        return Ok("error");
    }
    let r = v.get("return").ok_or("neither request, reply nor event")?;
    let id = v["id"].as_u64();
    match last {
        Some((asked, command)) if Some(*asked) == id => check_reply(command, r, elided)?,
        _ => return Err(format!("no request with id {id:?} before this reply")),
    }
    Ok("reply")
}

#[test]
fn every_example_in_the_protocol_document_reads_as_the_types() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/protocol.md");
    let doc = std::fs::read_to_string(doc).unwrap();
    let mut in_block = false;
    let mut last = None;
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    let mut bad = Vec::new();
    for (n, line) in doc.lines().enumerate() {
        if line.starts_with("```") {
            in_block = !in_block;
            last = None;
            continue;
        }
        let json_like = line.starts_with(">> ") || line.starts_with("<< ") || line.starts_with('{');
        if !in_block || !json_like {
            continue;
        }
        match check_line(line, &mut last) {
            Ok(kind) => *seen.entry(kind).or_default() += 1,
            Err(e) => bad.push(format!("docs/protocol.md:{}: {e}\n  {line}", n + 1)),
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    for kind in ["greeting", "request", "reply", "error", "event", "check"] {
        assert!(
            seen.get(kind).is_some_and(|&n| n > 0),
            "no {kind} examples: {seen:?}"
        );
    }
    assert!(seen["reply"] >= 20, "{seen:?}");
}

#[test]
fn a_misnamed_field_or_a_wrong_type_is_caught() {
    let mut last = None;
    check_line(r#">> {"id":5,"execute":"host-resources"}"#, &mut last).unwrap();
    let good = r#"<< {"id":5,"return":{"host":"h","cpus":2,"memory_bytes":1,"memory_in_use_bytes":0,"memory_free_bytes":1,"lpars":0}}"#;
    check_line(good, &mut last).unwrap();
    let renamed = good.replace("\"cpus\"", "\"cpu_count\"");
    assert!(check_line(&renamed, &mut last).is_err());
    let elided = r#"<< {"id":5,"return":{"host":"h",…,"cpu_count":2}}"#;
    assert!(
        check_line(elided, &mut last)
            .unwrap_err()
            .contains("cpu_count")
    );
    let wrong = good.replace("\"cpus\":2", "\"cpus\":\"two\"");
    assert!(check_line(&wrong, &mut last).is_err());
    assert_eq!(
        unelide(r#"{"a":{…},"b":[…,1],"c":"x…y",…}"#),
        (r#"{"a":{},"b":[1],"c":"x…y"}"#.to_string(), true)
    );
}
