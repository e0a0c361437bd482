//! Agents with tokens of their own, a rehearsal, a WWN rollback, the
//! keyboard alone and 1280x800 (part of `console_browser`).

use super::{ConsoleProcess, WAIT, fits_the_width, screenshot};
use crate::agent_common::{self, Agent, Scratch};
use crate::webdriver::{self, Browser, ENTER};
use std::process::Command;
use std::time::Duration;

const FC: &str = "50:06:0e:80:12:34:56:01/50:06:0e:80:12:34:56:81";

/// An agent with a shared FC port (vfcIDs 1–8) and the given token file.
fn fc_agent(
    scratch: &Scratch,
    name: &str,
    token_file: &std::path::Path,
    env: &[(&str, &str)],
) -> Agent {
    let config = scratch.0.join(format!("{name}-fc.toml"));
    std::fs::write(
        &config,
        "[resources]\ncpus = 4\nmemory = \"1GiB\"\n\
         fc_ports = [{ name = \"fc0\", vfc_ids = [1, 2, 3, 4, 5, 6, 7, 8] }]\n",
    )
    .unwrap();
    let state_dir = scratch.0.join(name);
    let mut args = agent_common::serve_args(name, &state_dir, token_file);
    args.extend(["--config".into(), config.display().to_string()]);
    let mut program = Command::new(env!("CARGO_BIN_EXE_moverd"));
    program.envs(env.iter().copied());
    Agent::spawn_via(name, program, args, state_dir, token_file.to_path_buf())
}

/// Three agents, and the console given each agent's token by a `--config`
/// file: hostC and hostR share one, hostS has its own. The login asks for
/// each agent's token (a wrong one for hostS is refused), all with the
/// keyboard; the Hosts screen shows each agent's `host-info`; a rehearsal
/// from hostC to hostR; a live migration of an LPAR with FC ports that
/// hostR dies in after the suspension began leaves it WWN rollback pending
/// on hostC, rolled back from the WWN rollback screen with the keyboard
/// alone. Every screen fits 1280x800 without a horizontal scroll.
#[test]
fn agents_with_their_own_tokens_a_rehearsal_and_a_wwn_rollback_from_the_console() {
    let Some((chromium, chromedriver)) = webdriver::find() else {
        lpar_mover::skip::skip(
            "agents_with_their_own_tokens_a_rehearsal_and_a_wwn_rollback_from_the_console",
            "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
        );
        return;
    };
    let scratch = Scratch::new("console-tokens");
    let s_token = scratch.0.join("hostS.token");
    std::fs::write(&s_token, "hostS-own-token-987654321\n").unwrap();
    std::fs::set_permissions(
        &s_token,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let c = fc_agent(&scratch, "hostC", &scratch.token_file(), &[]);
    let r = fc_agent(
        &scratch,
        "hostR",
        &scratch.token_file(),
        &[("MOVERD_FAULT_KILL_AT", "0x5070")],
    );
    let s_agent = fc_agent(&scratch, "hostS", &s_token, &[]);
    let config = scratch.0.join("console.toml");
    std::fs::write(
        &config,
        format!(
            "[[agents]]\naddress = \"{}\"\ntoken_file = \"{}\"\n\n\
             [[agents]]\naddress = \"{}\"\ntoken_file = \"{}\"\n\n\
             [[agents]]\naddress = \"{}\"\ntoken_file = \"{}\"\n",
            c.addr,
            scratch.token_file().display(),
            r.addr,
            scratch.token_file().display(),
            s_agent.addr,
            s_token.display()
        ),
    )
    .unwrap();
    let console = ConsoleProcess::with_config(&config, scratch.0.join("console.log"));
    let b = Browser::start(&chromium, &chromedriver);
    b.set_window_size(1280, 800);
    let inner = b.script(
        "return [window.innerWidth, window.innerHeight];",
        serde_json::json!([]),
    );
    assert!(inner[0].as_u64().unwrap() <= 1280, "{inner}");

    // Log in with the keyboard: a field per agent; hostS's token wrong,
    // then right.
    b.goto(&console.url);
    b.wait("#login-tokens input[data-agent]", WAIT);
    assert_eq!(b.find_all("#login-tokens input[data-agent]").len(), 3);
    assert!(
        b.find("#token:not([hidden])").is_none(),
        "no single token field"
    );
    // The page focuses the first field (and selects it after a refusal);
    // Tab selects a field's text, so typing replaces it.
    let type_tokens = |third: &str| {
        assert!(b.tab_to("#token-0", 10), "the first token field");
        b.keys(&format!("{}{}", agent_common::TOKEN, webdriver::TAB));
        b.keys(&format!("{}{}", agent_common::TOKEN, webdriver::TAB));
        b.keys(&format!("{third}{ENTER}"));
    };
    type_tokens(agent_common::TOKEN);
    let err = b.wait("#login-error:not([hidden])", WAIT);
    assert!(b.text(&err).contains("Wrong token"), "{}", b.text(&err));
    assert!(
        b.find("#nav:not([hidden])").is_none(),
        "nothing opens on a wrong token"
    );
    fits_the_width(&b, "login");
    screenshot(&b, "login-per-agent");
    type_tokens("hostS-own-token-987654321");
    b.wait("#nav:not([hidden])", WAIT);

    // Hosts: each agent's host-info, each reached with its own token.
    b.wait_until("three hosts listed", WAIT, |b| {
        b.find_all("#hosts-table tbody tr[data-host]").len() == 3
    });
    let hosts = b.text_of("#hosts-table");
    for expected in [
        "hostC",
        "hostR",
        "hostS",
        "1.0 GiB free",
        "mig 127.0.0.",
        "idle",
    ] {
        assert!(hosts.contains(expected), "{expected} in {hosts}");
    }
    assert!(!hosts.contains("unreachable"), "{hosts}");
    let cpus = b.text_of("#hosts-table tr[data-host=hostS] td.num");
    assert_eq!(cpus, "4", "hostS's CPUs from its host-info");

    // Rehearsal of w1 from hostC to hostR.
    c.ctl_json(&[
        "lpar",
        "create",
        "w1",
        "--memory",
        "64MiB",
        "--program",
        "hot:4MiB,content=random",
        "--fc-port",
        FC,
    ]);
    c.ctl_json(&["lpar", "activate", "w1"]);
    b.click_on("#nav button[data-screen=tools]");
    b.select("#reh-agent", &c.addr);
    b.fill("#reh-lpar", "w1");
    b.select("#reh-to", &r.addr);
    b.select("#reh-mode", "live");
    // From the LPAR field, Tab to Rehearse and press it with Space.
    b.script(
        "document.querySelector('#reh-lpar').focus(); return 0;",
        serde_json::json!([]),
    );
    assert!(b.tab_to("#rehearse-button", 5), "Tab reaches Rehearse");
    b.keys(" ");
    b.wait_until(
        "the rehearsal's placeholder",
        Duration::from_secs(120),
        |b| {
            b.text_of("#rehearse-result")
                .contains("Placeholder on hostR")
        },
    );
    let rehearsal = b.text_of("#rehearse-result");
    assert!(
        rehearsal.contains("Validation passed") && !rehearsal.contains("NOT released"),
        "{rehearsal}"
    );
    assert!(
        !r.lpar_names().contains(&"w1".to_string()),
        "a rehearsal leaves nothing behind"
    );
    b.script(
        "document.querySelector('#placeholder').scrollIntoView({block: 'end'}); return 0;",
        serde_json::json!([]),
    );
    screenshot(&b, "rehearsal");

    // hostR dies after the suspension began: w1 waits on hostC for its
    // WWNs to be rolled back.
    let out = c.ctl(&["migrate", "w1", "--to", &r.addr]);
    assert_eq!(out.status.code(), Some(2), "{}", agent_common::stderr(&out));
    assert_eq!(c.lpar("w1")["state"], "wwn-rollback-pending");

    // The WWN rollback screen, with the keyboard alone: Tab to the
    // screen's button in the navigation, Enter; Tab to Roll back, Enter.
    b.script(
        "document.querySelector('#nav button[data-screen=hosts]').focus(); return 0;",
        serde_json::json!([]),
    );
    assert!(
        b.tab_to("#nav button[data-screen=wwn]", 20),
        "Tab reaches WWN rollback"
    );
    b.keys(ENTER);
    b.wait("#screen-wwn:not([hidden])", WAIT);
    b.wait_until("w1 listed for a WWN rollback", WAIT, |b| {
        b.text_of("#wwn-count") == "LPARs with WWN rollback pending: 1 LPARs"
    });
    let row = b.text_of("#wwn-table tr[data-lpar=w1]");
    assert!(
        row.contains("hostC") && row.contains("50:06:0e:80:12:34:56:01"),
        "{row}"
    );
    fits_the_width(&b, "wwn");
    screenshot(&b, "wwn-rollback");
    assert!(
        b.tab_to(
            "#wwn-table tr[data-lpar=w1] button[data-action=rollback]",
            40
        ),
        "Tab reaches Roll back WWNs"
    );
    b.keys(ENTER);
    b.wait_until("the rollback", WAIT, |b| {
        b.text_of("#message").contains("WWNs of w1 rolled back")
    });
    b.wait_until("none left to roll back", WAIT, |b| {
        b.text_of("#wwn-count") == "LPARs with WWN rollback pending: 0 LPARs"
    });
    let l = c.lpar("w1");
    assert_eq!(
        (l["state"].as_str(), l["running"].as_bool()),
        (Some("Act"), Some(true)),
        "{l}"
    );

    // The Policy screen from the keyboard: Tab to its button, Space.
    assert!(
        b.tab_to("#nav button[data-screen=policy]", 60),
        "Tab reaches Policy"
    );
    b.keys(" ");
    b.wait("#screen-policy:not([hidden])", WAIT);
    assert!(b.tab_to("#policy-text", 20), "Tab reaches the policy text");

    // Every screen fits 1280x800.
    for screen in [
        "hosts", "lpars", "migrate", "progress", "recovery", "wwn", "history", "tools", "policy",
    ] {
        b.click_on(&format!("#nav button[data-screen={screen}]"));
        b.wait(&format!("#screen-{screen}:not([hidden])"), WAIT);
        std::thread::sleep(Duration::from_millis(300));
        fits_the_width(&b, screen);
    }
    drop(b);
    drop(console);
}
