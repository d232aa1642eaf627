//! Public-key pinning (`ssl_pin`): the SHA-256 of the server certificate's
//! SubjectPublicKeyInfo, spelled as curl's `--pinnedpubkey` spells it (`sha256//<base64>`,
//! also accepted with one slash). The backends give the leaf certificate and the hash; finding
//! the key inside the certificate is here, once, for both.

/// A pinned key: the SHA-256 of a DER SubjectPublicKeyInfo.
pub type Pin = [u8; 32];

/// Parses `sha256//<base64>` or `sha256/<base64>` (44 base64 characters with padding).
pub fn parse_pin(text: &str) -> Result<Pin, String> {
    let t = text.trim();
    let b64 = t
        .strip_prefix("sha256//")
        .or_else(|| t.strip_prefix("sha256/"))
        .ok_or_else(|| format!("'{t}' is not sha256//<base64 of the key's SHA-256>"))?;
    let bytes = base64_decode(b64).ok_or_else(|| format!("'{t}': the hash is not valid base64"))?;
    bytes
        .try_into()
        .map_err(|_| format!("'{t}': a SHA-256 hash is 32 bytes (44 base64 characters)"))
}

/// Standard base64 with padding (RFC 4648 §4); `None` on any other character or length.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let s = s.as_bytes();
    if s.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (i, quad) in s.chunks(4).enumerate() {
        let last = i == s.len() / 4 - 1;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = n << 6 | u32::from(value(c)?);
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// One DER TLV at the start of `der`: its tag, its contents, and what follows it.
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| a << 8 | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The DER SubjectPublicKeyInfo (tag and length included) of an X.509 certificate
/// (RFC 5280 §4.1: Certificate → tbsCertificate → [version], serial, signature, issuer,
/// validity, subject, subjectPublicKeyInfo).
pub fn subject_public_key_info(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    let (tag, certificate, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // The optional [0] EXPLICIT version.
    if rest.first() == Some(&0xA0) {
        rest = tlv(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = tlv(rest)?.2;
    }
    let (tag, _, after) = tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    Some(&rest[..rest.len() - after.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_curl_spelling_and_refuses_other_hashes_and_lengths() {
        let pin = "sha256//AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let expect: Pin = std::array::from_fn(|i| i as u8);
        assert_eq!(parse_pin(pin), Ok(expect));
        assert_eq!(parse_pin(&pin.replacen("//", "/", 1)), Ok(expect));
        assert!(
            parse_pin("sha1//AAEC")
                .unwrap_err()
                .contains("is not sha256//")
        );
        assert!(parse_pin("sha256//AAEC").unwrap_err().contains("32 bytes"));
        assert!(
            parse_pin("sha256//AAE*")
                .unwrap_err()
                .contains("not valid base64")
        );
        assert!(parse_pin("sha256//AA==AAAA").is_err());
    }

    #[test]
    fn base64_round_trips_every_tail_length() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = crate::handshake::base64(&data);
            assert_eq!(base64_decode(&text), Some(data), "{text}");
        }
        assert_eq!(base64_decode("QQ="), None);
        assert_eq!(base64_decode("Q==="), None);
    }

    /// A certificate's structure with placeholder contents (the walker reads only tags and
    /// lengths), with and without the version field and with a long-form length.
    fn certificate(version: bool, spki: &[u8]) -> Vec<u8> {
        let field = |tag: u8, body: &[u8]| {
            let mut v = vec![tag];
            if body.len() < 0x80 {
                v.push(body.len() as u8);
            } else {
                v.extend_from_slice(&[0x82, (body.len() >> 8) as u8, body.len() as u8]);
            }
            v.extend_from_slice(body);
            v
        };
        let mut tbs = Vec::new();
        if version {
            tbs.extend(field(0xA0, &field(0x02, &[2])));
        }
        tbs.extend(field(0x02, &[0x10, 0x01])); // serial
        tbs.extend(field(0x30, &[0x06, 0x01, 0x2a])); // signature algorithm
        tbs.extend(field(0x30, &[0u8; 200])); // issuer, long form
        tbs.extend(field(0x30, &[0u8; 30])); // validity
        tbs.extend(field(0x30, &[0u8; 10])); // subject
        tbs.extend_from_slice(spki);
        tbs.extend(field(0xA3, &[0u8; 5])); // extensions
        let mut cert = field(0x30, &tbs);
        cert.extend(field(0x30, &[0x06, 0x01, 0x2a]));
        cert.extend(field(0x03, &[0, 1, 2]));
        field(0x30, &cert[..])
    }

    #[test]
    fn finds_the_key_with_and_without_a_version_field() {
        let spki = [0x30, 0x05, 0x30, 0x00, 0x03, 0x01, 0x00];
        for version in [true, false] {
            let c = certificate(version, &spki);
            assert_eq!(subject_public_key_info(&c), Some(&spki[..]));
        }
    }

    #[test]
    fn truncated_or_foreign_input_has_no_key() {
        let c = certificate(true, &[0x30, 0x05, 0x30, 0x00, 0x03, 0x01, 0x00]);
        for cut in [0, 1, 2, 10, c.len() / 2] {
            assert_eq!(subject_public_key_info(&c[..cut]), None, "cut at {cut}");
        }
        assert_eq!(
            subject_public_key_info(b"-----BEGIN CERTIFICATE-----"),
            None
        );
        assert_eq!(
            subject_public_key_info(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
    }
}
