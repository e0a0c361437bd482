//! The one cryptography provider every TLS configuration of the agent uses
//! (the migration path's, the agents' mutual TLS, identities): aws-lc-rs
//! with TLS 1.3 AES-GCM only. Its own module, below all of them.

use rustls::crypto::{CryptoProvider, aws_lc_rs};
use std::sync::{Arc, OnceLock};

/// aws-lc-rs, restricted to the TLS 1.3 AES-GCM suites.
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = aws_lc_rs::default_provider();
        p.cipher_suites = vec![
            aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
            aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
        ];
        Arc::new(p)
    })
    .clone()
}
