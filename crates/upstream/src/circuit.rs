//! The circuit of one upstream server: closed while it answers, open for a while after it
//! failed a number of times in a row, then half-open, letting one request through to probe
//! it. Times are passed in, so the state machine is tested without waiting.

use std::time::{Duration, Instant};

/// The state of one server's circuit.
#[derive(Debug)]
pub(crate) struct Circuit {
    failures_to_open: u32,
    open_for: Duration,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl Circuit {
    /// A closed circuit that opens after `failures_to_open` failures in a row (at least one)
    /// and stays open for `open_for`.
    pub(crate) fn new(failures_to_open: u32, open_for: Duration) -> Self {
        Self {
            failures_to_open: failures_to_open.max(1),
            open_for,
            state: State::Closed { failures: 0 },
        }
    }

    /// Whether a request may go to the server now; an open circuit whose time is up lets
    /// exactly one probe through (the next ones wait for its outcome).
    pub(crate) fn admits(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { probing: true };
                true
            }
            State::Open { .. } => false,
            State::HalfOpen { probing } => {
                self.state = State::HalfOpen { probing: true };
                !probing
            }
        }
    }

    /// A request the circuit admitted succeeded: the circuit closes.
    pub(crate) fn succeeded(&mut self) {
        self.state = State::Closed { failures: 0 };
    }

    /// A request the circuit admitted failed; true when this opened the circuit.
    pub(crate) fn failed(&mut self, now: Instant) -> bool {
        let opens = match self.state {
            State::Closed { failures } => failures + 1 >= self.failures_to_open,
            State::HalfOpen { .. } => true,
            State::Open { .. } => false,
        };
        self.state = match self.state {
            _ if opens => State::Open {
                until: now + self.open_for,
            },
            State::Closed { failures } => State::Closed {
                failures: failures + 1,
            },
            other => other,
        };
        opens
    }

    /// A request the circuit admitted ended without telling (the client went away): a probe
    /// leaves the next request free to probe.
    pub(crate) fn abandoned(&mut self) {
        if let State::HalfOpen { .. } = self.state {
            self.state = State::HalfOpen { probing: false };
        }
    }

    /// Whether the circuit keeps the server out now (open and not yet due for a probe).
    pub(crate) fn is_open(&self, now: Instant) -> bool {
        matches!(self.state, State::Open { until } if now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_probes_once_when_due() {
        let start = Instant::now();
        let mut circuit = Circuit::new(3, Duration::from_secs(10));
        assert!(!circuit.failed(start));
        circuit.succeeded();
        assert!(!circuit.failed(start));
        assert!(!circuit.failed(start));
        assert!(circuit.failed(start), "the third failure in a row opens it");
        assert!(circuit.is_open(start) && !circuit.admits(start));
        let due = start + Duration::from_secs(10);
        assert!(!circuit.is_open(due));
        assert!(circuit.admits(due), "one probe");
        assert!(!circuit.admits(due), "no second request while probing");
        circuit.succeeded();
        assert!(circuit.admits(due) && circuit.admits(due));
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_an_abandoned_one_frees_the_probe() {
        let start = Instant::now();
        let mut circuit = Circuit::new(1, Duration::from_secs(5));
        assert!(circuit.failed(start));
        let due = start + Duration::from_secs(5);
        assert!(circuit.admits(due));
        circuit.abandoned();
        assert!(circuit.admits(due), "the next request probes");
        assert!(circuit.failed(due));
        assert!(circuit.is_open(due + Duration::from_secs(4)));
        assert!(!circuit.admits(due + Duration::from_secs(4)));
    }
}
