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
