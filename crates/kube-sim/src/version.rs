//! The version this artifact reports.
//!
//! The version lives in a reserved static byte region inside the binary: a magic prefix followed by a fixed-size,
//! NUL-padded buffer. `kube-sim stamp` rewrites that buffer in a copy of the binary, so the artifact itself carries
//! its version (and gets a different sha256) and no flag in a unit file is needed. The region is read with
//! `read_volatile` so the optimiser cannot fold the compile-time default into the code.

use std::path::Path;

/// Magic prefix; unique in the binary because it is only ever materialised inside `VERSION_REGION`.
const MAGIC: &[u8; 24] = b"KUBE-SIM-VERSION-SLOT/v1";
/// Room for the version string.
pub const SLOT_LEN: usize = 64;
const REGION_LEN: usize = MAGIC.len() + SLOT_LEN;

/// Default when the binary was never stamped: `KUBE_SIM_VERSION` at build time, else an obvious placeholder.
const DEFAULT: &str = match option_env!("KUBE_SIM_VERSION") {
    Some(v) => v,
    None => "v0.0.0-unstamped",
};

const fn build_region() -> [u8; REGION_LEN] {
    let mut r = [0u8; REGION_LEN];
    let mut i = 0;
    while i < MAGIC.len() {
        r[i] = MAGIC[i];
        i += 1;
    }
    let d = DEFAULT.as_bytes();
    let mut j = 0;
    while j < d.len() && j < SLOT_LEN {
        r[MAGIC.len() + j] = d[j];
        j += 1;
    }
    r
}

#[used]
static VERSION_REGION: [u8; REGION_LEN] = build_region();

fn region() -> [u8; REGION_LEN] {
    // SAFETY: VERSION_REGION is an immutable, initialised static of plain bytes; a volatile read of it is sound.
    unsafe { std::ptr::read_volatile(std::ptr::addr_of!(VERSION_REGION)) }
}

/// The version this artifact was built or stamped with, e.g. `v1.34.1`.
pub fn current() -> &'static str {
    static CELL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CELL.get_or_init(|| {
        let r = region();
        let slot = &r[MAGIC.len()..];
        let end = slot.iter().position(|b| *b == 0).unwrap_or(SLOT_LEN);
        String::from_utf8_lossy(&slot[..end]).into_owned()
    })
}

/// Parts of a Kubernetes-style version for `/version`.
pub fn info() -> serde_json::Value {
    let v = current();
    let core = v.trim_start_matches('v');
    let mut parts = core.split(['.', '-', '+']);
    let major = parts.next().unwrap_or("0").to_string();
    let minor = parts.next().unwrap_or("0").to_string();
    serde_json::json!({
        "major": major,
        "minor": minor,
        "gitVersion": v,
        "gitCommit": "kube-sim",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "kube-sim (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StampError {
    #[error("version {0:?} is not of the form vMAJOR.MINOR.PATCH[-pre][+build] (ASCII, at most {SLOT_LEN} bytes)")]
    BadVersion(String),
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("writing {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{path}: found {count} version regions, expected exactly one (is it a kube-sim binary?)")]
    Region { path: String, count: usize },
}

fn valid_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    if v.len() > SLOT_LEN || !v.is_ascii() || v.bytes().any(|b| b == 0 || b.is_ascii_whitespace()) {
        return false;
    }
    let core = rest.split(['-', '+']).next().unwrap_or("");
    let nums: Vec<&str> = core.split('.').collect();
    nums.len() == 3 && nums.iter().all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Rewrite the version region of `bytes` in place.
pub fn stamp_bytes(bytes: &mut [u8], version: &str, path: &str) -> Result<(), StampError> {
    if !valid_version(version) {
        return Err(StampError::BadVersion(version.to_string()));
    }
    let r = region();
    let magic = &r[..MAGIC.len()];
    let hits: Vec<usize> =
        bytes.windows(magic.len()).enumerate().filter(|(_, w)| *w == magic).map(|(i, _)| i).collect();
    if hits.len() != 1 {
        return Err(StampError::Region { path: path.to_string(), count: hits.len() });
    }
    let start = hits[0] + magic.len();
    let slot = &mut bytes[start..start + SLOT_LEN];
    slot.fill(0);
    slot[..version.len()].copy_from_slice(version.as_bytes());
    Ok(())
}

/// Copy the binary `input` to `output` with `version` stamped in; the output is written atomically and executable.
pub fn stamp_file(input: &Path, output: &Path, version: &str) -> Result<(), StampError> {
    let inp = input.display().to_string();
    let outp = output.display().to_string();
    let mut bytes = std::fs::read(input).map_err(|source| StampError::Read { path: inp.clone(), source })?;
    stamp_bytes(&mut bytes, version, &inp)?;
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.stamp-{}",
        output.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        f.sync_all()?;
        std::fs::rename(&tmp, output)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        StampError::Write { path: outp, source }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_validated() {
        assert!(valid_version("v1.34.1"));
        assert!(valid_version("v1.33.0-rc.1+sim"));
        assert!(!valid_version("1.34.1"));
        assert!(!valid_version("v1.34"));
        assert!(!valid_version("v1.34.x"));
        assert!(!valid_version(&format!("v1.1.1-{}", "a".repeat(70))));
    }

    #[test]
    fn stamping_rewrites_the_single_region() {
        let mut blob = vec![7u8; 100];
        blob.extend_from_slice(&region());
        blob.extend_from_slice(&[9u8; 50]);
        stamp_bytes(&mut blob, "v1.34.1", "blob").expect("stamp");
        let start = 100 + MAGIC.len();
        assert_eq!(&blob[start..start + 7], b"v1.34.1");
        assert!(blob[start + 7..start + SLOT_LEN].iter().all(|b| *b == 0));
        let mut none = vec![0u8; 10];
        assert!(matches!(stamp_bytes(&mut none, "v1.0.0", "x"), Err(StampError::Region { count: 0, .. })));
    }
}
