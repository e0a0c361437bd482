//! An agent's identity: its private key and certificate (`moverd init`),
//! and whom it trusts: a site CA, or a list of peers' public-key
//! fingerprints. Agents authenticate each other with these over mutual
//! TLS on the management path ([`super::peer_tls`]).
//!
//! ```text
//! <dir>/agent.key   PKCS#8 PEM, ECDSA P-256, mode 0600 (refused if others may read it)
//! <dir>/agent.crt   PEM: self-signed, or signed by the site CA (moverd init --ca <ca dir>)
//! <ca dir>/ca.key   the site CA's key (0600), kept where certificates are issued
//! <ca dir>/ca.crt   the site CA's certificate: `trusted_ca` in every agent's configuration
//! fingerprint       "sha256:" + hex(SHA-256(subjectPublicKeyInfo DER)): names the key,
//!                   so a renewed certificate for the same key keeps its fingerprint
//! ```
//!
//! A peer's certificate is accepted ([`Trust::check`]) when it is within
//! its validity period and either signed by the site CA (webpki checks the
//! chain) or its key's fingerprint is listed. Every other outcome is a
//! [`Refusal`] that says which, so the EMG can tell an operator what to
//! fix.

use super::provider::provider;
use super::x509;
use crate::emg::{Emg, Module, phase};
pub use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The agent's private key, in its identity directory.
pub const KEY_FILE: &str = "agent.key";
/// The agent's certificate, in its identity directory.
pub const CERT_FILE: &str = "agent.crt";
/// The site CA's private key, in the CA's directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// The site CA's certificate, in the CA's directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// How long `moverd init` makes a certificate valid: two years and a bit
/// (825 days, the CA/Browser Forum's former limit).
pub const DEFAULT_VALIDITY_DAYS: u32 = 825;
/// The site CA's subject: one CA per site, so a fixed name.
const CA_NAME: &str = "lpar-mover site CA";

/// A key's SHA-256 fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER `subjectPublicKeyInfo`.
    pub fn of_spki(spki: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(spki).into())
    }

    /// `sha256:<64 hex digits>` (colons between bytes, and case, ignored).
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let hex: String = text
            .trim()
            .strip_prefix("sha256:")
            .unwrap_or(text.trim())
            .chars()
            .filter(|c| *c != ':')
            .collect();
        let bad = || format!("'{}' is not sha256:<64 hex digits>", text.escape_debug());
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Fingerprint::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A certificate's validity period, seconds since the Unix epoch.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// From an hour ago (clocks differ a little) for `days` days.
    pub fn days_from_now(days: u32) -> Validity {
        let now = now();
        Validity {
            not_before: now - 3600,
            not_after: now + days as i64 * 86_400,
        }
    }
}

/// Now, seconds since the Unix epoch.
pub fn now() -> i64 {
    UnixTime::now().as_secs() as i64
}

fn identity_error(message: String, action: impl Into<String>) -> Emg {
    Emg::new(
        Module::Management,
        phase::INFORMATION,
        0x01,
        message,
        action,
    )
}

fn io_error(what: &str, path: &Path, e: impl fmt::Display) -> Emg {
    identity_error(
        format!("cannot {what} {}: {e}", path.display()),
        "Check the identity directory (identity_dir; moverd init --dir) and its permissions.",
    )
}

/// Refuses a private file (key, token) that its group or others may read
/// or write: the agent's identity would be anyone's.
pub fn check_private(path: &Path, file: &std::fs::File, what: &str) -> Result<(), Emg> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|e| io_error("read", path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(identity_error(
            format!(
                "{what} {} is open to others (mode {:04o}): anyone who reads it can act as \
                 this agent",
                path.display(),
                mode & 0o7777
            ),
            format!("Make it private to its owner: chmod 600 {}", path.display()),
        ));
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<(), Emg> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error("create", path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| io_error("write", path, e))
}

fn refuse_existing(path: &Path) -> Result<(), Emg> {
    if path.exists() {
        return Err(identity_error(
            format!(
                "{} exists: this directory has an identity already",
                path.display()
            ),
            "Keep it (moverd identity shows its fingerprint), or remove agent.key and agent.crt \
             to make a new one (peers that pinned the old fingerprint must be told the new one).",
        ));
    }
    Ok(())
}

fn params(name: &str, validity: Validity) -> Result<rcgen::CertificateParams, Emg> {
    let bad = |e: rcgen::Error| identity_error(format!("certificate for '{name}': {e}"), "");
    let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(bad)?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    let at =
        |s: i64| rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(s.max(0) as u64);
    p.not_before = at(validity.not_before);
    p.not_after = at(validity.not_after);
    Ok(p)
}

fn ca_params() -> Result<rcgen::CertificateParams, Emg> {
    let mut p = params(CA_NAME, Validity::days_from_now(10 * 365))?;
    p.subject_alt_names.clear();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    Ok(p)
}

/// Creates the site CA in `dir` (`ca.key`, `ca.crt`); its fingerprint.
pub fn init_ca(dir: &Path) -> Result<Fingerprint, Emg> {
    std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
    let (key_path, cert_path) = (dir.join(CA_KEY_FILE), dir.join(CA_CERT_FILE));
    refuse_existing(&key_path)?;
    let key = rcgen::KeyPair::generate().map_err(|e| io_error("generate a key for", dir, e))?;
    let cert = ca_params()?
        .self_signed(&key)
        .map_err(|e| io_error("sign", &cert_path, e))?;
    write_private(&key_path, &key.serialize_pem())?;
    std::fs::write(&cert_path, cert.pem()).map_err(|e| io_error("write", &cert_path, e))?;
    Ok(Fingerprint::of_spki(
        &rcgen::PublicKeyData::subject_public_key_info(&key),
    ))
}

/// Creates an agent identity named `name` in `dir` (`agent.key` 0600,
/// `agent.crt`), self-signed or signed by the CA in `ca_dir`; returns the
/// key's fingerprint. An existing identity is never overwritten.
pub fn init(
    dir: &Path,
    name: &str,
    validity: Validity,
    ca_dir: Option<&Path>,
) -> Result<Fingerprint, Emg> {
    std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
    let (key_path, cert_path) = (dir.join(KEY_FILE), dir.join(CERT_FILE));
    refuse_existing(&key_path)?;
    refuse_existing(&cert_path)?;
    let key = rcgen::KeyPair::generate().map_err(|e| io_error("generate a key for", dir, e))?;
    let mut p = params(name, validity)?;
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = match ca_dir {
        None => p.self_signed(&key),
        Some(ca) => {
            let ca_key_path = ca.join(CA_KEY_FILE);
            let text = read_private(&ca_key_path, "CA key file")?;
            let ca_key = rcgen::KeyPair::from_pem(&text)
                .map_err(|e| io_error("read the key in", &ca_key_path, e))?;
            let issuer = rcgen::Issuer::new(ca_params()?, ca_key);
            p.signed_by(&key, &issuer)
        }
    }
    .map_err(|e| io_error("sign", &cert_path, e))?;
    write_private(&key_path, &key.serialize_pem())?;
    std::fs::write(&cert_path, cert.pem()).map_err(|e| io_error("write", &cert_path, e))?;
    Ok(Fingerprint::of_spki(
        &rcgen::PublicKeyData::subject_public_key_info(&key),
    ))
}

fn read_private(path: &Path, what: &str) -> Result<String, Emg> {
    let file = std::fs::File::open(path).map_err(|e| io_error("read", path, e))?;
    check_private(path, &file, what)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, 64 << 10), &mut text)
        .map_err(|e| io_error("read", path, e))?;
    Ok(text)
}

/// Whether `dir` holds an agent identity (its key file).
pub fn exists(dir: &Path) -> bool {
    dir.join(KEY_FILE).exists()
}

/// A loaded agent identity.
#[derive(Clone, Debug)]
pub struct AgentIdentity {
    pub cert: CertificateDer<'static>,
    pub key: Arc<PrivateKeyDer<'static>>,
    pub fingerprint: Fingerprint,
    pub validity: Validity,
    pub dir: PathBuf,
}

impl AgentIdentity {
    /// Reads `dir`'s identity: the key must be private to its owner and
    /// match the certificate.
    pub fn load(dir: &Path) -> Result<AgentIdentity, Emg> {
        let (key_path, cert_path) = (dir.join(KEY_FILE), dir.join(CERT_FILE));
        let key_text = read_private(&key_path, "key file")?;
        let key = PrivateKeyDer::from_pem_slice(key_text.as_bytes())
            .map_err(|e| io_error("read the key in", &key_path, e))?;
        let cert = CertificateDer::from_pem_file(&cert_path)
            .map_err(|e| io_error("read the certificate in", &cert_path, e))?;
        let facts = x509::read(&cert).map_err(|e| io_error("read", &cert_path, e))?;
        let (fingerprint, validity) = (
            Fingerprint::of_spki(facts.spki),
            Validity {
                not_before: facts.not_before,
                not_after: facts.not_after,
            },
        );
        rustls::sign::CertifiedKey::from_der(vec![cert.clone()], key.clone_key(), &provider())
            .map_err(|e| {
                identity_error(
                    format!(
                        "the certificate {} does not go with the key {}: {e}",
                        cert_path.display(),
                        key_path.display()
                    ),
                    "Put the certificate made with this key back (moverd init made both), or \
                     make a new identity: remove both files and run moverd init.",
                )
            })?;
        Ok(AgentIdentity {
            cert,
            key: Arc::new(key),
            fingerprint,
            validity,
            dir: dir.to_path_buf(),
        })
    }
}

/// Whom an agent accepts as a peer.
#[derive(Clone)]
pub enum Trust {
    /// Certificates the site CA signed.
    Ca {
        file: PathBuf,
        verifier: Arc<dyn ClientCertVerifier>,
    },
    /// Keys by fingerprint.
    Pinned(Vec<Fingerprint>),
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::Ca { file, .. } => write!(f, "Ca({})", file.display()),
            Trust::Pinned(p) => write!(f, "Pinned({p:?})"),
        }
    }
}

/// Why a peer's certificate was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Valid, but neither listed nor signed by a trusted CA (pinned mode:
    /// not listed).
    Unknown { fingerprint: Fingerprint },
    /// Outside its validity period (`expired`: past it, else not yet).
    Expired {
        fingerprint: Fingerprint,
        not_after: i64,
        not_before: i64,
        now: i64,
    },
    /// Not signed by the site CA, or not a certificate webpki accepts.
    Wrong {
        fingerprint: Option<Fingerprint>,
        why: String,
    },
    /// The peer presented none.
    Missing,
    /// A site-CA certificate issued for another agent name than the one
    /// its holder introduced itself with.
    Misnamed {
        fingerprint: Option<Fingerprint>,
        claimed: String,
    },
}

impl Trust {
    /// From the configuration: a CA certificate file, or fingerprints.
    pub fn configure(ca: Option<&Path>, peers: &[Fingerprint]) -> Result<Option<Trust>, Emg> {
        match (ca, peers.is_empty()) {
            (Some(file), _) => {
                let cert = CertificateDer::from_pem_file(file)
                    .map_err(|e| io_error("read the CA certificate in", file, e))?;
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(cert)
                    .map_err(|e| io_error("use the CA certificate in", file, e))?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .map_err(|e| io_error("use the CA certificate in", file, e))?;
                Ok(Some(Trust::Ca {
                    file: file.to_path_buf(),
                    verifier,
                }))
            }
            (None, false) => Ok(Some(Trust::Pinned(peers.to_vec()))),
            (None, true) => Ok(None),
        }
    }

    /// Checks the chain a peer presented (its certificate first) at `now`;
    /// the peer's key fingerprint when it is trusted.
    pub fn check(&self, chain: &[CertificateDer<'_>], now: i64) -> Result<Fingerprint, Refusal> {
        let end = chain.first().ok_or(Refusal::Missing)?;
        let facts = x509::read(end).map_err(|why| Refusal::Wrong {
            fingerprint: None,
            why: format!("unreadable certificate: {why}"),
        })?;
        let fingerprint = Fingerprint::of_spki(facts.spki);
        if now < facts.not_before || now > facts.not_after {
            return Err(Refusal::Expired {
                fingerprint,
                not_after: facts.not_after,
                not_before: facts.not_before,
                now,
            });
        }
        match self {
            Trust::Pinned(keys) if keys.contains(&fingerprint) => Ok(fingerprint),
            Trust::Pinned(_) => Err(Refusal::Unknown { fingerprint }),
            Trust::Ca { verifier, .. } => {
                let at =
                    UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0) as u64));
                verifier
                    .verify_client_cert(end, &chain[1..], at)
                    .map(|_| fingerprint)
                    .map_err(|e| Refusal::Wrong {
                        fingerprint: Some(fingerprint),
                        why: match e {
                            rustls::Error::InvalidCertificate(
                                rustls::CertificateError::UnknownIssuer
                                | rustls::CertificateError::BadSignature,
                            ) => "it is not signed by the site CA".to_string(),
                            e => e.to_string(),
                        },
                    })
            }
        }
    }

    /// Checks that `end`, a certificate [`Trust::check`] accepted, was
    /// issued for `name`, the agent name its holder introduced itself with.
    /// A site CA vouches for every agent it signed, so without this check
    /// any of them could answer as another; a pinned key names its agent
    /// already.
    pub fn check_name(&self, end: &CertificateDer<'_>, name: &str) -> Result<(), Refusal> {
        if let Trust::Pinned(_) = self {
            return Ok(());
        }
        let misnamed = || Refusal::Misnamed {
            fingerprint: x509::read(end).ok().map(|f| Fingerprint::of_spki(f.spki)),
            claimed: name.to_string(),
        };
        let subject = ServerName::try_from(name.to_string()).map_err(|_| misnamed())?;
        let parsed = rustls::server::ParsedCertificate::try_from(end).map_err(|_| misnamed())?;
        rustls::client::verify_server_name(&parsed, &subject).map_err(|_| misnamed())
    }
}

/// A date for messages: `YYYY-MM-DD HH:MM:SS UTC`.
pub fn show_time(secs: i64) -> String {
    let t = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(secs.max(0) as u64);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(dir: &Path) -> AgentIdentity {
        AgentIdentity::load(dir).unwrap()
    }

    #[test]
    fn init_writes_a_private_key_and_a_certificate_that_load_back() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let fp = init(d.path(), "hostA", Validity::days_from_now(1), None).unwrap();
        let mode = std::fs::metadata(d.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let id = load(d.path());
        assert_eq!(id.fingerprint, fp);
        assert_eq!(Fingerprint::parse(&fp.to_string()).unwrap(), fp);
        let e = init(d.path(), "hostA", Validity::days_from_now(1), None).unwrap_err();
        assert!(e.message.contains("exists"), "{e}");
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_with_chmod() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        init(d.path(), "hostA", Validity::days_from_now(1), None).unwrap();
        let key = d.path().join(KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = AgentIdentity::load(d.path()).unwrap_err();
        assert!(e.action.contains("chmod 600"), "{e}");
    }

    #[test]
    fn a_certificate_of_another_key_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        init(a.path(), "hostA", Validity::days_from_now(1), None).unwrap();
        init(b.path(), "hostB", Validity::days_from_now(1), None).unwrap();
        std::fs::copy(b.path().join(CERT_FILE), a.path().join(CERT_FILE)).unwrap();
        let e = AgentIdentity::load(a.path()).unwrap_err();
        assert!(e.message.contains("does not go with the key"), "{e}");
    }

    #[test]
    fn pinned_trust_takes_listed_keys_within_their_validity_only() {
        let d = tempfile::tempdir().unwrap();
        let fp = init(d.path(), "hostA", Validity::days_from_now(2), None).unwrap();
        let id = load(d.path());
        let chain = [id.cert.clone()];
        assert_eq!(Trust::Pinned(vec![fp]).check(&chain, now()), Ok(fp));
        assert_eq!(
            Trust::Pinned(vec![Fingerprint([7; 32])]).check(&chain, now()),
            Err(Refusal::Unknown { fingerprint: fp })
        );
        let later = now() + 3 * 86_400;
        assert!(matches!(
            Trust::Pinned(vec![fp]).check(&chain, later),
            Err(Refusal::Expired { .. })
        ));
        assert_eq!(
            Trust::Pinned(vec![fp]).check(&[], now()),
            Err(Refusal::Missing)
        );
    }

    #[test]
    fn ca_trust_takes_what_the_site_ca_signed_and_nothing_else() {
        let (ca, other_ca) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        init_ca(ca.path()).unwrap();
        init_ca(other_ca.path()).unwrap();
        let trust = Trust::configure(Some(&ca.path().join(CA_CERT_FILE)), &[])
            .unwrap()
            .unwrap();
        let (good, bad, own) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let v = Validity::days_from_now(1);
        let fp = init(good.path(), "hostA", v, Some(ca.path())).unwrap();
        init(bad.path(), "hostB", v, Some(other_ca.path())).unwrap();
        init(own.path(), "hostC", v, None).unwrap();
        assert_eq!(trust.check(&[load(good.path()).cert], now()), Ok(fp));
        // hostA's certificate answers for hostA only.
        assert_eq!(trust.check_name(&load(good.path()).cert, "hostA"), Ok(()));
        for claimed in ["hostB", "hosta.example", "not a name"] {
            assert_eq!(
                trust.check_name(&load(good.path()).cert, claimed),
                Err(Refusal::Misnamed {
                    fingerprint: Some(fp),
                    claimed: claimed.to_string()
                })
            );
        }
        for d in [&bad, &own] {
            match trust.check(&[load(d.path()).cert], now()) {
                Err(Refusal::Wrong { why, .. }) => assert!(why.contains("site CA"), "{why}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn fingerprints_parse_loosely_and_refuse_garbage() {
        let fp = Fingerprint([0xab; 32]);
        let text = fp.to_string();
        assert_eq!(
            Fingerprint::parse(&text.to_uppercase().replace("SHA256:", "")),
            Ok(fp)
        );
        assert!(Fingerprint::parse("sha256:abc").is_err());
        assert!(Fingerprint::parse(&"zz".repeat(32)).is_err());
        assert!(Fingerprint::parse(&"é".repeat(32)).is_err());
        assert_eq!(show_time(0), "1970-01-01 00:00:00 UTC");
    }
}
