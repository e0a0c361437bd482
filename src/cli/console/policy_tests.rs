//! The policy routes and the login form, without a socket: a real
//! [`Console`] whose agents do not listen (ports nothing serves), so a
//! policy that starts runs for real and each entry fails to connect.

use super::super::api::tests::{get, post};
use super::super::api::{Console, Reply};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const A: &str = "127.0.0.1:1";
const B: &str = "127.0.0.1:2";

fn console(tokens: [&str; 2]) -> Console {
    let c = Console::new(vec![
        (A.into(), tokens[0].into()),
        (B.into(), tokens[1].into()),
    ]);
    c.bound.set("127.0.0.1:8080".parse().unwrap()).unwrap();
    c
}

fn json_of(r: Reply) -> (u16, Value) {
    match r {
        Reply::Json(status, v, _) => (status, v),
        other => panic!("not JSON: {other:?}"),
    }
}

fn login(c: &Console, body: Value) -> Option<String> {
    match c.handle(&post("/api/login", None, body)) {
        Reply::Json(200, _, Some(set)) => Some(set.split(';').next().unwrap().to_string()),
        _ => None,
    }
}

#[test]
fn the_login_form_asks_for_each_agents_token_only_when_they_differ() {
    let same = console(["t", "t"]);
    let (status, form) = json_of(same.handle(&get("/api/login", None)));
    assert_eq!(
        (status, form),
        (200, json!({"per_agent": false, "agents": []}))
    );
    assert!(login(&same, json!({"token": "t"})).is_some());

    let own = console(["ta", "tb"]);
    let (_, form) = json_of(own.handle(&get("/api/login", None)));
    assert_eq!(form, json!({"per_agent": true, "agents": [A, B]}));
    assert!(login(&own, json!({"token": "ta"})).is_none());
    assert!(login(&own, json!({"tokens": {A: "ta", B: "ta"}})).is_none());
    assert!(login(&own, json!({"tokens": {A: "ta", B: 7}})).is_none());
    let (status, v) = json_of(own.handle(&post(
        "/api/login",
        None,
        json!({"tokens": {A: "tb", B: "ta"}}),
    )));
    assert_eq!(status, 401);
    assert!(
        v["emg"].as_str().unwrap().contains("at least one agent"),
        "{v}"
    );
    assert!(login(&own, json!({"tokens": {A: "ta", B: "tb"}})).is_some());
}

fn policy(c: &Console, ck: &str) -> Value {
    json_of(c.handle(&get("/api/policy", Some(ck)))).1
}

fn wait_outcome(c: &Console, ck: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = policy(c, ck);
        if p["active"] == false && !p["outcome"].is_null() {
            return p;
        }
        assert!(Instant::now() < deadline, "the policy never ended: {p}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_policy_is_checked_run_and_resumed_as_the_operator_chooses() {
    let c = console(["t", "t"]);
    let ck = login(&c, json!({"token": "t"})).unwrap();
    let ck = ck.as_str();
    assert_eq!(
        json_of(c.handle(&get("/api/policy", None))).0,
        401,
        "no session, no policy"
    );
    assert_eq!(policy(&c, ck), json!({"loaded": false}));
    let run = |body: Value| json_of(c.handle(&post("/api/policy/run", Some(ck), body)));
    // Refused before anything runs: no text, a file that does not parse,
    // an agent the console does not have.
    assert_eq!(run(json!({})).0, 400);
    let (status, v) = run(json!({"text": "mode = \"paused\""}));
    assert_eq!(status, 400, "{v}");
    let stranger = "mode = \"live\"\n[[entry]]\nlpar = \"w\"\nto = \"10.9.9.9:7400\"\n";
    let (status, v) = run(json!({"text": stranger, "agent": A}));
    assert_eq!(status, 400);
    assert!(
        v["emg"].as_str().unwrap().contains("entry 1 (w): to"),
        "{v}"
    );
    assert_eq!(run(json!({"text": stranger, "agent": "10.9.9.9:1"})).0, 404);
    assert_eq!(
        json_of(c.handle(&post("/api/policy/stop", Some(ck), json!({})))).0,
        409,
        "nothing runs"
    );
    assert_eq!(policy(&c, ck), json!({"loaded": false}));

    // Runs for real: entry 1 cannot reach its agent, and on_failure = end.
    let text = format!(
        "name = \"p\"\nmode = \"live\"\non_failure = \"end\"\n\
         [[entry]]\nlpar = \"w1\"\nto = \"{B}\"\n\
         [[entry]]\nlpar = \"w2\"\nfrom = \"{B}\"\nto = \"{A}\"\n"
    );
    let (status, started) = run(json!({"text": text, "agent": A}));
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["entries"][0]["from"], A, "the default source");
    let p = wait_outcome(&c, ck);
    assert_eq!(p["outcome"], "ended", "{p}");
    assert_eq!(p["entries"][0]["status"], "failed");
    assert_eq!(p["entries"][0]["error"]["module"], "Client");
    assert_eq!(p["entries"][1]["status"], "not-run");
    assert_eq!(p["choices"], json!(["retry", "skip", "end"]));
    let events = c.agents.hub.after(0, Duration::ZERO);
    assert!(
        events.len() >= 4 && events.iter().all(|(_, e)| e.contains("\"POLICY\"")),
        "start, attempt, failure, entry's end and the policy's: {events:?}"
    );
    let resume = |choice: &str| {
        json_of(c.handle(&post(
            "/api/policy/resume",
            Some(ck),
            json!({ "choice": choice }),
        )))
    };
    assert_eq!(
        resume("continue").0,
        409,
        "a failed entry waits for a choice"
    );
    // Retry runs entry 1 again (its attempts add up); Skip goes on with 2.
    assert_eq!(resume("retry").0, 200);
    let p = wait_outcome(&c, ck);
    assert_eq!(p["entries"][0]["attempts"], 2, "{p}");
    assert_eq!(resume("skip").0, 200);
    let p = wait_outcome(&c, ck);
    assert_eq!(
        (&p["outcome"], &p["entries"][1]["status"], &p["next"]),
        (&json!("ended"), &json!("failed"), &json!(2)),
        "{p}"
    );
    assert_eq!(resume("end").0, 200);
    let p = policy(&c, ck);
    assert_eq!((&p["closed"], &p["choices"]), (&json!(true), &json!([])));
    assert_eq!(resume("retry").0, 409, "ended: nothing to choose");
}
