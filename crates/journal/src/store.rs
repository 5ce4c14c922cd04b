//! Journal files on disk: one folder per run under the cluster's runs folder, an append-only journal in it, and a
//! lock that keeps two runs off one cluster.

use crate::{Header, JournalState, ParseError, Record};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const JOURNAL_FILE: &str = "journal.jsonl";
pub const LOCK_FILE: &str = "kismatic.lock";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "another kismatic run holds {path} ({holder}); wait for it to finish, or remove the file if that process is gone"
    )]
    Locked { path: PathBuf, holder: String },
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{path}: {error}")]
    Encode { path: PathBuf, error: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// The runs folder of one cluster (by default `runs/` next to the plan file).
#[derive(Debug, Clone)]
pub struct RunsDir {
    root: PathBuf,
}

/// Held for the whole run; the OS releases the lock when the process dies, so a crash never leaves it stuck.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunsDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunsDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the cluster's run lock without waiting.
    pub fn lock(&self) -> Result<RunLock, StoreError> {
        create_private_dir(&self.root)?;
        let path = self.root.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .mode(0o600)
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder =
                    if holder.trim().is_empty() { "unknown process".to_string() } else { holder.trim().to_string() };
                return Err(StoreError::Locked { path, holder });
            }
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::Io { path, source: e }),
        }
        file.set_len(0).map_err(io_err(&path))?;
        write!(file, "pid {}", std::process::id()).map_err(io_err(&path))?;
        Ok(RunLock { _file: file })
    }

    /// Whether a process holds the cluster's run lock, read without taking it (so that a run starting now is
    /// never refused because someone asked for its status): the kernel's table of file locks names the holder.
    /// `None` when it cannot be told (no lock file: no run ever locked this folder).
    pub fn lock_holder(&self) -> Option<LockHolder> {
        let meta = fs::metadata(self.root.join(LOCK_FILE)).ok()?;
        let table = fs::read_to_string("/proc/locks").ok()?;
        Some(match holder_in(&table, meta.dev(), meta.ino()) {
            Some(pid) => LockHolder::Held { pid },
            None => LockHolder::Free,
        })
    }

    /// The most recent run's folder (run ids sort by time), if any.
    pub fn latest_run(&self) -> Result<Option<PathBuf>, StoreError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Io { path: self.root.clone(), source: e }),
        };
        let mut runs: Vec<PathBuf> =
            entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.join(JOURNAL_FILE).is_file()).collect();
        runs.sort();
        Ok(runs.pop())
    }

    /// Reads the most recent run's journal.
    pub fn latest_journal(&self) -> Result<Option<(PathBuf, JournalState)>, StoreError> {
        let Some(dir) = self.latest_run()? else { return Ok(None) };
        let path = dir.join(JOURNAL_FILE);
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        let state = crate::parse(&path.display().to_string(), &text)?;
        Ok(Some((dir, state)))
    }

    /// Creates a run folder holding the journal header; the header is written to a temporary file and renamed so
    /// that a journal, once visible, always has a complete header.
    pub fn create_run(&self, header: &Header) -> Result<JournalWriter, StoreError> {
        let dir = self.root.join(&header.run_id);
        create_private_dir(&self.root)?;
        create_private_dir(&dir)?;
        let path = dir.join(JOURNAL_FILE);
        let tmp = dir.join(".journal.tmp");
        let mut line = serde_json::to_string(header)
            .map_err(|e| StoreError::Encode { path: path.clone(), error: e.to_string() })?;
        line.push('\n');
        {
            let mut f = private_file(&tmp)?;
            f.write_all(line.as_bytes()).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&dir)?;
        sync_dir(&self.root)?;
        Ok(JournalWriter::open(dir)?.0)
    }
}

/// The run lock as the kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockHolder {
    Held { pid: Option<u32> },
    Free,
}

/// Finds the process holding an `flock` on the file (device, inode) in `/proc/locks`. Lines look like
/// `3: FLOCK  ADVISORY  WRITE 4242 08:01:1315 0 EOF`, the device as major:minor in hex; waiters (`->`) are not
/// holders.
fn holder_in(table: &str, dev: u64, ino: u64) -> Option<Option<u32>> {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") || fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let mut id = fields.get(5)?.split(':');
        let (ma, mi, inode) = (id.next()?, id.next()?, id.next()?);
        let same = u64::from_str_radix(ma, 16).ok()? == major
            && u64::from_str_radix(mi, 16).ok()? == minor
            && inode.parse::<u64>().ok()? == ino;
        // A pid of 0 or -1: the holder is outside this PID namespace.
        same.then(|| fields.get(4).and_then(|p| p.parse::<u32>().ok()).filter(|p| *p > 0))
    })
}

/// This machine's host name, for the journal's `attached` record and the status of a running run.
pub fn local_host() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Creates a folder (and its parents) readable only by its owner: run folders hold the plan, the cluster's node
/// list and the run's log. An existing folder is narrowed to 0700 too.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))
}

/// Creates (or truncates) a file readable only by its owner.
pub fn private_file(path: &Path) -> Result<File, StoreError> {
    let f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(io_err(path))?;
    f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    Ok(f)
}

/// Writes a whole file readable only by its owner.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    private_file(path)?.write_all(contents).map_err(io_err(path))
}

/// Opens a file for appending, created readable only by its owner.
pub fn append_private(path: &Path) -> Result<File, StoreError> {
    let f = OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(io_err(path))?;
    f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    Ok(f)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Truncates the file after its last newline; returns the bytes removed.
fn cut_torn_tail(path: &Path) -> Result<u64, StoreError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(0);
    }
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let f = OpenOptions::new().write(true).open(path).map_err(io_err(path))?;
    f.set_len(keep as u64).and_then(|()| f.sync_all()).map_err(io_err(path))?;
    Ok((bytes.len() - keep) as u64)
}

/// Appends records to a run's journal, each made durable before `append` returns.
#[derive(Debug)]
pub struct JournalWriter {
    dir: PathBuf,
    path: PathBuf,
    file: File,
}

impl JournalWriter {
    /// Opens an existing run's journal for appending (used when resuming). A torn last line (a write that never
    /// completed: no newline) is cut off first, so that the next record starts on a line of its own instead of
    /// joining the fragment into a corrupt line; the bytes cut are returned (0 when the journal was whole).
    pub fn open(dir: PathBuf) -> Result<(Self, u64), StoreError> {
        let path = dir.join(JOURNAL_FILE);
        let cut = cut_torn_tail(&path)?;
        let file = OpenOptions::new().append(true).open(&path).map_err(io_err(&path))?;
        Ok((JournalWriter { dir, path, file }, cut))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn append(&mut self, record: &Record) -> Result<(), StoreError> {
        let mut line = serde_json::to_string(record)
            .map_err(|e| StoreError::Encode { path: self.path.clone(), error: e.to_string() })?;
        line.push('\n');
        // One write call per record keeps a torn write confined to the last line.
        self.file.write_all(line.as_bytes()).map_err(io_err(&self.path))?;
        self.file.sync_data().map_err(io_err(&self.path))
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn a_torn_tail_is_cut_off_before_appending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("r1");
        fs::create_dir_all(&run).expect("run dir");
        let path = run.join(JOURNAL_FILE);
        fs::write(&path, "{\"a\":1}\n{\"b\":2}\n{\"at_ms\":1,\"event\":\"sta").expect("write");
        let (mut w, cut) = JournalWriter::open(run.clone()).expect("open");
        assert_eq!(cut, 23);
        w.file.write_all(b"{\"c\":3}\n").expect("append");
        assert_eq!(fs::read_to_string(&path).expect("read"), "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
        let (_, cut) = JournalWriter::open(run).expect("whole journal");
        assert_eq!(cut, 0);
    }

    #[test]
    fn run_folders_and_journals_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runs = RunsDir::new(dir.path().join("runs"));
        let _lock = runs.lock().expect("lock");
        let header = crate::Header {
            format: crate::FORMAT,
            run_id: "20260101T000000Z".into(),
            started_at_ms: 1,
            identity: crate::RunIdentity {
                mode: "online".into(),
                release_version: "1.0.0".into(),
                release_digest: "x".into(),
                partial_ok: false,
            },
            steps: vec![],
        };
        let w = runs.create_run(&header).expect("run");
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(runs.root()), 0o700);
        assert_eq!(mode(w.dir()), 0o700);
        assert_eq!(mode(&w.dir().join(JOURNAL_FILE)), 0o600);
        assert_eq!(mode(&runs.root().join(LOCK_FILE)), 0o600);
        write_private(&w.dir().join("plan.yaml"), b"x").expect("write");
        assert_eq!(mode(&w.dir().join("plan.yaml")), 0o600);
    }

    #[test]
    fn lock_holder_is_read_without_taking_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runs = RunsDir::new(dir.path());
        assert_eq!(runs.lock_holder(), None, "no lock file yet");
        let lock = runs.lock().expect("lock");
        assert_eq!(runs.lock_holder(), Some(LockHolder::Held { pid: Some(std::process::id()) }));
        // Asking did not take it: the holder still holds it, and a second run is still refused.
        assert!(matches!(runs.lock(), Err(StoreError::Locked { .. })));
        drop(lock);
        assert_eq!(runs.lock_holder(), Some(LockHolder::Free));
        runs.lock().expect("free again");
    }

    #[test]
    fn waiters_and_other_files_are_not_holders() {
        let table = "1: FLOCK  ADVISORY  WRITE 10 08:01:99 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 11 08:02:77 0 EOF\n\
                     3: POSIX  ADVISORY  WRITE 12 08:02:77 0 EOF\n\
                     4: FLOCK  ADVISORY  WRITE 13 fd:01:77 0 EOF\n";
        let dev = (8 << 8) | 2;
        assert_eq!(holder_in(table, dev, 77), None);
        assert_eq!(holder_in(table, (8 << 8) | 1, 99), Some(Some(10)));
        assert_eq!(holder_in(table, (0xfd << 8) | 1, 77), Some(Some(13)));
    }
}
