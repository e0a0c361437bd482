//! The kept position of a policy (`<policy file>.state`, read by `moverctl
//! policy resume`) over arbitrary bytes: never a panic; a refusal is an EMG
//! of the client; a position that reads fits the policy (as many results
//! as entries, the next entry within them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::cli::policy::resume::{parse_state, policy_digest};
use lpar_mover::emg::Module;

const POLICY: &[u8] = b"mode = \"live\"\n[[entry]]\nlpar = \"a\"\nto = \"h:1\"\n[[entry]]\nlpar = \"b\"\nto = \"h:1\"\n";

fuzz_target!(|data: &[u8]| {
    // The state names the policy's digest: fuzz both a matching and the
    // raw one, so that reads past the digest check are reached.
    let digest = policy_digest(POLICY);
    let text = String::from_utf8_lossy(data).replace("@DIGEST@", &digest);
    for bytes in [data, text.as_bytes()] {
        match parse_state(bytes, POLICY, 2) {
            Ok(p) => assert!(p.entries.len() == 2 && p.next <= 2),
            Err(e) => assert_eq!(e.module, Module::Client),
        }
    }
});
