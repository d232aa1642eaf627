//! UTF-8 validation of whole text messages (RFC 6455 §8.1), with a word-at-a-time ASCII
//! prefix: most WebSocket text is ASCII JSON, and std's validator has a fixed cost that
//! dominates for the short messages a plugin mostly exchanges.

/// True when `bytes` are UTF-8.
#[inline]
pub fn is_utf8(bytes: &[u8]) -> bool {
    let words = bytes.chunks_exact(8);
    let mut ascii = 0;
    for w in words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        if u64::from_ne_bytes(b) & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        ascii += 8;
    }
    // ASCII bytes are whole characters, so the rest can be checked on its own.
    let rest = &bytes[ascii..];
    rest.is_ascii() || std::str::from_utf8(rest).is_ok()
}

#[cfg(test)]
mod tests {
    use super::is_utf8;

    #[test]
    fn agrees_with_std_around_word_boundaries() {
        let samples: [&[u8]; 9] = [
            b"",
            b"plain ascii, longer than a word or two",
            "caf\u{e9} au lait, \u{20ac}5, \u{1f600}".as_bytes(),
            b"12345678\xc3",        // a lead byte cut off after a whole ASCII word
            b"1234567\xc3\xa9tail", // a two-byte character across the word boundary
            b"\xed\xa0\x80 surrogate",
            b"overlong \xc0\xaf here",
            b"12345678123456\xf4\x90\x80\x80", // above U+10FFFF
            b"\xff",
        ];
        for s in samples {
            for start in 0..s.len().min(9) {
                let part = &s[start..];
                assert_eq!(is_utf8(part), std::str::from_utf8(part).is_ok(), "{part:?}");
            }
        }
    }
}
