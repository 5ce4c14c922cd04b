//! Journal files on disk: one folder per run under the cluster's runs folder, an append-only journal in it, and a
//! lock that keeps two runs off one cluster.

use crate::{Header, JournalState, ParseError, Record};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
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
        fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        let path = self.root.join(LOCK_FILE);
        let mut file = OpenOptions::new()
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
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join(JOURNAL_FILE);
        let tmp = dir.join(".journal.tmp");
        let mut line = serde_json::to_string(header)
            .map_err(|e| StoreError::Encode { path: path.clone(), error: e.to_string() })?;
        line.push('\n');
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(line.as_bytes()).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(&dir)?;
        sync_dir(&self.root)?;
        JournalWriter::open(dir)
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Appends records to a run's journal, each made durable before `append` returns.
#[derive(Debug)]
pub struct JournalWriter {
    dir: PathBuf,
    path: PathBuf,
    file: File,
}

impl JournalWriter {
    /// Opens an existing run's journal for appending (used when resuming).
    pub fn open(dir: PathBuf) -> Result<Self, StoreError> {
        let path = dir.join(JOURNAL_FILE);
        let file = OpenOptions::new().append(true).open(&path).map_err(io_err(&path))?;
        Ok(JournalWriter { dir, path, file })
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
