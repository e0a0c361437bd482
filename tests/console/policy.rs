//! The Policy screen in the browser (part of `console_browser`).

use super::{WAIT, screenshot};
use crate::agent_common::{Agent, Hold, Scratch, define_running, wait_for};
use crate::webdriver::Browser;

/// The result the Policy screen shows for entry `n` (1-based).
fn policy_row(b: &Browser, n: usize) -> String {
    b.script(
        "const r = document.querySelector('#policy-table tr[data-entry=\"' + arguments[0] + '\"]'); return r ? r.dataset.status : '';",
        serde_json::json!([n]),
    )
    .as_str()
    .unwrap_or("")
    .to_string()
}

/// Waits until `agent` holds a migration of `lpar` at 0x4050 ([`Hold`],
/// its file `hold-<tag>` in the scratch directory).
fn held_lpar(scratch: &Scratch, tag: &str, agent: &Agent, lpar: &str) {
    let file = scratch.0.join(format!("hold-{tag}"));
    wait_for(&format!("{lpar} held at 0x4050"), WAIT, || {
        file.exists()
            && agent.ctl_json(&["status"])["migrations"]
                .as_array()
                .is_some_and(|ms| ms.iter().any(|m| m["lpar"] == lpar && m["stage"] == 0x4050))
    });
}

/// The Policy screen: a policy file loaded into the page and run, stopped
/// after its first entry and continued (hostB holds its migrations at
/// 0x4050, so the stop lands while entry 1 runs); then a policy whose
/// second entry fails ends there, and Skip runs the rest.
pub fn policy_screen(b: &Browser, scratch: &Scratch, hold: &Hold, a: &Agent, b_agent: &Agent) {
    let (a_addr, b_addr) = (&a.addr, &b_agent.addr);
    define_running(b_agent, "pol1", "64MiB", "idle");
    define_running(b_agent, "pol2", "64MiB", "idle");
    let file = scratch.0.join("evacuate-hostB.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"evacuate-hostB\"\nmode = \"live\"\n\n\
             [[entry]]\nlpar = \"pol1\"\nfrom = \"{b_addr}\"\nto = \"{a_addr}\"\n\n\
             [[entry]]\nlpar = \"pol2\"\nfrom = \"{b_addr}\"\nto = \"{a_addr}\"\n"
        ),
    )
    .unwrap();
    b.click_on("#nav button[data-screen=policy]");
    let input = b.wait("#policy-file", WAIT);
    b.type_into(&input, &file.display().to_string());
    b.wait_until("the policy file in the page", WAIT, |b| {
        b.script(
            "return document.querySelector('#policy-text').value;",
            serde_json::json!([]),
        )
        .as_str()
        .unwrap_or("")
        .contains("evacuate-hostB")
    });
    b.click_on("#policy-run");
    b.wait_until("entry 1 running", WAIT, |b| policy_row(b, 1) == "running");
    held_lpar(scratch, "console", b_agent, "pol1");
    assert_eq!(policy_row(b, 2), "not-run");
    b.click_on("#policy-stop");
    b.wait_until("the stop requested", WAIT, |b| {
        b.text_of("#policy-status")
            .contains("stops after this entry")
    });
    hold.release();
    b.wait_until("the policy stopped after entry 1", WAIT, |b| {
        b.text_of("#policy-status")
            .contains("stopped by the operator")
    });
    assert_eq!(
        (policy_row(b, 1), policy_row(b, 2)),
        ("completed".into(), "not-run".into())
    );
    assert!(
        b.find("#policy-choices button[data-choice=continue]:not([hidden])")
            .is_some()
    );
    assert!(
        b.find("#policy-choices button[data-choice=retry]:not([hidden])")
            .is_none(),
        "nothing to retry after a stop"
    );
    screenshot(b, "policy-stopped");
    b.click_on("#policy-choices button[data-choice=continue]");
    b.wait_until("entry 2 running", WAIT, |b| policy_row(b, 2) == "running");
    held_lpar(scratch, "console", b_agent, "pol2");
    hold.release();
    b.wait_until("the policy completed", WAIT, |b| {
        b.text_of("#policy-status")
            .contains("completed: every entry migrated")
    });
    let names = a.lpar_names();
    assert!(
        names.contains(&"pol1".into()) && names.contains(&"pol2".into()),
        "{names:?}"
    );

    // Back to hostB, with an entry that fails between two that do not.
    let text = format!(
        "name = \"back-to-hostB\"\nmode = \"live\"\non_failure = \"end\"\n\n\
         [[entry]]\nlpar = \"pol1\"\nto = \"{b_addr}\"\n\n\
         [[entry]]\nlpar = \"ghost\"\nto = \"{b_addr}\"\n\n\
         [[entry]]\nlpar = \"pol2\"\nto = \"{b_addr}\"\n"
    );
    b.script(
        "document.querySelector('#policy-text').value = arguments[0]; return 0;",
        serde_json::json!([text]),
    );
    b.select("#policy-agent", a_addr);
    let updates_before: u64 = b.text_of("#policy-updates").parse().unwrap();
    b.click_on("#policy-run");
    b.wait_until("the policy ended at entry 2", WAIT, |b| {
        b.text_of("#policy-status")
            .contains("ended at a failed entry")
    });
    assert_eq!(
        (policy_row(b, 1), policy_row(b, 2), policy_row(b, 3)),
        ("completed".into(), "failed".into(), "not-run".into())
    );
    let failed = b.text_of("#policy-table tr[data-entry=\"2\"]");
    assert!(
        failed.contains("ghost") && failed.contains("Action:"),
        "{failed}"
    );
    let updates: u64 = b.text_of("#policy-updates").parse().unwrap();
    assert!(
        updates - updates_before >= 5,
        "{} live updates for three attempts",
        updates - updates_before
    );
    assert!(
        b.find("#policy-choices button[data-choice=continue]:not([hidden])")
            .is_none(),
        "a failed entry is retried, skipped or ends the policy"
    );
    b.click_on("#policy-choices button[data-choice=skip]");
    b.wait_until("the rest of the policy run", WAIT, |b| {
        b.text_of("#policy-status")
            .contains("ran to its end with failed entries")
    });
    assert_eq!(policy_row(b, 3), "completed");
    screenshot(b, "policy");
    let names = b_agent.lpar_names();
    assert!(
        names.contains(&"pol1".into()) && names.contains(&"pol2".into()),
        "{names:?}"
    );
}
