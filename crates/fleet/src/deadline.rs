//! How long a node command may run. Every command has a deadline by its kind; past it the command is stopped on
//! the node (its whole process group) and the caller gets [`NodeError::TimedOut`](crate::NodeError::TimedOut)
//! naming the node and the command. The defaults (docs/ssh.md) are generous multiples of what the slowest healthy
//! node takes, so that they only ever stop a command that hangs.

use std::time::Duration;

/// The kinds of node command, each with its own deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Reads, marker writes, activations, health probes: seconds on a healthy node.
    Command,
    /// Receiving an artifact (hundreds of MB over a slow link) and unpacking it.
    Transfer,
    /// Installing a package with apt-get/dpkg (maintainer scripts may be slow).
    Install,
    /// `systemctl restart` of a service (waits for the unit's start-up, e.g. etcd joining its cluster).
    Restart,
    /// Saving and verifying an etcd snapshot (grows with the database).
    Snapshot,
}

impl OpKind {
    pub const ALL: [OpKind; 5] =
        [OpKind::Command, OpKind::Transfer, OpKind::Install, OpKind::Restart, OpKind::Snapshot];

    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Command => "command",
            OpKind::Transfer => "transfer",
            OpKind::Install => "install",
            OpKind::Restart => "restart",
            OpKind::Snapshot => "snapshot",
        }
    }

    pub fn parse(s: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The deadline of each kind of node command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlines {
    pub command: Duration,
    pub transfer: Duration,
    pub install: Duration,
    pub restart: Duration,
    pub snapshot: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            // A read or a marker write takes well under a second; a node that needs a minute is stuck.
            command: Duration::from_secs(60),
            // 1 GB at 2 MB/s, plus unpacking.
            transfer: Duration::from_secs(900),
            // apt-get with maintainer scripts, on a slow disk.
            install: Duration::from_secs(600),
            // systemd's own default start timeout is 90 s; etcd and the API server may use longer ones.
            restart: Duration::from_secs(300),
            // Snapshot save + status of a multi-GB database.
            snapshot: Duration::from_secs(600),
        }
    }
}

impl Deadlines {
    pub fn get(&self, kind: OpKind) -> Duration {
        match kind {
            OpKind::Command => self.command,
            OpKind::Transfer => self.transfer,
            OpKind::Install => self.install,
            OpKind::Restart => self.restart,
            OpKind::Snapshot => self.snapshot,
        }
    }

    pub fn set(&mut self, kind: OpKind, d: Duration) {
        *match kind {
            OpKind::Command => &mut self.command,
            OpKind::Transfer => &mut self.transfer,
            OpKind::Install => &mut self.install,
            OpKind::Restart => &mut self.restart,
            OpKind::Snapshot => &mut self.snapshot,
        } = d;
    }

    /// Applies `KIND=SECONDS` (as given on the command line).
    pub fn apply(&mut self, spec: &str) -> Result<(), String> {
        let (kind, secs) = spec.split_once('=').ok_or_else(|| format!("{spec:?}: expected KIND=SECONDS"))?;
        let kind = OpKind::parse(kind.trim()).ok_or_else(|| {
            let kinds: Vec<&str> = OpKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("{kind:?}: unknown command kind (one of {})", kinds.join(", "))
        })?;
        let secs: u64 = secs.trim().parse().map_err(|_| format!("{secs:?}: not a number of seconds"))?;
        if secs == 0 {
            return Err(format!("{spec:?}: a deadline must be at least 1 second"));
        }
        self.set(kind, Duration::from_secs(secs));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_set_one_kind() {
        let mut d = Deadlines::default();
        d.apply("transfer=30").expect("valid");
        assert_eq!(d.transfer, Duration::from_secs(30));
        assert_eq!(d.command, Deadlines::default().command);
        assert!(d.apply("bogus=3").unwrap_err().contains("one of command, transfer"));
        assert!(d.apply("command=0").is_err());
        assert!(d.apply("command").is_err());
        assert!(d.apply("command=x").is_err());
    }

    #[test]
    fn every_kind_round_trips_its_name() {
        for k in OpKind::ALL {
            assert_eq!(OpKind::parse(k.as_str()), Some(k));
        }
    }
}
