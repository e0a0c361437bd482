//! The operator's console in a real browser: headless Chromium driven over
//! WebDriver (`chromedriver`) against `moverctl console` and two real
//! `moverd serve` agents. What an operator does, screen by screen: log in
//! (a wrong token refused), create and activate an LPAR, validate, migrate
//! it live and watch the progress arrive, find it on the destination;
//! cancel a migration held in 0x4050 and find the LPAR still running on
//! the source; recover an LPAR a killed agent left needing recovery. The
//! main screens are saved to `docs/screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them); without them the test skips (and fails under
//! `LPAR_MOVER_NO_SKIP=1`).

mod agent_common;
mod webdriver;

use agent_common::{Agent, Hold, Scratch, peer_args, wait_for};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use webdriver::{Browser, ENTER};

const WAIT: Duration = Duration::from_secs(60);

/// `moverctl console` as a process, killed when dropped.
struct ConsoleProcess {
    child: Child,
    url: String,
}

impl ConsoleProcess {
    fn start(agents: &[&str], token_file: &std::path::Path, log: PathBuf) -> ConsoleProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_moverctl"));
        cmd.args(["console", "--listen", "127.0.0.1:0", "--token-file"])
            .arg(token_file);
        for a in agents {
            cmd.args(["--agent", a]);
        }
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("moverctl console starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .strip_prefix("CONSOLE ")
            .unwrap_or_else(|| panic!("moverctl console printed {line:?}"))
            .trim()
            .to_string();
        ConsoleProcess { child, url }
    }
}

impl Drop for ConsoleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// hostB listens on a Unix socket, so that it keeps its address when the
/// test kills and restarts it; it holds its outgoing migrations at 0x4050.
fn start_held_agent(scratch: &Scratch, hold: &Hold) -> Agent {
    let state_dir = scratch.0.join("hostB");
    let socket = scratch.0.join("hostB.sock");
    let path = format!("mig=127.0.0.{}", agent_common::next_path_octet());
    let mut args: Vec<String> = ["serve", "--name", "hostB", "--listen"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(socket.display().to_string());
    args.extend(["--path".into(), path, "--memory".into(), "2GiB".into()]);
    args.extend(["--state-dir".into(), state_dir.display().to_string()]);
    args.extend([
        "--token-file".into(),
        scratch.token_file().display().to_string(),
    ]);
    args.extend(peer_args());
    // No identity: it calls hostA (TCP, plaintext) with the token.
    args.push("--insecure-plaintext-management".into());
    let mut program = Command::new(env!("CARGO_BIN_EXE_moverd"));
    program.envs(hold.env());
    Agent::spawn_via("hostB", program, args, state_dir, scratch.token_file())
}

fn screenshot(b: &Browser, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = b.screenshot();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The LPAR row of `lpar` on the LPARs screen under the agent `agent`.
fn row(agent: &str, lpar: &str) -> String {
    format!("#lpar-hosts tr[data-agent=\"{agent}\"][data-lpar=\"{lpar}\"]")
}

fn state_of(b: &Browser, agent: &str, lpar: &str) -> String {
    b.script(
        "const c = document.querySelector(arguments[0] + ' td.state'); return c ? c.dataset.state : '';",
        serde_json::json!([row(agent, lpar)]),
    )
    .as_str()
    .unwrap_or("")
    .to_string()
}

fn wait_state(b: &Browser, agent: &str, lpar: &str, state: &str) {
    b.wait_until(&format!("{lpar} {state} on {agent}"), WAIT, |b| {
        if state_of(b, agent, lpar) != state {
            // Refresh as the operator would.
            if let Some(r) = b.find("#screen-lpars button[data-refresh]") {
                b.click(&r);
            }
            std::thread::sleep(Duration::from_millis(200));
            return state_of(b, agent, lpar) == state;
        }
        true
    });
}

fn create_and_activate(b: &Browser, agent: &str, name: &str, memory: &str, program: &str) {
    b.click_on("#nav button[data-screen=lpars]");
    b.select("#create-agent", agent);
    b.fill("#create-name", name);
    b.fill("#create-memory", memory);
    b.fill("#create-program", program);
    b.click_on("#create-button");
    wait_state(b, agent, name, "Dea");
    b.click_on(&format!(
        "{} button[data-action=activate]",
        row(agent, name)
    ));
    wait_state(b, agent, name, "Act");
}

/// Validates `lpar` from `from` to `to` on the Migrate screen and starts it.
fn validate_and_start(b: &Browser, from: &str, lpar: &str, to: &str) {
    b.click_on("#nav button[data-screen=migrate]");
    b.select("#mig-agent", from);
    b.select("#mig-lpar", lpar);
    b.select("#mig-to", to);
    b.select("#mig-mode", "live");
    b.click_on("#validate-button");
    let verdict = b.wait("#validation-verdict", WAIT);
    assert!(
        b.text(&verdict).starts_with("Validation passed"),
        "{}",
        b.text(&verdict)
    );
    let start = b.wait("#start-button", WAIT);
    b.wait_until("Start enabled after validation", WAIT, |b| {
        b.enabled(&start)
    });
    b.click(&start);
    b.wait("#screen-progress:not([hidden])", WAIT);
}

/// Waits until the migration on the progress screen is held in 0x4050 and
/// the page shows it. The test hook holds the migration right after the
/// agent journals 0x4050 and before it sends that stage's event, so the
/// page learns it from the agent's status (Refresh status), as a page
/// opened during a migration would.
fn held_in_0x4050(b: &Browser, agent: &Agent, hold: &Hold) {
    let selected = b
        .script(
            "return document.querySelector('#prog-select').value;",
            serde_json::json!([]),
        )
        .as_str()
        .unwrap()
        .to_string();
    let id = selected.rsplit('#').next().unwrap().to_string();
    hold.wait_held(agent, &id);
    b.wait_until("the page to show stage 0x4050", WAIT, |b| {
        if !b.text_of("#stage").contains("0x4050") {
            b.click_on("#prog-refresh");
            std::thread::sleep(Duration::from_millis(200));
        }
        b.text_of("#stage").contains("0x4050")
    });
}

#[test]
fn an_operator_migrates_cancels_and_recovers_from_the_console() {
    let Some((chromium, chromedriver)) = webdriver::find() else {
        lpar_mover::skip::skip(
            "an_operator_migrates_cancels_and_recovers_from_the_console",
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
        );
        return;
    };
    let scratch = Scratch::new("console");
    let hold = Hold::new(&scratch, "console");
    let a = Agent::start(&scratch, "hostA", &["--memory", "2GiB"]);
    let mut b_agent = start_held_agent(&scratch, &hold);
    let (a_addr, b_addr) = (a.addr.clone(), b_agent.addr.clone());
    let console = ConsoleProcess::start(
        &[&a_addr, &b_addr],
        &scratch.token_file(),
        scratch.0.join("console.log"),
    );
    let b = Browser::start(&chromium, &chromedriver);

    // Log in, with the keyboard: a wrong token is refused, the right one
    // opens the console on the Hosts screen.
    b.goto(&console.url);
    let token = b.wait("#token", WAIT);
    b.type_into(&token, &format!("not-the-token{ENTER}"));
    let err = b.wait("#login-error:not([hidden])", WAIT);
    assert!(b.text(&err).contains("Wrong token"), "{}", b.text(&err));
    assert!(
        b.find("#nav:not([hidden])").is_none(),
        "nothing opens on a wrong token"
    );
    screenshot(&b, "login");
    b.clear(&token);
    b.type_into(&token, &format!("{}{ENTER}", agent_common::TOKEN));
    b.wait("#nav:not([hidden])", WAIT);
    b.wait_until("both hosts listed", WAIT, |b| {
        b.find_all("#hosts-table tbody tr[data-host]").len() == 2
    });
    let hosts = b.text_of("#hosts-table");
    for expected in ["hostA", "hostB", "2.0 GiB free", "mig 127.0.0."] {
        assert!(hosts.contains(expected), "{expected} in {hosts}");
    }
    b.wait_until("the event stream", WAIT, |b| {
        b.text_of("#live") == "events: live"
    });
    screenshot(&b, "hosts");

    // The keyboard alone: from the Hosts button, Tab to LPARs and Enter;
    // type a new LPAR's name and Enter creates it.
    b.script(
        "document.querySelector('#nav button[data-screen=hosts]').focus(); return 0;",
        serde_json::json!([]),
    );
    b.keys(webdriver::TAB);
    b.keys(ENTER);
    b.wait("#screen-lpars:not([hidden])", WAIT);
    b.select("#create-agent", &a_addr);
    b.fill("#create-memory", "64MiB");
    b.fill("#create-program", "idle");
    b.fill("#create-name", &format!("kbd1{ENTER}"));
    wait_state(&b, &a_addr, "kbd1", "Dea");

    // Create and activate an LPAR, validate, migrate it live.
    create_and_activate(&b, &a_addr, "web1", "256MiB", "hot:128MiB");
    validate_and_start(&b, &a_addr, "web1", &b_addr);
    // The validation's checklist had both sides' items side by side.
    b.wait_until("the migration's report", Duration::from_secs(300), |b| {
        b.text_of("#migration-outcome")
            .contains("Migration completed!")
    });
    let outcome = b.text_of("#migration-outcome");
    assert!(outcome.contains("now runs on hostB"), "{outcome}");
    assert!(outcome.contains("Suspension:"), "{outcome}");
    let updates: u64 = b.text_of("#progress-count").parse().unwrap();
    let stages = b.find_all("#stages li").len();
    assert!(
        updates >= 3 && stages >= 3,
        "{updates} progress updates and {stages} stages arrived"
    );
    assert!(
        b.text_of("#stages")
            .contains("0x40a0 (SRC) Migration Completed")
    );
    screenshot(&b, "progress");
    // The LPAR is on the destination now, running.
    b.click_on("#nav button[data-screen=lpars]");
    wait_state(&b, &b_addr, "web1", "Act");
    assert!(
        b.find(&row(&a_addr, "web1")).is_none(),
        "gone from the source"
    );
    screenshot(&b, "lpars");
    // The validation screen again, for its screenshot: a checklist of both
    // sides, web1 now from hostB to hostA.
    b.click_on("#nav button[data-screen=migrate]");
    b.select("#mig-agent", &b_addr);
    b.select("#mig-lpar", "web1");
    b.select("#mig-to", &a_addr);
    b.click_on("#validate-button");
    b.wait("#validation-verdict", WAIT);
    let checklist = b.text_of("#checklist");
    assert!(
        checklist.contains("Source: hostB") && checklist.contains("Destination: hostA"),
        "{checklist}"
    );
    assert!(b.find_all("#checklist td[data-outcome=pass]").len() >= 4);
    screenshot(&b, "migrate");
    // History: web1's move, as hostB (where it runs now) records it.
    b.click_on("#nav button[data-screen=lpars]");
    b.click_on(&format!(
        "{} button[data-action=history]",
        row(&b_addr, "web1")
    ));
    b.wait_until("web1's history", WAIT, |b| {
        b.text_of("#history-table tbody").contains("completed")
    });
    let history = b.text_of("#history-table tbody");
    assert!(
        history.contains("hostA") && history.contains("web1"),
        "{history}"
    );
    // Connectivity test from hostA to hostB.
    b.click_on("#nav button[data-screen=tools]");
    b.select("#conn-agent", &a_addr);
    b.select("#conn-to", &b_addr);
    b.click_on("#conn-button");
    b.wait_until("the path measured", WAIT, |b| {
        b.text_of("#conn-result").contains("Gbit/s over 4 streams")
    });

    // Cancel a migration held in 0x4050: the LPAR keeps running on hostB.
    create_and_activate(&b, &b_addr, "slow1", "64MiB", "hot:8MiB");
    validate_and_start(&b, &b_addr, "slow1", &a_addr);
    held_in_0x4050(&b, &b_agent, &hold);
    b.wait("#cancel-button", WAIT);
    b.wait_until("Cancel enabled in 0x4050", WAIT, |b| {
        b.is_enabled("#cancel-button")
    });
    assert!(b.is_enabled("#extend-button"));
    screenshot(&b, "progress-0x4050");
    b.click_on("#cancel-button");
    b.wait_until("the cancel to be accepted", WAIT, |b| {
        b.text_of("#message").contains("Cancelling")
    });
    hold.release();
    b.wait_until("the migration to end cancelled", WAIT, |b| {
        b.text_of("#migration-outcome").contains("cancelled")
    });
    assert!(!b.is_enabled("#cancel-button"), "Cancel only in 0x4050");
    b.click_on("#nav button[data-screen=lpars]");
    wait_state(&b, &b_addr, "slow1", "Act");
    assert_eq!(b_agent.lpar("slow1")["running"], true);
    wait_for("the destination to discard slow1", WAIT, || {
        !a.lpar_names().contains(&"slow1".to_string())
    });

    // Recovery: hostB killed while it sends rec1 (held at 0x4050) comes
    // back with rec1 needing recovery.
    create_and_activate(&b, &b_addr, "rec1", "64MiB", "idle");
    validate_and_start(&b, &b_addr, "rec1", &a_addr);
    held_in_0x4050(&b, &b_agent, &hold);
    b_agent.kill9();
    hold.release();
    b_agent.restart_with_env(&hold.env());
    assert_eq!(b_agent.lpar("rec1")["state"], "needs-recovery");
    wait_for("hostA to discard its copy of rec1", WAIT, || {
        !a.lpar_names().contains(&"rec1".to_string())
    });
    b.click_on("#nav button[data-screen=recovery]");
    b.wait_until("one LPAR requiring recovery", WAIT, |b| {
        if b.text_of("#recovery-count") != "LPARs requiring recovery: 1 LPARs" {
            b.click_on("#nav button[data-screen=recovery]");
            std::thread::sleep(Duration::from_millis(300));
        }
        b.text_of("#recovery-count") == "LPARs requiring recovery: 1 LPARs"
    });
    screenshot(&b, "recovery");
    // A running LPAR is deactivated first, then recovered.
    b.click_on("#recovery-table tr[data-lpar=rec1] button[data-action=deactivate]");
    b.wait_until("Recover enabled once deactivated", WAIT, |b| {
        b.is_enabled("#recovery-table tr[data-lpar=rec1] button[data-action=recover]")
    });
    b.click_on("#recovery-table tr[data-lpar=rec1] button[data-action=recover]");
    b.wait_until("the recovery", WAIT, |b| {
        b.text_of("#message").contains("Recovered rec1")
    });
    let said = b.text_of("#message");
    assert!(said.contains("it runs on hostB"), "{said}");
    b.wait_until("no LPAR requiring recovery", WAIT, |b| {
        b.text_of("#recovery-count") == "LPARs requiring recovery: 0 LPARs"
    });
    let l = b_agent.lpar("rec1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true)),
        "{l}"
    );
    drop(b);
    drop(console);
}
