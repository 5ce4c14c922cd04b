//! Typed per-node errors. The orchestrator needs to tell "try again later" (unreachable) from "a human must act"
//! (host key changed, authentication) from "the node answered but the command failed".

use std::path::PathBuf;

/// Why one node could not do what was asked. Always names the node, so a message printed on its own is useful.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// No SSH connection could be made (refused, timed out, reset during the handshake, name not resolved).
    #[error("{node}: unreachable over SSH ({address}): {reason}")]
    Unreachable { node: String, address: String, reason: String },

    /// The node presented a host key that differs from the one recorded in known_hosts.
    #[error(
        "{node}: HOST KEY CHANGED for {address}: known_hosts ({known_hosts}) has {known}, the node presented {presented}; \
         refusing to connect. If the node was rebuilt, remove the old entry with `ssh-keygen -R '{address}' -f {known_hosts}`"
    )]
    HostKeyChanged {
        node: String,
        address: String,
        known_hosts: PathBuf,
        /// Fingerprint(s) recorded in known_hosts, e.g. `ED25519 SHA256:...`.
        known: String,
        /// Fingerprint the node presented.
        presented: String,
    },

    /// The node's host key is not in known_hosts and new hosts were not to be trusted.
    #[error(
        "{node}: host key of {address} is not in {known_hosts}; verify it and add it, or run again with \
         --trust-new-hosts to record it"
    )]
    HostKeyUnknown { node: String, address: String, known_hosts: PathBuf },

    /// The server refused our credentials.
    #[error("{node}: SSH authentication failed for user {user}: {reason}")]
    Auth { node: String, user: String, reason: String },

    /// `sudo -n` needs a password (or the user may not use sudo).
    #[error("{node}: sudo -n failed for user {user} (passwordless sudo is required): {stderr}")]
    Sudo { node: String, user: String, stderr: String },

    /// The command ran and exited non-zero (or was killed).
    #[error("{node}: `{program}` failed ({status}): {stderr}")]
    CommandFailed { node: String, program: String, status: String, stderr: String },

    /// The command did not end within the deadline of its kind; it was stopped on the node (whole process group).
    #[error("{node}: `{command}` did not finish within {after}s (the deadline of {kind} commands); {stopped}")]
    TimedOut { node: String, command: String, kind: &'static str, after: u64, stopped: String },

    /// The connection broke while a command ran, or the local ssh client failed in another way.
    #[error("{node}: SSH session error: {reason}")]
    Session { node: String, reason: String },
}

impl NodeError {
    pub fn node(&self) -> &str {
        match self {
            NodeError::Unreachable { node, .. }
            | NodeError::HostKeyChanged { node, .. }
            | NodeError::HostKeyUnknown { node, .. }
            | NodeError::Auth { node, .. }
            | NodeError::Sudo { node, .. }
            | NodeError::CommandFailed { node, .. }
            | NodeError::TimedOut { node, .. }
            | NodeError::Session { node, .. } => node,
        }
    }

    /// Worth retrying the connection: only transient network failures are.
    pub fn is_retryable(&self) -> bool {
        matches!(self, NodeError::Unreachable { .. })
    }

    /// Whether running the same thing again can help without a human changing something first: a network or
    /// session failure, or a command that hung (the rerun resumes), may pass; a refused key, credentials or sudo,
    /// or a command that failed, will fail the same way.
    pub fn retry_may_help(&self) -> bool {
        matches!(self, NodeError::Unreachable { .. } | NodeError::Session { .. } | NodeError::TimedOut { .. })
    }

    /// A short, stable status word for tables and JSON (`unreachable`, `host-key-changed`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            NodeError::Unreachable { .. } => "unreachable",
            NodeError::HostKeyChanged { .. } => "host-key-changed",
            NodeError::HostKeyUnknown { .. } => "host-key-unknown",
            NodeError::Auth { .. } => "auth-failed",
            NodeError::Sudo { .. } => "sudo-failed",
            NodeError::CommandFailed { .. } => "command-failed",
            NodeError::TimedOut { .. } => "timed-out",
            NodeError::Session { .. } => "session-error",
        }
    }
}

/// Failure to set the fleet up at all (before any node is contacted).
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot create the SSH control directory under {dir}: {source}")]
    ControlDir { dir: PathBuf, source: std::io::Error },
    #[error("cannot determine the user's known_hosts file: $HOME is not set; name one in the plan")]
    NoHome,
    #[error("cannot create the directory of known_hosts file {path}: {source}")]
    KnownHostsDir { path: PathBuf, source: std::io::Error },
}
