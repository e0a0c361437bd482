//! Routing and authentication of the console's API, without a socket: a
//! real [`Console`] whose agents do not listen (a port nothing serves), so
//! a request that gets past the checks reaches the agent link and comes
//! back 502 with the client's EMG.

use super::*;

fn console() -> Console {
    // Port 1 on loopback: nothing listens there, connecting fails at once.
    let c = Console::new(vec![("127.0.0.1:1".into(), "s3cret".into())]);
    c.bound.set("127.0.0.1:8080".parse().unwrap()).unwrap();
    c
}

/// A GET from the console's own page (the policy tests build theirs here too).
pub(in crate::cli::console) fn get(url: &str, cookie: Option<&str>) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        url: url.into(),
        cookie: cookie.map(str::to_string),
        host: Some("127.0.0.1:8080".into()),
        ..HttpRequest::default()
    }
}

/// A POST from the console's own page.
pub(in crate::cli::console) fn post(url: &str, cookie: Option<&str>, body: Value) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        content_type: Some("application/json".into()),
        origin: Some("http://127.0.0.1:8080".into()),
        body: body.to_string().into_bytes(),
        ..get(url, cookie)
    }
}

fn login(c: &Console) -> String {
    match c.handle(&post("/api/login", None, json!({"token": "s3cret"}))) {
        Reply::Json(200, _, Some(set)) => set.split(';').next().unwrap().to_string(),
        other => panic!("login: {other:?}"),
    }
}

fn status(r: &Reply) -> u16 {
    r.status()
}

#[test]
fn the_page_is_served_to_anyone_but_no_api_route_without_a_session() {
    let c = console();
    assert!(
        matches!(c.handle(&get("/", None)), Reply::Asset(t, s) if t.starts_with("text/html") && s.contains("console.js"))
    );
    assert!(
        matches!(c.handle(&get("/console.js", None)), Reply::Asset(t, _) if t.starts_with("text/javascript"))
    );
    assert!(
        matches!(c.handle(&get("/console.css", None)), Reply::Asset(t, _) if t.starts_with("text/css"))
    );
    assert_eq!(status(&c.handle(&get("/etc/passwd", None))), 404);
    // Every /api/ path, known or not, answers 401 alike without a session.
    for url in [
        "/api/session",
        "/api/hosts",
        "/api/lpars",
        "/api/events",
        "/api/nope",
        "/api/status?agent=x&id=1",
    ] {
        assert_eq!(status(&c.handle(&get(url, None))), 401, "{url}");
        let forged = format!("lpm_session={}", "a".repeat(64));
        assert_eq!(status(&c.handle(&get(url, Some(&forged)))), 401, "{url}");
    }
    for url in [
        "/api/migrate",
        "/api/cancel",
        "/api/lpar/create",
        "/api/recover",
    ] {
        let r = c.handle(&post(url, None, json!({"agent": "127.0.0.1:1"})));
        assert_eq!(status(&r), 401, "{url}");
    }
}

#[test]
fn a_wrong_token_gets_no_cookie_and_the_right_one_a_session() {
    let c = console();
    for body in [
        json!({"token": "wrong"}),
        json!({"token": ""}),
        json!({}),
        json!({"token": 7}),
    ] {
        let r = c.handle(&post("/api/login", None, body.clone()));
        assert!(
            matches!(&r, Reply::Json(401, v, None) if v["emg"].as_str().unwrap().contains("wrong token")),
            "{body}: {r:?}"
        );
    }
    let cookie = login(&c);
    assert!(cookie.starts_with("lpm_session="));
    let r = c.handle(&get("/api/session", Some(&cookie)));
    assert!(
        matches!(&r, Reply::Json(200, v, None) if v["agents"] == json!(["127.0.0.1:1"])),
        "{r:?}"
    );
    // Logout ends it.
    let r = c.handle(&post("/api/logout", Some(&cookie), json!({})));
    assert!(matches!(&r, Reply::Json(200, _, Some(set)) if set.contains("Max-Age=0")));
    assert_eq!(status(&c.handle(&get("/api/session", Some(&cookie)))), 401);
}

#[test]
fn routes_methods_and_arguments_are_checked_before_any_agent_is_asked() {
    let c = console();
    let cookie = login(&c);
    let ck = Some(cookie.as_str());
    assert_eq!(status(&c.handle(&get("/api/nope", ck))), 404);
    assert_eq!(status(&c.handle(&get("/api/migrate", ck))), 405);
    assert_eq!(status(&c.handle(&post("/api/hosts", ck, json!({})))), 405);
    // The body must be a JSON object.
    let mut r = post("/api/cancel", ck, json!({}));
    r.body = b"[1,2]".to_vec();
    assert_eq!(status(&c.handle(&r)), 400);
    // Only the console's own agents, as source and as destination.
    let r = c.handle(&post(
        "/api/cancel",
        ck,
        json!({"agent": "10.0.0.9:7400", "id": 1}),
    ));
    assert!(
        matches!(&r, Reply::Json(404, v, _) if v["emg"].as_str().unwrap().contains("not an agent of this console")),
        "{r:?}"
    );
    let r = c.handle(&post(
        "/api/migrate",
        ck,
        json!({"agent": "127.0.0.1:1", "lpar": "w", "to": "10.0.0.9:7400"}),
    ));
    assert_eq!(status(&r), 404);
    let r = c.handle(&post(
        "/api/cancel",
        ck,
        json!({"agent": "127.0.0.1:1", "id": "x"}),
    ));
    assert_eq!(status(&r), 400);
    let r = c.handle(&post(
        "/api/lpar/create",
        ck,
        json!({"agent": "127.0.0.1:1", "name": "w", "memory": "lots"}),
    ));
    assert_eq!(status(&r), 400);
    let r = c.handle(&post(
        "/api/validate",
        ck,
        json!({"agent": "127.0.0.1:1", "lpar": "w", "to": "127.0.0.1:1", "mode": "paused"}),
    ));
    assert_eq!(status(&r), 400);
    // Past the checks: the request goes to the agent, which is not there.
    let r = c.handle(&post(
        "/api/cancel",
        ck,
        json!({"agent": "127.0.0.1:1", "id": 3}),
    ));
    assert!(
        matches!(&r, Reply::Json(502, v, _) if v["error"]["module"] == "Client"),
        "{r:?}"
    );
    let r = c.handle(&get("/api/history?agent=127.0.0.1%3A1&lpar=web1", ck));
    assert_eq!(status(&r), 502);
    // Reads of every agent report an unreachable one in place.
    let r = c.handle(&get("/api/hosts", ck));
    assert!(
        matches!(&r, Reply::Json(200, v, _) if v["hosts"][0]["reachable"] == false),
        "{r:?}"
    );
    // The event stream starts after the latest event, or where asked.
    c.agents.hub.push(json!({"event": "X"}));
    assert_eq!(c.handle(&get("/api/events", ck)), Reply::Events(1));
    assert_eq!(c.handle(&get("/api/events?since=0", ck)), Reply::Events(0));
    let mut again = get("/api/events", ck);
    again.last_event_id = Some("0".into());
    assert_eq!(c.handle(&again), Reply::Events(0));
}

#[test]
fn cross_site_requests_and_foreign_hosts_are_refused() {
    let c = console();
    let cookie = login(&c);
    let ck = Some(cookie.as_str());
    // A form post (no JSON content type) is refused, session or not.
    let mut r = post("/api/cancel", ck, json!({"agent": "127.0.0.1:1", "id": 1}));
    r.content_type = Some("application/x-www-form-urlencoded".into());
    assert_eq!(status(&c.handle(&r)), 415);
    // Another site's page.
    let mut r = post("/api/cancel", ck, json!({"agent": "127.0.0.1:1", "id": 1}));
    r.origin = Some("http://evil.example".into());
    assert_eq!(status(&c.handle(&r)), 403);
    let mut r = post("/api/login", None, json!({"token": "s3cret"}));
    r.origin = Some("http://evil.example".into());
    assert_eq!(status(&c.handle(&r)), 403);
    // A DNS name rebound to loopback: its Host is not the console's.
    let mut r = get("/api/session", ck);
    r.host = Some("evil.example:8080".into());
    assert_eq!(status(&c.handle(&r)), 403);
    let mut r = get("/", None);
    r.host = None;
    assert_eq!(status(&c.handle(&r)), 403);
    for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080"] {
        let mut r = get("/api/session", ck);
        r.host = Some(host.into());
        assert_eq!(status(&c.handle(&r)), 200, "{host}");
    }
    let mut r = get("/api/session", ck);
    r.host = Some("localhost:9999".into());
    assert_eq!(status(&c.handle(&r)), 403);
}

#[test]
fn queries_are_percent_decoded() {
    let q = parse_query("agent=127.0.0.1%3A7401&lpar=web+1&x=%zz&path=%2Ftmp%2Fa.sock");
    assert_eq!(q["agent"], "127.0.0.1:7401");
    assert_eq!(q["lpar"], "web 1");
    assert_eq!(q["x"], "%zz");
    assert_eq!(q["path"], "/tmp/a.sock");
}
