//! Diagnostics: every problem found in a plan, with where it is.

use crate::model::Pos;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem (or, in `Plan::warnings`, one note) about a plan file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// Position of the offending value (or key), when known.
    pub pos: Option<Pos>,
    /// Dotted key path, e.g. `master.nodes[1].ip`; empty for whole-file problems.
    pub key: String,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: &Path, pos: Option<Pos>, key: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic { file: file.to_path_buf(), pos, key: key.into(), message: message.into() }
    }
}

/// `FILE:LINE:COL: key.path: message`, or `FILE: key.path: message` when the position is unknown.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.pos {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a plan could not be used. Displays every diagnostic, one per line.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{}: cannot read plan file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", DisplayAll(.diagnostics))]
    Invalid { diagnostics: Vec<Diagnostic> },
}

impl PlanError {
    /// All diagnostics (empty for a read error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PlanError::Read { .. } => &[],
            PlanError::Invalid { diagnostics } => diagnostics,
        }
    }
}

struct DisplayAll<'a>(&'a [Diagnostic]);

impl fmt::Display for DisplayAll<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Document order: by position, then the ones without a position in the order they were found.
pub(crate) fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by_key(|d| d.pos.map(|p| (p.line, p.column)).unwrap_or((u64::MAX, u64::MAX)));
}
