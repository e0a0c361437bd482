//! The one way a test says it cannot run here.
//!
//! A test that needs root, `/dev/kvm`, iproute2 or a recent kernel calls
//! [`skip`] (or the [`skip!`](crate::skip!) macro) with its name and the
//! reason. The note goes straight to the process's **stderr**, past the
//! test harness's output capture, so a plain `cargo test` shows every skip
//! among the results, in one format a script can grep for:
//!
//! ```text
//! SKIPPED <test>: <reason>
//! ```
//!
//! Where a skip would hide a regression, CI sets
//! [`NO_SKIP_ENV`]`=1` (`.ci/run` does, and runs as root): then a skip is
//! a test failure, with the same note as its panic message.

/// The environment variable that turns every skip into a failure.
pub const NO_SKIP_ENV: &str = "LPAR_MOVER_NO_SKIP";

/// Whether skips are forbidden in this process ([`NO_SKIP_ENV`] is `1`).
pub fn forbidden() -> bool {
    std::env::var(NO_SKIP_ENV).is_ok_and(|v| v.trim() == "1")
}

/// Notes that `test` does not run here because of `reason`: prints
/// `SKIPPED <test>: <reason>` to stderr, or panics with that text when
/// [`NO_SKIP_ENV`]`=1`. The caller returns right after.
#[track_caller]
pub fn skip(test: &str, reason: &str) {
    let note = format!("SKIPPED {test}: {reason}");
    if forbidden() {
        panic!("{note} (skips are forbidden: {NO_SKIP_ENV}=1)");
    }
    // Written to the file descriptor, not with eprintln!: the test harness
    // captures eprintln! and would show a skip only for a failing test.
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{note}");
}

/// `skip!(reason)` notes a skip of the calling test (named by its module
/// path and the current function, found from the call site) and returns
/// from the function; `skip!(reason, ret)` returns `ret`.
#[macro_export]
macro_rules! skip {
    ($reason:expr) => {
        $crate::skip!($reason, ())
    };
    ($reason:expr, $ret:expr) => {{
        fn __here() {}
        let name = ::std::any::type_name_of_val(&__here);
        let name = name.strip_suffix("::__here").unwrap_or(name);
        $crate::skip::skip(name, &$reason);
        return $ret;
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_the_test_and_the_reason() {
        // Run in a child so the environment of this test binary is untouched.
        let exe = std::env::current_exe().unwrap();
        for (env, want_ok) in [("0", true), ("1", false)] {
            let out = std::process::Command::new(&exe)
                .args(["--exact", "skip::tests::helper_child", "--nocapture"])
                .env(NO_SKIP_ENV, env)
                .env("LPAR_MOVER_SKIP_CHILD", "1")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.success(), want_ok, "{env}: {stderr}");
            assert!(
                stderr.contains("SKIPPED lpar_mover::skip::tests::helper_child: no reason at all"),
                "{env}: {stderr}"
            );
        }
    }

    #[test]
    fn helper_child() {
        if std::env::var("LPAR_MOVER_SKIP_CHILD").is_err() {
            return; // only meaningful as the child of the test above
        }
        crate::skip!("no reason at all");
    }
}
