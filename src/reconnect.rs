//! Connections that come back by themselves: the backoff policy (`reconnect` option), and the
//! reopener, which runs an outage's attempts off the Lua thread — the same opener `wsopen` uses,
//! each attempt bounded by `connect_timeout` and `handshake_timeout` — and hands the new session
//! over through a channel. The Lua thread only ever looks (`poll`); it never waits for the
//! reopener, and cancelling is a signal.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, TryRecvError};

use crate::backoff::Policy;
use crate::error::Error;
use crate::notify::Gate;
use crate::poll::PollInfo;
use crate::session::Session;
use crate::spec::OpenSpec;
use crate::sys::{Interest, poke, wait_fd};

/// What the reopener has to say.
pub enum Report {
    /// An attempt failed; more follow (after their delay).
    Failed { attempt: u32, error: Error },
    /// The connection is back, after `attempt` attempts this outage; `backoff` is the backoff
    /// index it used (where the next outage goes on from if this connection is short-lived).
    Open {
        attempt: u32,
        backoff: u32,
        session: Box<Session>,
    },
    /// `attempts` ran out; the last failure.
    GaveUp(Error),
}

/// Failure reports kept for the application to read.
const REPORTS_KEPT: usize = 8;

/// One outage's attempts, running on a helper thread.
pub struct Reopener {
    reports: Receiver<Report>,
    /// Readable when a report waits (for `select`, `luws.wait`, `loop()`).
    news: UnixStream,
    /// Stops the attempts and every notifier they start.
    gate: Arc<Gate>,
    /// A byte here ends the helper's wait between attempts early.
    cancel: UnixStream,
    /// The reopened session was handed over: its notifier lives on under this gate.
    delivered: std::cell::Cell<bool>,
}

impl Reopener {
    /// Starts reopening `spec` with `policy`, the first attempt at backoff index `backoff`.
    pub fn start(spec: OpenSpec, policy: Policy, backoff: u32) -> std::io::Result<Reopener> {
        let (news, news_tx) = UnixStream::pair()?;
        news.set_nonblocking(true)?;
        let (cancel, cancel_rx) = UnixStream::pair()?;
        cancel.set_nonblocking(true)?;
        let gate = Arc::new(Gate::default());
        // Bounded: failures that nobody reads are dropped past a few (a plugin that does not
        // look for hours must not pile them up); the last word (open, gave up) always arrives.
        let (tx, reports) = mpsc::sync_channel(REPORTS_KEPT);
        let mut spec = spec;
        // The new connection's watcher tells the host at once that it is back, and stops with
        // this reopener if the application closes before taking it.
        spec.announce = true;
        spec.notify_gate = Some(gate.clone());
        let stop = gate.clone();
        std::thread::Builder::new()
            .name("luws-reconnect".into())
            .spawn(move || {
                let tell = |r: Report| {
                    // A closed channel means the application let go: nothing more to do.
                    let sent = match r {
                        Report::Failed { .. } => {
                            !matches!(tx.try_send(r), Err(mpsc::TrySendError::Disconnected(_)))
                        }
                        last => tx.send(last).is_ok(),
                    };
                    poke(news_tx.as_raw_fd());
                    sent
                };
                let mut failures = 0u32;
                let mut n = backoff.max(1);
                loop {
                    let d = policy.delay(n, jitter_draw());
                    // Readable means cancelled; a timeout means the delay is over.
                    if !matches!(wait_fd(cancel_rx.as_raw_fd(), Interest::Read, d), Ok(false))
                        || stop.is_stopped()
                    {
                        return;
                    }
                    match crate::open::open_blocking(spec.clone(), None) {
                        Ok(s) => {
                            tell(Report::Open {
                                attempt: failures + 1,
                                backoff: n,
                                session: Box::new(s),
                            });
                            return;
                        }
                        Err(error) => {
                            failures += 1;
                            if policy.attempts.is_some_and(|a| failures >= a) {
                                tell(Report::GaveUp(error));
                                // With notify, Luup must hear of it: no watcher runs now.
                                if let Some(t) = &spec.notify {
                                    let found = crate::tcp::resolve(&t.host, t.port);
                                    if let Ok(addr) = crate::tcp::first_address(t, found) {
                                        crate::notify::tell(t, addr, &stop);
                                    }
                                }
                                return;
                            }
                            if !tell(Report::Failed {
                                attempt: failures,
                                error,
                            }) {
                                return;
                            }
                            n = n.saturating_add(1);
                        }
                    }
                }
            })?;
        Ok(Reopener {
            reports,
            news,
            gate,
            cancel,
            delivered: std::cell::Cell::new(false),
        })
    }

    /// The next report, if one waits; never blocks.
    pub fn poll(&self) -> Option<Report> {
        let r = match self.reports.try_recv() {
            Ok(r) => Some(r),
            Err(TryRecvError::Empty) => {
                // Only now is the news byte stale (a report is sent before its byte).
                let mut sink = [0u8; 16];
                while matches!(std::io::Read::read(&mut &self.news, &mut sink), Ok(n) if n > 0) {}
                self.reports.try_recv().ok()
            }
            Err(TryRecvError::Disconnected) => None,
        };
        if matches!(r, Some(Report::Open { .. })) {
            self.delivered.set(true);
        }
        r
    }

    /// The descriptor that becomes readable when there is news.
    pub fn raw_fd(&self) -> RawFd {
        self.news.as_raw_fd()
    }

    pub fn poll_info(&self) -> PollInfo {
        PollInfo {
            fd: self.raw_fd(),
            interest: Interest::Read,
            dirty: false,
            due: None,
        }
    }

    /// Stops reopening without waiting: no further attempt starts, no notification for it is
    /// written, and a connection opened meanwhile is closed when its report is dropped.
    pub fn cancel(&mut self) {
        self.gate.stop();
        poke(self.cancel.as_raw_fd());
    }
}

impl Drop for Reopener {
    /// Dropped after handing over a session: that session's notifier keeps running. Dropped
    /// before (the conn was collected): as `cancel`.
    fn drop(&mut self) {
        if !self.delivered.get() {
            self.cancel();
        }
    }
}

/// A connection's reconnect state across its life: the spec to reopen, the policy, where the
/// backoff stands, and the outage in progress, if any.
pub struct Revival {
    spec: OpenSpec,
    policy: Policy,
    phase: Phase,
    /// Backoff index of the next outage's first attempt.
    backoff: u32,
    /// When the current connection opened (a long-lived one resets the backoff).
    opened: std::time::Instant,
}

enum Phase {
    /// The connection is open (or was closed by the application).
    Live,
    Reopening(Reopener),
    /// `attempts` ran out: the last failure, for every later call.
    GaveUp(Error),
    /// The application closed it: never again.
    Stopped,
}

/// Where a reconnecting connection stands, for the application (`conn:state()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Live,
    Reopening,
    Over,
}

impl Revival {
    pub fn new(spec: OpenSpec, policy: Policy) -> Revival {
        Revival {
            spec,
            policy,
            phase: Phase::Live,
            backoff: 1,
            opened: std::time::Instant::now(),
        }
    }

    /// The connection ended without the application asking: start reopening (at once; the
    /// first attempt waits its delay on the helper thread).
    pub fn connection_ended(&mut self) {
        if !matches!(self.phase, Phase::Live) {
            return;
        }
        if self.opened.elapsed() > self.policy.max {
            self.backoff = 1;
        }
        self.phase = match Reopener::start(self.spec.clone(), self.policy.clone(), self.backoff) {
            Ok(r) => Phase::Reopening(r),
            Err(e) => Phase::GaveUp(Error::Connect {
                host: self.spec.endpoint.host.clone(),
                port: self.spec.endpoint.port,
                reason: crate::error::IoFailure::from(&e),
            }),
        };
    }

    pub fn standing(&self) -> Standing {
        match self.phase {
            Phase::Live => Standing::Live,
            Phase::Reopening(_) => Standing::Reopening,
            Phase::GaveUp(_) | Phase::Stopped => Standing::Over,
        }
    }

    /// The reopener's news, if any; a reopened session comes out here (the caller installs it).
    pub fn poll(&mut self) -> Option<Report> {
        let Phase::Reopening(r) = &self.phase else {
            return None;
        };
        let report = r.poll()?;
        match &report {
            Report::Open { backoff, .. } => {
                // A short-lived connection goes on from here next time.
                self.backoff = backoff.saturating_add(1);
                self.opened = std::time::Instant::now();
                self.phase = Phase::Live;
            }
            Report::GaveUp(e) => self.phase = Phase::GaveUp(e.clone()),
            Report::Failed { .. } => {}
        }
        Some(report)
    }

    /// Why it is over, when `attempts` ran out.
    pub fn gave_up(&self) -> Option<&Error> {
        match &self.phase {
            Phase::GaveUp(e) => Some(e),
            _ => None,
        }
    }

    /// What to wait for while reopening.
    pub fn poll_info(&self) -> Option<PollInfo> {
        match &self.phase {
            Phase::Reopening(r) => Some(r.poll_info()),
            _ => None,
        }
    }

    /// The descriptor to watch while reopening.
    pub fn raw_fd(&self) -> Option<RawFd> {
        match &self.phase {
            Phase::Reopening(r) => Some(r.raw_fd()),
            _ => None,
        }
    }

    /// The application closed: stop at once (a signal), and never reopen.
    pub fn stop(&mut self) {
        if let Phase::Reopening(r) = &mut self.phase {
            r.cancel();
        }
        self.phase = Phase::Stopped;
    }
}

/// A uniform draw in [-1, 1] for the jitter (the OS's randomness; 0 if it fails).
fn jitter_draw() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return 0.0;
    }
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX) * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_refused_port_is_tried_attempts_times_then_given_up() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ep = crate::endpoint::Endpoint::parse(&format!("ws://127.0.0.1:{port}/")).unwrap();
        let policy = Policy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(20),
            factor: 2.0,
            jitter: 0.0,
            attempts: Some(3),
        };
        let r = Reopener::start(OpenSpec::new(ep), policy, 1).unwrap();
        let mut seen = Vec::new();
        for _ in 0..200 {
            let _ = wait_fd(r.raw_fd(), Interest::Read, Duration::from_millis(100));
            while let Some(report) = r.poll() {
                seen.push(match report {
                    Report::Failed { attempt, .. } => format!("failed {attempt}"),
                    Report::GaveUp(e) => format!("gave up: {e}"),
                    Report::Open { .. } => "open".into(),
                });
            }
            if seen.last().is_some_and(|s| s.starts_with("gave up")) {
                break;
            }
        }
        assert_eq!(
            seen,
            vec![
                "failed 1".to_string(),
                "failed 2".to_string(),
                format!("gave up: Connection to 127.0.0.1:{port} failed: connection refused"),
            ]
        );
    }
}
