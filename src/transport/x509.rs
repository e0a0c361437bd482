//! The few facts of an X.509 certificate an agent reads itself, from the
//! DER a peer presented: its validity period and its public key (whose
//! SHA-256 is the agent's fingerprint). The signature chain is webpki's
//! job ([`super::identity`]); this decoder only walks to two fields.
//!
//! ```text
//! Certificate  SEQUENCE {
//!   tbsCertificate SEQUENCE {
//!     [0] version          (optional, explicit)
//!     serialNumber         INTEGER
//!     signature            SEQUENCE (algorithm)
//!     issuer               SEQUENCE (name)
//!     validity SEQUENCE { notBefore Time, notAfter Time }   ◀ read
//!     subject              SEQUENCE (name)
//!     subjectPublicKeyInfo SEQUENCE                          ◀ kept whole
//!     …                    (extensions: not read)
//!   }
//!   signatureAlgorithm, signatureValue   (not read)
//! }
//! Time = UTCTime "YYMMDDHHMMSSZ" (YY < 50: 20YY) | GeneralizedTime "YYYYMMDDHHMMSSZ"
//! ```
//!
//! Outside input: lengths are DER's definite form of at most
//! [`MAX_LENGTH_BYTES`] bytes, every length is checked against what is left,
//! and a certificate over [`MAX_CERTIFICATE`] bytes is refused before it
//! is read.

/// The largest certificate read: an agent's is under 1 KiB.
pub const MAX_CERTIFICATE: usize = 16 << 10;
/// Bytes of a DER long-form length (4: up to 4 GiB, far above
/// [`MAX_CERTIFICATE`]).
pub const MAX_LENGTH_BYTES: usize = 4;

/// What [`read`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts<'a> {
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    /// The DER of `subjectPublicKeyInfo`, tag and length included.
    pub spki: &'a [u8],
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xA0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// Reads the validity and public key of the DER certificate `der`.
pub fn read(der: &[u8]) -> Result<CertFacts<'_>, String> {
    if der.len() > MAX_CERTIFICATE {
        return Err(format!(
            "a certificate of {} bytes (at most {MAX_CERTIFICATE})",
            der.len()
        ));
    }
    let mut outer = Reader(der);
    let (cert, _) = outer.element(SEQUENCE, "Certificate")?;
    let mut cert = Reader(cert);
    let (tbs, _) = cert.element(SEQUENCE, "tbsCertificate")?;
    let mut tbs = Reader(tbs);
    if tbs.peek() == Some(VERSION) {
        tbs.element(VERSION, "version")?;
    }
    tbs.element(INTEGER, "serialNumber")?;
    tbs.element(SEQUENCE, "signature")?;
    tbs.element(SEQUENCE, "issuer")?;
    let (validity, _) = tbs.element(SEQUENCE, "validity")?;
    let mut validity = Reader(validity);
    let not_before = validity.time("notBefore")?;
    let not_after = validity.time("notAfter")?;
    tbs.element(SEQUENCE, "subject")?;
    let (_, spki) = tbs.element(SEQUENCE, "subjectPublicKeyInfo")?;
    Ok(CertFacts {
        not_before,
        not_after,
        spki,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// The next element, which must have `tag`: its content, and the whole
    /// element (tag and length included).
    fn element(&mut self, tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
        let data = self.0;
        let found = *data.first().ok_or(format!("{what}: ends early"))?;
        if found != tag {
            return Err(format!("{what}: tag {found:#04x}, expected {tag:#04x}"));
        }
        let first = *data.get(1).ok_or(format!("{what}: no length"))?;
        let (len, header) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7F) as usize;
            if n == 0 || n > MAX_LENGTH_BYTES {
                return Err(format!("{what}: a length of {n} bytes"));
            }
            let bytes = data
                .get(2..2 + n)
                .ok_or(format!("{what}: length cut short"))?;
            let len = bytes.iter().fold(0usize, |l, b| (l << 8) | *b as usize);
            (len, 2 + n)
        };
        let end = header
            .checked_add(len)
            .filter(|e| *e <= data.len())
            .ok_or(format!("{what}: {len} bytes, {} left", data.len() - header))?;
        self.0 = &data[end..];
        Ok((&data[header..end], &data[..end]))
    }

    fn time(&mut self, what: &str) -> Result<i64, String> {
        let (content, digits_of_year) = match self.peek() {
            Some(UTC_TIME) => (self.element(UTC_TIME, what)?.0, 2),
            _ => (self.element(GENERALIZED_TIME, what)?.0, 4),
        };
        parse_time(content, digits_of_year).ok_or_else(|| {
            format!(
                "{what}: '{}' is not a time",
                String::from_utf8_lossy(content).escape_debug()
            )
        })
    }
}

/// `[YY]YYMMDDHHMMSSZ` as seconds since the epoch.
fn parse_time(text: &[u8], year_digits: usize) -> Option<i64> {
    if text.len() != year_digits + 11 || text.last() != Some(&b'Z') {
        return None;
    }
    let digits = &text[..text.len() - 1];
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |from: usize, n: usize| {
        digits[from..from + n]
            .iter()
            .fold(0i64, |v, d| v * 10 + (d - b'0') as i64)
    };
    let mut year = num(0, year_digits);
    if year_digits == 2 {
        year += if year < 50 { 2000 } else { 1900 };
    }
    let at = year_digits;
    let (month, day) = (num(at, 2), num(at + 2, 2));
    let (hour, minute, second) = (num(at + 4, 2), num(at + 6, 2), num(at + 8, 2));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian; Howard
/// Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["hostA".to_string()]).unwrap();
        p.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        p.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let c = p.self_signed(&key).unwrap();
        (
            c.der().to_vec(),
            rcgen::PublicKeyData::subject_public_key_info(&key),
        )
    }

    #[test]
    fn validity_and_key_are_read_from_a_real_certificate() {
        // UTCTime before 2050, GeneralizedTime from 2050 on.
        let (der, spki) = cert((2001, 2, 3), (2060, 12, 31));
        let f = read(&der).unwrap();
        assert_eq!(f.not_before, 981_158_400);
        assert_eq!(f.not_after, 2_871_676_800);
        assert_eq!(f.spki, &spki[..]);
    }

    #[test]
    fn truncated_or_altered_certificates_are_errors_not_panics() {
        let (der, _) = cert((2020, 1, 1), (2030, 1, 1));
        for cut in 0..der.len() {
            assert!(read(&der[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = der.clone();
        bad[0] = 0x31;
        assert!(read(&bad).unwrap_err().contains("Certificate"));
        assert!(read(&vec![0x30; MAX_CERTIFICATE + 1]).is_err());
        // An indefinite or oversized length.
        assert!(read(&[0x30, 0x80, 0, 0]).is_err());
        assert!(read(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
    }

    #[test]
    fn times_are_checked_digit_by_digit() {
        assert_eq!(parse_time(b"700101000000Z", 2), Some(0));
        assert_eq!(parse_time(b"19700101000001Z", 4), Some(1));
        assert_eq!(parse_time(b"491231235959Z", 2), Some(2_524_607_999));
        assert_eq!(parse_time(b"701301000000Z", 2), None);
        assert_eq!(parse_time(b"7001010000+0Z", 2), None);
        assert_eq!(parse_time(b"700101000000", 2), None);
    }
}
