//! Where a session reads the time: the system's monotonic clock, or one a test moves by hand,
//! so that timers (receive timeout, keepalive, stalled output, closing) are tested without
//! sleeping.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// Stands still until `advance` moves it.
    Manual(Arc<Mutex<Instant>>),
}

impl Clock {
    /// A hand-moved clock, starting now.
    pub fn manual() -> Clock {
        Clock::Manual(Arc::new(Mutex::new(Instant::now())))
    }

    pub fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Manual(t) => *t.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Moves a manual clock forward (the system clock moves by itself).
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(t) = self {
            *t.lock().unwrap_or_else(|p| p.into_inner()) += by;
        }
    }
}
