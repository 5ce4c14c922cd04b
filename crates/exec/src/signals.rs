//! The signals that stop a run: SIGINT (Ctrl-C), SIGTERM (a service manager or CI cancelling the job) and SIGHUP
//! (the terminal closed). All three stop the run the same way: the current steps are abandoned, what they left
//! running on nodes is stopped, the nodes this run cordoned are uncordoned and the journal gets its `ended` record.

use tokio::signal::unix::{Signal, SignalKind, signal};

pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers (from then on these signals no longer kill the process by themselves).
    pub fn new() -> std::io::Result<Self> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal's name (`SIGINT`, `SIGTERM`, `SIGHUP`).
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of the three signals is caught (the process lives on) and named. Sent to this test's own process
    /// (nextest runs each test in a process of its own).
    #[tokio::test]
    async fn sigint_sigterm_and_sighup_are_caught_and_named() {
        let mut signals = Signals::new().expect("handlers");
        for (flag, name) in [("-INT", "SIGINT"), ("-TERM", "SIGTERM"), ("-HUP", "SIGHUP")] {
            let sent = std::process::Command::new("kill")
                .args([flag, &std::process::id().to_string()])
                .status()
                .expect("kill");
            assert!(sent.success());
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), signals.next()).await;
            assert_eq!(got.ok(), Some(name));
        }
    }
}
