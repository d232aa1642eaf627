//! The server's answer to the opening handshake, kept for the plugin (`conn:response()`, and
//! the third value of a refused `wsopen`).

/// The server's answer to the upgrade: what `conn:response()` shows, and what a refused open
/// hands the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status line as received (what `upgrade failed; …` quotes).
    pub status_line: String,
    pub status: u16,
    pub reason: String,
    /// Header fields in order, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The subprotocol the server chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.header("sec-websocket-protocol")
            .filter(|p| !p.is_empty())
    }
}
