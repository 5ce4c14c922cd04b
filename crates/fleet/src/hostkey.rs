//! Reading the system `ssh` client's connection failures, and host-key fingerprints for the "key changed" message.
//!
//! The ssh client is the authority on host keys (it reads known_hosts, hashed or not, with markers and patterns);
//! we only interpret what it says and ask `ssh-keygen`/`ssh-keyscan` for fingerprints to show the operator.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// What a failed connection attempt means, from the ssh client's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    HostKeyChanged { presented: Option<String> },
    HostKeyUnknown,
    Auth(String),
    Unreachable(String),
}

/// Classifies the ssh client's stderr (the master's `-E` log) of a failed connect.
pub fn classify(log: &str) -> ConnectFailure {
    if log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || log.contains("has changed and you have requested strict")
    {
        return ConnectFailure::HostKeyChanged { presented: presented_fingerprint(log) };
    }
    if log.contains("you have requested strict checking") || log.contains("Host key verification failed") {
        return ConnectFailure::HostKeyUnknown;
    }
    let reason = summary(log);
    if log.contains("Permission denied (") || log.contains("Too many authentication failures") {
        return ConnectFailure::Auth(reason);
    }
    ConnectFailure::Unreachable(reason)
}

/// The last meaningful lines of an ssh log, without the noise of "Warning: Permanently added".
pub fn summary(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added") && !l.starts_with('@'))
        .collect();
    let tail = &lines[lines.len().saturating_sub(2)..];
    let s = tail.join("; ");
    let s = s.strip_prefix("ssh: ").unwrap_or(&s).to_string();
    if s.is_empty() { "ssh exited without a message".to_string() } else { s }
}

/// From "The fingerprint for the ED25519 key sent by the remote host is\nSHA256:xyz." → `ED25519 SHA256:xyz`.
fn presented_fingerprint(log: &str) -> Option<String> {
    let mut lines = log.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.trim().strip_prefix("The fingerprint for the ") {
            let key_type = rest.split_whitespace().next().unwrap_or("").to_string();
            let fp = lines.next()?.trim().trim_end_matches('.').to_string();
            if fp.is_empty() {
                return None;
            }
            return Some(if key_type.is_empty() { fp } else { format!("{key_type} {fp}") });
        }
    }
    None
}

/// The name a host is recorded under in known_hosts: `addr`, or `[addr]:port` for a non-default port.
pub fn known_hosts_name(address: &str, port: u16) -> String {
    if port == 22 { address.to_string() } else { format!("[{address}]:{port}") }
}

/// Fingerprints recorded for `name` in `known_hosts`, as `TYPE SHA256:...`, comma-separated.
/// Uses `ssh-keygen -F name -f file -l`, which understands hashed entries.
pub async fn known_fingerprints(known_hosts: &Path, name: &str) -> Option<String> {
    let out = tokio::process::Command::new("ssh-keygen")
        .arg("-F")
        .arg(name)
        .arg("-f")
        .arg(known_hosts)
        .arg("-l")
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let fps: Vec<String> = text.lines().filter(|l| !l.starts_with('#')).filter_map(parse_fingerprint_line).collect();
    if fps.is_empty() { None } else { Some(fps.join(", ")) }
}

/// `ssh-keygen -l` prints either `BITS SHA256:fp comment (TYPE)` or, with -F, `host TYPE SHA256:fp`.
fn parse_fingerprint_line(line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let pos = words.iter().position(|w| w.starts_with("SHA256:") || w.starts_with("MD5:"))?;
    let fp = words[pos];
    let key_type = if let Some(last) = words.last().filter(|w| w.starts_with('(') && w.ends_with(')')) {
        last.trim_matches(|c| c == '(' || c == ')').to_string()
    } else if pos > 0 {
        words[pos - 1].to_string()
    } else {
        String::new()
    };
    Some(if key_type.is_empty() || key_type.chars().all(|c| c.is_ascii_digit()) {
        fp.to_string()
    } else {
        format!("{key_type} {fp}")
    })
}

/// Fingerprints the node presents now, via `ssh-keyscan` piped into `ssh-keygen -lf -`. Used when the ssh client's
/// own message did not carry the fingerprint.
pub async fn scan_fingerprints(address: &str, port: u16, timeout: Duration) -> Option<String> {
    let scan = tokio::process::Command::new("ssh-keyscan")
        .arg("-T")
        .arg(timeout.as_secs().max(1).to_string())
        .arg("-p")
        .arg(port.to_string())
        .arg("--")
        .arg(address)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    if scan.stdout.is_empty() {
        return None;
    }
    let mut keygen = tokio::process::Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = keygen.stdin.take()?;
    stdin.write_all(&scan.stdout).await.ok()?;
    drop(stdin);
    let out = keygen.wait_with_output().await.ok()?;
    let fps: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().filter_map(parse_fingerprint_line).collect();
    if fps.is_empty() { None } else { Some(fps.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGED: &str = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
The fingerprint for the ED25519 key sent by the remote host is\n\
SHA256:pPresented123.\n\
Offending ED25519 key in /tmp/kh:1\n\
Host key for [127.0.77.1]:2222 has changed and you have requested strict checking.\n\
Host key verification failed.\n";

    #[test]
    fn classifies_changed_key_with_fingerprint() {
        assert_eq!(
            classify(CHANGED),
            ConnectFailure::HostKeyChanged { presented: Some("ED25519 SHA256:pPresented123".into()) }
        );
    }

    #[test]
    fn classifies_unknown_auth_unreachable() {
        assert_eq!(
            classify(
                "No ED25519 host key is known for [127.0.77.1]:2222 and you have requested strict checking.\nHost key verification failed.\n"
            ),
            ConnectFailure::HostKeyUnknown
        );
        assert!(matches!(classify("root@127.0.0.1: Permission denied (publickey)."), ConnectFailure::Auth(_)));
        assert_eq!(
            classify("ssh: connect to host 127.0.77.9 port 2222: Connection refused\n"),
            ConnectFailure::Unreachable("connect to host 127.0.77.9 port 2222: Connection refused".into())
        );
        assert_eq!(classify(""), ConnectFailure::Unreachable("ssh exited without a message".into()));
        assert!(matches!(
            classify("Warning: Permanently added '[127.0.0.1]:2' (ED25519) to the list of known hosts.\nkex_exchange_identification: read: Connection reset by peer"),
            ConnectFailure::Unreachable(r) if r == "kex_exchange_identification: read: Connection reset by peer"
        ));
    }

    #[test]
    fn fingerprint_lines() {
        assert_eq!(
            parse_fingerprint_line("[127.0.77.1]:2222 ED25519 SHA256:abc").as_deref(),
            Some("ED25519 SHA256:abc")
        );
        assert_eq!(
            parse_fingerprint_line("256 SHA256:abc [127.0.77.1]:2222 (ED25519)").as_deref(),
            Some("ED25519 SHA256:abc")
        );
        assert_eq!(parse_fingerprint_line("garbage"), None);
        assert_eq!(known_hosts_name("10.0.0.1", 22), "10.0.0.1");
        assert_eq!(known_hosts_name("10.0.0.1", 2222), "[10.0.0.1]:2222");
    }
}
