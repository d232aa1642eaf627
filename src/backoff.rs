//! The `reconnect` option's backoff: how long to wait before each attempt of an outage.

use std::time::Duration;

/// When and how often to reopen (seconds in the option table).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The delay before the first attempt of an outage.
    pub initial: Duration,
    /// The longest delay; also how long a connection must live for the next outage to start
    /// again at `initial`.
    pub max: Duration,
    /// How much each delay grows over the one before.
    pub factor: f64,
    /// The spread of each delay, as a fraction of it (0 to 1).
    pub jitter: f64,
    /// Failed attempts in a row before giving up; `None`: never.
    pub attempts: Option<u32>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            factor: 2.0,
            jitter: 0.25,
            attempts: None,
        }
    }
}

impl Policy {
    /// The delay before the attempt with backoff index `n` (1, 2, …): `initial × factor^(n-1)`,
    /// at most `max`, spread by `jitter × u` with `u` in [-1, 1].
    pub fn delay(&self, n: u32, u: f64) -> Duration {
        let grown =
            self.initial.as_secs_f64() * self.factor.powi(n.saturating_sub(1).min(1024) as i32);
        let base = grown.min(self.max.as_secs_f64());
        let spread = 1.0 + self.jitter.clamp(0.0, 1.0) * u.clamp(-1.0, 1.0);
        Duration::from_secs_f64((base * spread).clamp(0.0, 1e9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_the_factor_up_to_max() {
        let p = Policy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(1),
            factor: 2.0,
            jitter: 0.0,
            attempts: None,
        };
        let ms: Vec<u128> = (1..=5).map(|n| p.delay(n, 0.7).as_millis()).collect();
        assert_eq!(ms, vec![200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_spreads_a_delay_both_ways() {
        let p = Policy {
            jitter: 0.25,
            ..Policy::default()
        };
        assert_eq!(p.delay(1, -1.0), Duration::from_millis(750));
        assert_eq!(p.delay(1, 1.0), Duration::from_millis(1250));
    }
}
