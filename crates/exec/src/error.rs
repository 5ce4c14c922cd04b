//! Why a step failed, typed, so that the end of the run can say whether rerunning can help. Every variant's message
//! names the node (node errors always do) and the journal adds the step id; [`StepError::retry_may_help`] says
//! whether the same command may pass without a human changing something first.

use crate::etcd::EtcdError;
use crate::install::InstallError;
use kismatic_fleet::NodeError;
use kismatic_journal::store::StoreError;
use kismatic_kube::KubeError;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Journal(#[from] StoreError),
    /// A health gate that was not met within its deadline (the component may yet come up).
    #[error("{0}")]
    NotReady(String),
    /// A precondition that refuses the step (an unhealthy etcd cluster, a member that was rolled back, a release
    /// that lacks a planned component): a human must look.
    #[error("{0}")]
    Refused(String),
}

impl StepError {
    /// Whether rerunning the same command can help without a human acting first.
    pub fn retry_may_help(&self) -> bool {
        match self {
            StepError::Node(e) => e.retry_may_help(),
            StepError::Install(InstallError::Node(e)) => e.retry_may_help(),
            StepError::Etcd(EtcdError::Node(e)) => e.retry_may_help(),
            StepError::Kube(KubeError::Api { .. } | KubeError::Timeout(_)) => true,
            StepError::NotReady(_) => true,
            StepError::Install(_)
            | StepError::Etcd(_)
            | StepError::Kube(_)
            | StepError::Journal(_)
            | StepError::Refused(_) => false,
        }
    }

    /// The sentence the end of the run adds after the error.
    pub fn advice(&self) -> &'static str {
        advice(self.retry_may_help())
    }
}

/// The sentence the end of the run adds after an error, by whether rerunning can help.
pub fn advice(retry_may_help: bool) -> &'static str {
    if retry_may_help {
        "This may pass when retried: rerun the same command."
    } else {
        "Retrying alone will not help: fix the cause first, then rerun the same command."
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_advice_follows_the_cause() {
        let hung = NodeError::TimedOut {
            node: "w1".into(),
            command: "kismatic-stage-state".into(),
            kind: "command",
            after: 60,
            stopped: "it was stopped on the node".into(),
        };
        assert!(StepError::Node(hung).retry_may_help());
        let failed = NodeError::CommandFailed {
            node: "w1".into(),
            program: "systemctl".into(),
            status: "exit code 1".into(),
            stderr: "unit not found".into(),
        };
        assert!(!StepError::Install(InstallError::Node(failed)).retry_may_help());
        assert!(StepError::NotReady("not Ready".into()).retry_may_help());
        assert!(!StepError::Refused("unhealthy".into()).retry_may_help());
    }
}
