//! The permessage-deflate negotiation (RFC 7692 §5, §7.1): the `Sec-WebSocket-Extensions` value
//! luws offers, and the check of the server's answer, which yields what was agreed. No socket
//! and no codec here: `deflate` compresses with the result.

use thiserror::Error;

/// The one extension luws offers.
const NAME: &str = "permessage-deflate";

/// The largest LZ77 window, and the only one miniz_oxide compresses with.
const MAX_WINDOW_BITS: u8 = 15;
const WINDOW_BITS: std::ops::RangeInclusive<u8> = 8..=MAX_WINDOW_BITS;

/// What the user asks for (the deflate options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    /// A window for our compressor to promise (`client_max_window_bits=N`).
    pub client_max_window_bits: Option<u8>,
    /// Without a value, offer `client_max_window_bits` all the same, so that a server that
    /// wants to restrict our window accepts the offer instead of declining it (RFC 7692
    /// §7.1.2.2; Chrome offers the same). miniz_oxide compresses with a 15-bit window only, so
    /// under a smaller one we send uncompressed (`DeflateParams::compresses_outgoing`), which
    /// RFC 7692 allows and which also saves the compressor's memory: the messages that matter
    /// are the large ones servers send. `false` (the option `client_max_window_bits = false`)
    /// leaves it out, for a server that restricts but would not need to.
    pub offer_client_window: bool,
    /// A window to ask the server to keep to (`None`: not offered, the server chooses).
    pub server_max_window_bits: Option<u8>,
    /// Promise to compress each message on its own (less memory on the server's side).
    pub client_no_context_takeover: bool,
    /// Ask the server to compress each message on its own.
    pub server_no_context_takeover: bool,
    /// Messages shorter than this are sent uncompressed: below it, the deflate header and the
    /// compressor's time cost more than they save. 1024 is Node `ws`'s default.
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> DeflateConfig {
        DeflateConfig {
            client_max_window_bits: None,
            offer_client_window: true,
            server_max_window_bits: None,
            client_no_context_takeover: false,
            server_no_context_takeover: false,
            threshold: 1024,
        }
    }
}

impl DeflateConfig {
    /// Why the configuration cannot be offered, in words for a Lua option error.
    pub fn check(&self) -> Result<(), &'static str> {
        if self
            .client_max_window_bits
            .is_some_and(|b| !WINDOW_BITS.contains(&b))
        {
            return Err("client_max_window_bits must be between 8 and 15");
        }
        if self
            .server_max_window_bits
            .is_some_and(|b| !WINDOW_BITS.contains(&b))
        {
            return Err("server_max_window_bits must be between 8 and 15");
        }
        Ok(())
    }

    /// The `Sec-WebSocket-Extensions` request value.
    pub fn offer(&self) -> String {
        let mut s = String::from(NAME);
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if let Some(b) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={b}"));
        }
        match self.client_max_window_bits {
            Some(b) => s.push_str(&format!("; client_max_window_bits={b}")),
            None if self.offer_client_window => s.push_str("; client_max_window_bits"),
            None => {}
        }
        s
    }
}

/// What was agreed: how each side compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The largest window our compressor may use.
    pub client_max_window_bits: u8,
    /// The largest window the server compresses with (our inflater takes any, up to 15).
    pub server_max_window_bits: u8,
    /// Our compressor starts afresh at each message.
    pub client_no_context_takeover: bool,
    /// The server's does: our inflater must too.
    pub server_no_context_takeover: bool,
    /// From `DeflateConfig::threshold`.
    pub threshold: usize,
}

impl Default for DeflateParams {
    fn default() -> DeflateParams {
        DeflateParams {
            client_max_window_bits: MAX_WINDOW_BITS,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_no_context_takeover: false,
            server_no_context_takeover: false,
            threshold: DeflateConfig::default().threshold,
        }
    }
}

impl DeflateParams {
    /// Whether we compress at all. miniz_oxide compresses with a 15-bit window only, so under a
    /// smaller agreed window every message goes out uncompressed, which RFC 7692 §6 allows (a
    /// sender never has to compress); we still inflate what the server sends.
    pub fn compresses_outgoing(&self) -> bool {
        self.client_max_window_bits == MAX_WINDOW_BITS
    }

    /// Whether a message of `len` bytes goes out compressed.
    pub fn compresses(&self, len: usize) -> bool {
        self.compresses_outgoing() && len >= self.threshold
    }
}

/// A permessage-deflate parameter (RFC 7692 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    ServerNoContextTakeover,
    ClientNoContextTakeover,
    ServerMaxWindowBits,
    ClientMaxWindowBits,
}

impl Param {
    const ALL: [Param; 4] = [
        Param::ServerNoContextTakeover,
        Param::ClientNoContextTakeover,
        Param::ServerMaxWindowBits,
        Param::ClientMaxWindowBits,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Param::ServerNoContextTakeover => "server_no_context_takeover",
            Param::ClientNoContextTakeover => "client_no_context_takeover",
            Param::ServerMaxWindowBits => "server_max_window_bits",
            Param::ClientMaxWindowBits => "client_max_window_bits",
        }
    }

    fn named(name: &str) -> Option<Param> {
        Param::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the server's `Sec-WebSocket-Extensions` is refused (RFC 7692 §5.1, §7.1: the client
/// must fail the connection). The words follow `bad Sec-WebSocket-Extensions <value> (`; the
/// value is the caller's: all the header values joined with ", ", which HTTP reads as the same
/// list (RFC 9110 §5.3).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExtensionProblem {
    /// Not a list of `token *( ";" token [ "=" ( token / quoted-string ) ] )` (RFC 6455 §9.1).
    #[error("malformed")]
    Malformed,
    /// We offered permessage-deflate only.
    #[error("unknown extension {0}")]
    UnknownExtension(String),
    /// We made one offer; the server may accept it once.
    #[error("permessage-deflate twice")]
    Twice,
    #[error("unknown parameter {0}")]
    UnknownParameter(String),
    #[error("parameter {0} repeated")]
    Repeated(Param),
    /// A value on a `*_no_context_takeover`, or a window that is no decimal 8 to 15 without
    /// leading zeros, or none where one is required.
    #[error("bad value for {0}")]
    BadValue(Param),
    /// The server restricted our window, which we did not offer it to do.
    #[error("client_max_window_bits not offered")]
    ClientWindowNotOffered,
    /// The server named a larger window for its compressor than we offered.
    #[error("server_max_window_bits over the offer")]
    ServerWindowOverOffer,
}

/// Checks the server's `Sec-WebSocket-Extensions` values (every such header, in order) against
/// what `config.offer()` offered. `Ok(None)`: the server declined (no extension).
pub fn accept(
    config: &DeflateConfig,
    header_values: &[&str],
) -> Result<Option<DeflateParams>, ExtensionProblem> {
    let mut agreed = None;
    for value in header_values {
        for element in parse(value)? {
            if !element.name.eq_ignore_ascii_case(NAME) {
                return Err(ExtensionProblem::UnknownExtension(element.name.to_string()));
            }
            if agreed.is_some() {
                return Err(ExtensionProblem::Twice);
            }
            agreed = Some(agree(config, &element.params)?);
        }
    }
    Ok(agreed)
}

/// The parameters of a permessage-deflate answer, checked (§7.1) against the offer.
fn agree(
    config: &DeflateConfig,
    params: &[(&str, Option<String>)],
) -> Result<DeflateParams, ExtensionProblem> {
    let mut agreed = DeflateParams {
        client_max_window_bits: config.client_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
        // An answer without it when we offered one leaves the server any window: accepted,
        // since our inflater always has the 15-bit one.
        server_max_window_bits: MAX_WINDOW_BITS,
        // Resetting is always ours to do, whatever the server says.
        client_no_context_takeover: config.client_no_context_takeover,
        // Only the answer counts: were we to reset while the server does not, its next
        // message would refer to a window we no longer have.
        server_no_context_takeover: false,
        threshold: config.threshold,
    };
    let mut seen = Vec::with_capacity(params.len());
    for (name, value) in params {
        let param = Param::named(name)
            .ok_or_else(|| ExtensionProblem::UnknownParameter(name.to_string()))?;
        if seen.contains(&param) {
            return Err(ExtensionProblem::Repeated(param));
        }
        seen.push(param);
        match param {
            Param::ServerNoContextTakeover | Param::ClientNoContextTakeover => {
                if value.is_some() {
                    return Err(ExtensionProblem::BadValue(param));
                }
                if param == Param::ServerNoContextTakeover {
                    agreed.server_no_context_takeover = true;
                } else {
                    agreed.client_no_context_takeover = true;
                }
            }
            Param::ServerMaxWindowBits => {
                let bits =
                    window_bits(value.as_deref()).ok_or(ExtensionProblem::BadValue(param))?;
                if config
                    .server_max_window_bits
                    .is_some_and(|offer| bits > offer)
                {
                    return Err(ExtensionProblem::ServerWindowOverOffer);
                }
                // 8 is accepted: zlib cannot make 8-bit raw deflate windows and many servers
                // quietly use 9 instead, which does not matter to an inflater that keeps 15.
                agreed.server_max_window_bits = bits;
            }
            Param::ClientMaxWindowBits => {
                // Only in answer to our offer of it (§7.1.2.2), and with a value. A value over
                // our own offer is no conflict: we keep to the smaller.
                if config.client_max_window_bits.is_none() && !config.offer_client_window {
                    return Err(ExtensionProblem::ClientWindowNotOffered);
                }
                let bits =
                    window_bits(value.as_deref()).ok_or(ExtensionProblem::BadValue(param))?;
                agreed.client_max_window_bits = agreed.client_max_window_bits.min(bits);
            }
        }
    }
    Ok(agreed)
}

/// A window size: a decimal 8 to 15 without leading zeros (§7.1.2.1).
fn window_bits(value: Option<&str>) -> Option<u8> {
    let v = value?;
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| WINDOW_BITS.contains(b))
}

/// One element of an extension list.
#[derive(Debug, PartialEq, Eq)]
struct Element<'a> {
    name: &'a str,
    /// Names and values; a quoted value is unquoted.
    params: Vec<(&'a str, Option<String>)>,
}

/// Parses `1#( token *( OWS ";" OWS token [ OWS "=" OWS ( token / quoted-string ) ] ) )`;
/// empty list elements are skipped (RFC 9110 §5.6.1).
fn parse(value: &str) -> Result<Vec<Element<'_>>, ExtensionProblem> {
    let mut s = Scanner {
        text: value,
        pos: 0,
    };
    let mut elements = Vec::new();
    loop {
        s.skip_ows();
        match s.peek() {
            None => return Ok(elements),
            Some(b',') => {
                s.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = s.token()?;
        let mut params = Vec::new();
        loop {
            s.skip_ows();
            match s.peek() {
                None => break,
                Some(b',') => {
                    s.pos += 1;
                    break;
                }
                Some(b';') => s.pos += 1,
                Some(_) => return Err(ExtensionProblem::Malformed),
            }
            s.skip_ows();
            let param = s.token()?;
            s.skip_ows();
            let mut param_value = None;
            if s.peek() == Some(b'=') {
                s.pos += 1;
                s.skip_ows();
                param_value = Some(if s.peek() == Some(b'"') {
                    s.quoted()?
                } else {
                    s.token()?.to_string()
                });
            }
            params.push((param, param_value));
        }
        elements.push(Element { name, params });
    }
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// `1*tchar` (RFC 9110 §5.6.2).
    fn token(&mut self) -> Result<&'a str, ExtensionProblem> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        match self.text.get(start..self.pos) {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err(ExtensionProblem::Malformed),
        }
    }

    /// A quoted-string, unquoted (RFC 9110 §5.6.4).
    fn quoted(&mut self) -> Result<String, ExtensionProblem> {
        let bytes = self.text.as_bytes();
        let mut out = Vec::new();
        self.pos += 1;
        loop {
            match bytes.get(self.pos).copied() {
                None => return Err(ExtensionProblem::Malformed),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => match bytes.get(self.pos + 1).copied() {
                    Some(c) if c == b'\t' || c >= b' ' && c != 0x7f => {
                        out.push(c);
                        self.pos += 2;
                    }
                    _ => return Err(ExtensionProblem::Malformed),
                },
                Some(c) if c == b'\t' || c >= b' ' && c != 0x7f => {
                    out.push(c);
                    self.pos += 1;
                }
                Some(_) => return Err(ExtensionProblem::Malformed),
            }
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExtensionProblem as P;

    fn answer(values: &[&str]) -> Result<Option<DeflateParams>, ExtensionProblem> {
        accept(&DeflateConfig::default(), values)
    }

    fn agreed(values: &[&str]) -> DeflateParams {
        answer(values).unwrap().unwrap()
    }

    #[test]
    fn the_default_offer_leaves_the_client_window_to_the_server() {
        assert_eq!(
            DeflateConfig::default().offer(),
            "permessage-deflate; client_max_window_bits"
        );
        let without = DeflateConfig {
            offer_client_window: false,
            ..DeflateConfig::default()
        };
        assert_eq!(without.offer(), "permessage-deflate");
    }

    #[test]
    fn an_offer_names_every_restriction() {
        let config = DeflateConfig {
            client_max_window_bits: Some(12),
            offer_client_window: true,
            server_max_window_bits: Some(10),
            client_no_context_takeover: true,
            server_no_context_takeover: true,
            threshold: 0,
        };
        assert_eq!(
            config.offer(),
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12"
        );
    }

    #[test]
    fn window_bits_are_checked_for_the_option_error() {
        assert_eq!(DeflateConfig::default().check(), Ok(()));
        for bits in [8, 15] {
            let c = DeflateConfig {
                client_max_window_bits: Some(bits),
                server_max_window_bits: Some(bits),
                ..DeflateConfig::default()
            };
            assert_eq!(c.check(), Ok(()));
        }
        let c = DeflateConfig {
            client_max_window_bits: Some(7),
            ..DeflateConfig::default()
        };
        assert_eq!(
            c.check(),
            Err("client_max_window_bits must be between 8 and 15")
        );
        let c = DeflateConfig {
            server_max_window_bits: Some(16),
            ..DeflateConfig::default()
        };
        assert_eq!(
            c.check(),
            Err("server_max_window_bits must be between 8 and 15")
        );
    }

    #[test]
    fn no_header_or_an_empty_one_means_declined() {
        assert_eq!(answer(&[]), Ok(None));
        assert_eq!(answer(&[""]), Ok(None));
        assert_eq!(answer(&[" , "]), Ok(None));
    }

    #[test]
    fn a_plain_acceptance_agrees_on_the_defaults() {
        let p = agreed(&["permessage-deflate"]);
        assert_eq!(p, DeflateParams::default());
        assert!(p.compresses_outgoing());
        assert!(p.compresses(1024));
        assert!(!p.compresses(1023));
    }

    #[test]
    fn parameters_are_read_with_any_whitespace_and_quoting() {
        let p = agreed(&[
            "permessage-deflate ;server_no_context_takeover;\tclient_no_context_takeover ; \
             server_max_window_bits = \"10\"",
        ]);
        assert_eq!(p.server_max_window_bits, 10);
        assert!(p.server_no_context_takeover);
        assert!(p.client_no_context_takeover);
        assert_eq!(p.client_max_window_bits, 15);
        // A quoted-pair unescapes.
        assert_eq!(
            agreed(&["permessage-deflate; server_max_window_bits=\"1\\2\""]).server_max_window_bits,
            12
        );
    }

    #[test]
    fn only_the_answer_sets_server_no_context_takeover() {
        let config = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        let p = accept(&config, &["permessage-deflate"]).unwrap().unwrap();
        assert!(!p.server_no_context_takeover);
        assert!(p.client_no_context_takeover);
    }

    #[test]
    fn a_client_window_under_15_stops_outgoing_compression() {
        let offered = DeflateConfig {
            client_max_window_bits: Some(15),
            ..DeflateConfig::default()
        };
        let p = accept(&offered, &["permessage-deflate; client_max_window_bits=10"]);
        let p = p.unwrap().unwrap();
        assert_eq!(p.client_max_window_bits, 10);
        assert!(!p.compresses_outgoing());
        assert!(!p.compresses(1 << 20));
        // Our own offer of a smaller window holds even when the answer allows more.
        let config = DeflateConfig {
            client_max_window_bits: Some(9),
            ..DeflateConfig::default()
        };
        let p = accept(&config, &["permessage-deflate; client_max_window_bits=15"]);
        assert_eq!(p.unwrap().unwrap().client_max_window_bits, 9);
        let p = accept(&config, &["permessage-deflate"]).unwrap().unwrap();
        assert_eq!(p.client_max_window_bits, 9);
    }

    #[test]
    fn a_server_window_of_8_is_accepted() {
        assert_eq!(
            agreed(&["permessage-deflate; server_max_window_bits=8"]).server_max_window_bits,
            8
        );
    }

    #[test]
    fn another_extension_is_refused() {
        assert_eq!(
            answer(&["x-webkit-deflate-frame"]),
            Err(P::UnknownExtension("x-webkit-deflate-frame".into()))
        );
        assert_eq!(
            answer(&["permessage-deflate, foo; bar=1"]),
            Err(P::UnknownExtension("foo".into()))
        );
    }

    #[test]
    fn permessage_deflate_twice_is_refused_in_one_header_or_two() {
        assert_eq!(
            answer(&["permessage-deflate, permessage-deflate"]),
            Err(P::Twice)
        );
        assert_eq!(
            answer(&[
                "permessage-deflate",
                "permessage-deflate; server_no_context_takeover"
            ]),
            Err(P::Twice)
        );
    }

    #[test]
    fn an_unknown_parameter_is_refused() {
        assert_eq!(
            answer(&["permessage-deflate; mux"]),
            Err(P::UnknownParameter("mux".into()))
        );
    }

    #[test]
    fn a_repeated_parameter_is_refused() {
        assert_eq!(
            answer(&["permessage-deflate; server_no_context_takeover; server_no_context_takeover"]),
            Err(P::Repeated(Param::ServerNoContextTakeover))
        );
        assert_eq!(
            answer(&["permessage-deflate; server_max_window_bits=9; server_max_window_bits=9"]),
            Err(P::Repeated(Param::ServerMaxWindowBits))
        );
    }

    #[test]
    fn no_context_takeover_takes_no_value() {
        assert_eq!(
            answer(&["permessage-deflate; client_no_context_takeover=1"]),
            Err(P::BadValue(Param::ClientNoContextTakeover))
        );
        assert_eq!(
            answer(&["permessage-deflate; server_no_context_takeover=\"\""]),
            Err(P::BadValue(Param::ServerNoContextTakeover))
        );
    }

    #[test]
    fn window_bits_must_be_decimal_8_to_15() {
        for bad in ["7", "16", "010", "08", "1a", "+9", "\"\"", "\"9 \"", "255"] {
            let header = format!("permessage-deflate; server_max_window_bits={bad}");
            assert_eq!(
                answer(&[&header]),
                Err(P::BadValue(Param::ServerMaxWindowBits)),
                "{bad}"
            );
        }
        // In an answer both need a value.
        assert_eq!(
            answer(&["permessage-deflate; server_max_window_bits"]),
            Err(P::BadValue(Param::ServerMaxWindowBits))
        );
        let offered = DeflateConfig {
            client_max_window_bits: Some(15),
            ..DeflateConfig::default()
        };
        assert_eq!(
            accept(&offered, &["permessage-deflate; client_max_window_bits"]),
            Err(P::BadValue(Param::ClientMaxWindowBits))
        );
        // Without our offer the server may not name our window at all (§7.1.2.2).
        let without = DeflateConfig {
            offer_client_window: false,
            ..DeflateConfig::default()
        };
        assert_eq!(
            accept(&without, &["permessage-deflate; client_max_window_bits=10"]),
            Err(P::ClientWindowNotOffered)
        );
    }

    #[test]
    fn a_server_window_over_the_offer_is_refused() {
        let config = DeflateConfig {
            server_max_window_bits: Some(10),
            ..DeflateConfig::default()
        };
        let over = accept(&config, &["permessage-deflate; server_max_window_bits=11"]);
        assert_eq!(over, Err(P::ServerWindowOverOffer));
        let p = accept(&config, &["permessage-deflate; server_max_window_bits=10"]);
        assert_eq!(p.unwrap().unwrap().server_max_window_bits, 10);
        // Not offered: the server may name any.
        assert_eq!(
            agreed(&["permessage-deflate; server_max_window_bits=15"]).server_max_window_bits,
            15
        );
    }

    #[test]
    fn malformed_lists_are_refused() {
        for bad in [
            "permessage-deflate;",
            "permessage-deflate; =1",
            "permessage-deflate; server_max_window_bits=",
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate server_no_context_takeover",
            "permessage-deflate; a b",
            "\"permessage-deflate\"",
            "permessage-deflate; server_max_window_bits=\"1\x01\"",
        ] {
            assert_eq!(answer(&[bad]), Err(P::Malformed), "{bad}");
        }
    }

    #[test]
    fn the_words_follow_the_upgrade_failure() {
        assert_eq!(
            P::UnknownExtension("x".into()).to_string(),
            "unknown extension x"
        );
        assert_eq!(P::Twice.to_string(), "permessage-deflate twice");
        assert_eq!(
            P::UnknownParameter("x".into()).to_string(),
            "unknown parameter x"
        );
        assert_eq!(
            P::Repeated(Param::ClientNoContextTakeover).to_string(),
            "parameter client_no_context_takeover repeated"
        );
        assert_eq!(
            P::BadValue(Param::ServerMaxWindowBits).to_string(),
            "bad value for server_max_window_bits"
        );
        assert_eq!(
            P::ServerWindowOverOffer.to_string(),
            "server_max_window_bits over the offer"
        );
        assert_eq!(P::Malformed.to_string(), "malformed");
    }
}
