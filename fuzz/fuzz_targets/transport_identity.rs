//! A peer's certificate is outside input: the agent reads its validity and
//! public key itself (`transport::x509`) before webpki or the pinned list
//! decide. Every input must give facts or an error, never a panic; facts
//! always point inside the input, and a trust check of any input (pinned,
//! at any time) ends in a fingerprint or a typed refusal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpar_mover::transport::identity::{CertificateDer, Fingerprint, Trust};
use lpar_mover::transport::x509;

fuzz_target!(|data: &[u8]| {
    if let Ok(facts) = x509::read(data) {
        let start = facts.spki.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + facts.spki.len() <= data.len());
        let fp = Fingerprint::of_spki(facts.spki);
        let trust = Trust::Pinned(vec![fp]);
        let chain = [CertificateDer::from(data.to_vec())];
        if facts.not_before <= facts.not_after {
            let mid = facts.not_before + (facts.not_after - facts.not_before) / 2;
            assert_eq!(trust.check(&chain, mid), Ok(fp));
        }
    }
    let _ = Trust::Pinned(Vec::new()).check(&[CertificateDer::from(data.to_vec())], 0);
});
