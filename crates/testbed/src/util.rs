//! Small helpers: running host commands, hashing, quoting, atomic writes, polling with a deadline.

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Human-readable command line, for error messages only (never executed).
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&quote(&a.to_string_lossy()));
    }
    s
}

/// Runs a command to completion and returns its stdout; a non-zero exit is an error carrying stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    run_with_input(cmd, None)
}

/// Like `run`, but returns stdout followed by stderr (for tools that report results on stderr, like
/// `etcdctl endpoint health`).
pub fn run_combined(cmd: &mut Command) -> Result<String> {
    let line = describe(cmd);
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot start `{line}`"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("`{line}` failed ({}):\n{}", out.status, tail(&text, 30));
    }
    Ok(text)
}

pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>) -> Result<String> {
    let line = describe(cmd);
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("cannot start `{line}`"))?;
    if let Some(data) = input
        && let Some(mut stdin) = child.stdin.take()
    {
        // A command that exits early closes its stdin; its exit status then tells what went wrong.
        let _ = stdin.write_all(data);
    }
    let out = child.wait_with_output().with_context(|| format!("waiting for `{line}`"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        bail!("`{line}` failed ({}):\n{}{}", out.status, tail(&stderr, 30), tail(&stdout, 10));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Last `n` lines of a text.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = lines[start..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// POSIX shell single-quoting: the result is one word whatever `s` contains.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// One shell command line built from separately quoted words.
pub fn shell_line<S: AsRef<str>>(words: &[S]) -> String {
    words.iter().map(|w| quote(w.as_ref())).collect::<Vec<_>>().join(" ")
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&h.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Writes a file atomically (temporary file + rename) with the given mode, creating parent folders.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>, mode: u32) -> Result<()> {
    let parent = path.parent().ok_or_else(|| anyhow!("{} has no parent folder", path.display()))?;
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = path.file_name().ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
    let tmp = parent.join(format!(".{}.tmp", name.to_string_lossy()));
    {
        let mut f = fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(contents.as_ref()).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    Ok(())
}

pub fn mkdir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}

/// Removes a file or folder tree; absent is fine.
pub fn remove_all(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot inspect {}", path.display())),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).with_context(|| format!("cannot remove {}", path.display())),
        Ok(_) => fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Polls `probe` until it returns `Some`, or fails after `deadline` with the last probe error.
/// The interval grows from 100 ms to 1 s: no fixed sleeps, quick when things are quick.
pub fn wait_until<T>(what: &str, deadline: Duration, mut probe: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let start = Instant::now();
    let mut interval = Duration::from_millis(100);
    let mut last_err: Option<anyhow::Error> = None;
    loop {
        match probe() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() >= deadline {
            return Err(match last_err {
                Some(e) => e.context(format!("timed out after {deadline:?} waiting for {what}")),
                None => anyhow!("timed out after {deadline:?} waiting for {what}"),
            });
        }
        std::thread::sleep(interval);
        interval = (interval * 3 / 2).min(Duration::from_secs(1));
    }
}

/// Start time of a process (clock ticks since boot), to tell our process from a reused PID.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True when `pid` is alive and still the process we started (same start time).
/// A zombie counts as gone (and is reaped when it is our child).
pub fn process_matches(pid: u32, start_time: u64) -> bool {
    if process_start_time(pid) != Some(start_time) {
        return false;
    }
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().starts_with('Z')))
        .unwrap_or(false);
    if zombie {
        // SAFETY: waitpid with WNOHANG and a null status pointer only reaps our own exited child, if it is one.
        unsafe {
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG);
        }
        return false;
    }
    true
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; a stale PID only yields ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Makes a long-lived daemon (nspawn, HAProxy) not inherit this process's open descriptors beyond stdio. Run as
/// `flock LOCK testbed up`, the lock's descriptor was otherwise kept by every node's nspawn: the lock stayed held
/// as long as the testbed was up, and the `flock LOCK testbed down` meant to end it waited forever.
pub fn no_inherited_fds(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: close_range(2) is async-signal-safe; with CLOSE_RANGE_CLOEXEC it only marks descriptors, so the
    // pipe std uses to report exec errors (already close-on-exec) keeps working.
    unsafe {
        cmd.pre_exec(|| {
            if libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Direct children of a process.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// Is anything accepting TCP connections at `addr`?
pub fn tcp_open(addr: &str) -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    let Ok(mut addrs) = addr.to_socket_addrs() else {
        return false;
    };
    addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_one_word() {
        assert_eq!(quote("abc/def-1.2"), "abc/def-1.2");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's; rm -rf /"), r"'it'\''s; rm -rf /'");
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn daemons_do_not_inherit_descriptors() {
        use std::os::fd::AsRawFd;
        // A descriptor inherited across exec, as flock(1) hands its lock to the command it runs.
        let f = fs::File::open("/proc/self/stat").expect("open");
        let fd = f.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
        let has_fd = |detach: bool| {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &format!("test -e /proc/self/fd/{fd} && echo inherited || echo closed")]);
            if detach {
                no_inherited_fds(&mut cmd);
            }
            String::from_utf8_lossy(&cmd.output().expect("sh").stdout).trim().to_string()
        };
        assert_eq!(has_fd(false), "inherited", "the test's descriptor is inheritable");
        assert_eq!(has_fd(true), "closed");
    }

    #[test]
    fn own_process_start_time_is_readable() {
        let pid = std::process::id();
        let t = process_start_time(pid).expect("own stat");
        assert!(process_matches(pid, t));
    }
}
