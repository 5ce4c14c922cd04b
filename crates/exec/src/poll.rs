//! Waiting for a condition with a deadline — never a fixed sleep. Every health gate of the executor polls through
//! [`until`].

use std::future::Future;
use std::time::{Duration, Instant};

/// What one check saw.
pub enum Seen<T> {
    Ready(T),
    /// Not yet; what was seen instead, for the message if the deadline passes.
    NotYet(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum PollError<E> {
    /// The check itself failed in a way that waiting cannot mend.
    Failed(E),
    /// The deadline passed; `last` is what the last check saw.
    TimedOut { last: String },
}

/// Runs `check` every `every` until it is ready or `timeout` has passed (it always runs at least once).
pub async fn until<T, E, Fut>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Fut,
) -> Result<T, PollError<E>>
where
    Fut: Future<Output = Result<Seen<T>, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await.map_err(PollError::Failed)? {
            Seen::Ready(value) => return Ok(value),
            Seen::NotYet(seen) => seen,
        };
        if Instant::now() >= deadline {
            return Err(PollError::TimedOut { last });
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime")
    }

    #[test]
    fn ready_after_some_checks() {
        let mut calls = 0;
        let r: Result<u32, PollError<()>> = rt().block_on(until(Duration::from_secs(60), Duration::ZERO, || {
            calls += 1;
            let n = calls;
            async move { Ok(if n == 3 { Seen::Ready(n) } else { Seen::NotYet(format!("check {n}")) }) }
        }));
        assert_eq!(r, Ok(3));
    }

    #[test]
    fn deadline_reports_the_last_check_and_checks_at_least_once() {
        let mut calls = 0;
        let r: Result<(), PollError<()>> = rt().block_on(until(Duration::ZERO, Duration::ZERO, || {
            calls += 1;
            async { Ok(Seen::NotYet("still 3.4.23".into())) }
        }));
        assert_eq!(r, Err(PollError::TimedOut { last: "still 3.4.23".into() }));
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_failed_check_ends_the_wait_at_once() {
        let r: Result<(), PollError<&str>> =
            rt().block_on(until(Duration::from_secs(60), Duration::ZERO, || async { Err("node unreachable") }));
        assert_eq!(r, Err(PollError::Failed("node unreachable")));
    }
}
