//! kismatic-release: the release directory (`release.yaml` + artifacts), parsed, validated and verified.
//!
//! The format is stable and documented in `docs/release-format.md`. Parsing is two-step, like cargo-deny: the raw
//! YAML model (with source locations) is deserialized with unknown keys refused, then validated into a checked
//! [`Release`]; validation reports every problem at once, each with `file:line:col`.

use kismatic_plan::Role;
use serde::Deserialize;
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::path::{Component as PathComponent, Path, PathBuf};

/// The only `format:` this build understands.
pub const RELEASE_FORMAT: u32 = 1;
/// File name of the manifest inside a release directory.
pub const RELEASE_FILE: &str = "release.yaml";

// ---------------------------------------------------------------------------------------------------------------
// Checked model
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The release directory (artifact paths are relative to it).
    pub dir: PathBuf,
    /// Kismatic release version, e.g. `1.1.0` (written to `/etc/kismatic-version`).
    pub version: semver::Version,
    /// The `kubernetes:` marker value, with its leading `v`, e.g. `v1.34.1`.
    pub kubernetes: String,
    pub components: Vec<Component>,
    /// Every object the release's manifests declare, as read when the release was loaded (the `removed-api`
    /// gate checks their API versions before anything runs).
    pub manifest_objects: Vec<ManifestHead>,
}

/// What a manifest object is: enough to name it and to judge its API version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// The manifest's path in the release directory.
    pub file: String,
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl Release {
    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }

    /// Components installed on a node with these roles (binary and package deliveries), in release order.
    pub fn components_for_roles<'a>(&'a self, roles: &'a [Role]) -> impl Iterator<Item = &'a Component> + 'a {
        self.components
            .iter()
            .filter(move |c| c.delivery != Delivery::Manifest && c.roles.iter().any(|r| roles.contains(r)))
    }

    /// Sum of the artifact sizes a node with these roles receives (for the disk-space check).
    pub fn artifact_bytes_for_roles(&self, roles: &[Role]) -> u64 {
        self.components_for_roles(roles)
            .map(|c| c.artifact.size.saturating_add(c.unit.as_ref().map_or(0, |u| u.size)))
            .fold(0, u64::saturating_add)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    Binary,
    Package,
    Manifest,
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Delivery::Binary => "binary",
            Delivery::Package => "package",
            Delivery::Manifest => "manifest",
        })
    }
}

/// When a `manifest` component is applied: with the on-cluster registry, or with the other services after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServicePhase {
    Registry,
    Services,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    /// As written (a leading `v` is kept); validated to be semver after stripping it.
    pub version: String,
    pub delivery: Delivery,
    /// Empty for `manifest` components.
    pub roles: Vec<Role>,
    /// systemd unit name without `.service` (binary and package; defaults to the component name).
    pub service: Option<String>,
    pub artifact: Artifact,
    /// binary only.
    pub unit: Option<Artifact>,
    /// package only: the OS package name.
    pub package: Option<String>,
    /// manifest only.
    pub phase: Option<ServicePhase>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Relative to the release directory.
    pub file: PathBuf,
    /// Lower-case hex.
    pub sha256: String,
    /// Size in bytes when the release was loaded.
    pub size: u64,
}

/// Parses a version the way the tool compares them: a leading `v` is stripped, then strict semver.
pub fn parse_version(s: &str) -> Result<semver::Version, VersionError> {
    parse_bounded(s.strip_prefix('v').unwrap_or(s))
}

/// Longest version string accepted (in bytes), anywhere: release files, facts, node output.
pub const MAX_VERSION_LEN: usize = 128;
/// Largest major, minor or patch number accepted. Real versions are far below; the bound keeps every difference and
/// sum of version numbers far from overflow.
pub const MAX_VERSION_NUMBER: u64 = 999_999;

/// Why a version string was refused. One line, no parser-internal advice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("is {0} bytes long (at most {MAX_VERSION_LEN})")]
    TooLong(usize),
    #[error("is not semver: {0}")]
    Syntax(String),
    #[error("has {part} {value}, out of range 0..={MAX_VERSION_NUMBER}")]
    OutOfRange { part: &'static str, value: String },
}

/// Strict semver (no leading `v`) within [`MAX_VERSION_LEN`] and [`MAX_VERSION_NUMBER`].
fn parse_bounded(s: &str) -> Result<semver::Version, VersionError> {
    if s.len() > MAX_VERSION_LEN {
        return Err(VersionError::TooLong(s.len()));
    }
    // semver reports a number past u64 as "value out of range"; say which range we accept instead.
    let v = semver::Version::parse(s).map_err(|e| {
        let core = s.split(['-', '+']).next().unwrap_or_default();
        let parts: Vec<&str> = core.split('.').collect();
        let names = ["major", "minor", "patch"];
        let too_big = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u64>().is_err();
        match parts.iter().zip(names).find(|(p, _)| too_big(p)) {
            Some((p, part)) => VersionError::OutOfRange { part, value: kismatic_plan::text::shown(p).into_owned() },
            None => VersionError::Syntax(e.to_string()),
        }
    })?;
    for (part, value) in [("major", v.major), ("minor", v.minor), ("patch", v.patch)] {
        if value > MAX_VERSION_NUMBER {
            return Err(VersionError::OutOfRange { part, value: value.to_string() });
        }
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

/// One validation problem at a place in `release.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax { path: PathBuf, line: u64, column: u64, message: String },
    #[error("{}", fmt_problems(path, problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

fn fmt_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!("{} is not a valid release ({} problem(s)):", path.display(), problems.len());
    for p in problems {
        out.push_str(&format!("\n  {}:{}:{}: {}", path.display(), p.line, p.column, p.message));
    }
    out
}

/// A digest that did not match (or an artifact that could not be read) during [`verify_artifacts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestProblem {
    pub component: String,
    pub file: PathBuf,
    pub expected: String,
    /// `Err` holds the I/O error text.
    pub actual: Result<String, String>,
}

impl fmt::Display for DigestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.actual {
            Ok(actual) => write!(
                f,
                "{}: {}: sha256 mismatch: release.yaml says {}, file has {}",
                self.component,
                self.file.display(),
                self.expected,
                actual
            ),
            Err(e) => write!(f, "{}: {}: cannot read: {e}", self.component, self.file.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Raw model
// ---------------------------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    format: Spanned<u32>,
    version: Spanned<String>,
    kubernetes: Spanned<String>,
    components: Spanned<Vec<RawComponent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    name: Spanned<String>,
    version: Spanned<String>,
    delivery: Spanned<Delivery>,
    #[serde(default)]
    roles: Option<Spanned<Vec<Role>>>,
    #[serde(default)]
    service: Option<Spanned<String>>,
    artifact: Spanned<RawArtifact>,
    #[serde(default)]
    unit: Option<Spanned<RawArtifact>>,
    #[serde(default)]
    package: Option<Spanned<String>>,
    #[serde(default)]
    phase: Option<Spanned<ServicePhase>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArtifact {
    file: Spanned<String>,
    sha256: Spanned<String>,
}

// ---------------------------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------------------------

/// Loads and validates `DIR/release.yaml`, checking that every artifact exists inside `DIR`.
pub fn load_dir(dir: &Path) -> Result<Release, ReleaseError> {
    let path = dir.join(RELEASE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ReleaseError::Io { path: path.clone(), source })?;
    parse(dir, &path, &text)
}

/// Parses and validates release text; `dir` is where artifacts are looked up, `path` names the file in messages.
pub fn parse(dir: &Path, path: &Path, text: &str) -> Result<Release, ReleaseError> {
    let raw: RawRelease = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        ReleaseError::Syntax { path: path.to_path_buf(), line, column, message: first_line(&e.to_string()) }
    })?;
    let mut v = Validator { dir, problems: Vec::new(), manifest_objects: Vec::new() };
    let release = v.release(raw);
    if v.problems.is_empty() {
        Ok(release)
    } else {
        Err(ReleaseError::Invalid { path: path.to_path_buf(), problems: v.problems })
    }
}

/// A value from release.yaml as messages show it: quoted, escaped, shortened.
fn shown(s: &str) -> String {
    kismatic_plan::text::quoted(s)
}

fn first_line(s: &str) -> String {
    // serde-saphyr renders a snippet after the message; the location is reported separately. Its advice to
    // programmers ("set DuplicateKeyPolicy in Options", "use from_str_multiple") means nothing to a user.
    let line = s.lines().next().unwrap_or_default();
    let line = line.split(", set DuplicateKeyPolicy").next().unwrap_or_default();
    // "error: line 6 column 28: …": the place is shown once, by the caller.
    let line = match line.strip_prefix("error: line ").and_then(|r| r.split_once(": ")) {
        Some((place, rest)) if place.contains(" column ") => rest,
        _ => line,
    };
    if line.starts_with("budget breached") {
        return "too many YAML nodes (an alias expanding past the limit of 250000?)".into();
    }
    let line = match line.split_once("multiple YAML documents detected;") {
        Some((before, _)) => format!("{before}a release file is one YAML document, this one has several"),
        None => line.to_string(),
    };
    kismatic_plan::text::shown(&line).into_owned()
}

/// Largest unit file or manifest read for the checks at load time (they are text of a few kilobytes).
pub const MAX_TEXT_ARTIFACT: u64 = 16 << 20;

/// A unit file must be a UTF-8 systemd unit with an `ExecStart=` in its `[Service]` section: found at load time,
/// not mid-run on a node.
fn unit_problem(text: &str) -> Option<String> {
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        } else if section == "Service"
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "ExecStart"
            && !value.trim().is_empty()
        {
            return None;
        }
    }
    Some("is not a systemd service unit: no ExecStart= in a [Service] section".into())
}

#[derive(Deserialize)]
struct ManifestObject {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<ManifestMeta>,
}

#[derive(Deserialize)]
struct ManifestMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// A manifest must be YAML documents that are each a Kubernetes object with `apiVersion`, `kind` and
/// `metadata.name` (what applying it needs), at least one.
fn manifest_problems(text: &str, file: &str, heads: &mut Vec<ManifestHead>) -> Vec<String> {
    let docs: Vec<Option<ManifestObject>> = match serde_saphyr::from_multiple(text) {
        Ok(d) => d,
        Err(e) => {
            let at = e.location().map_or(String::new(), |l| format!(" at line {} column {}", l.line(), l.column()));
            return vec![format!("is not YAML{at}: {}", first_line(&e.to_string()))];
        }
    };
    let mut out = Vec::new();
    let mut objects = 0;
    for (i, d) in docs.iter().enumerate() {
        let Some(d) = d else { continue };
        objects += 1;
        let mut missing = Vec::new();
        if d.api_version.as_deref().is_none_or(str::is_empty) {
            missing.push("apiVersion");
        }
        if d.kind.as_deref().is_none_or(str::is_empty) {
            missing.push("kind");
        }
        if d.metadata.as_ref().and_then(|m| m.name.as_deref()).is_none_or(str::is_empty) {
            missing.push("metadata.name");
        }
        if !missing.is_empty() {
            out.push(format!("document {} is not a Kubernetes object: it lacks {}", i + 1, missing.join(", ")));
            continue;
        }
        let api_ok = d.api_version.as_deref().is_some_and(|a| {
            a.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'/'))
        });
        let kind_ok = d.kind.as_deref().is_some_and(|k| k.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !api_ok || !kind_ok {
            let (a, k) = (d.api_version.as_deref().unwrap_or_default(), d.kind.as_deref().unwrap_or_default());
            out.push(format!(
                "document {}: apiVersion {} / kind {} is not a Kubernetes type name",
                i + 1,
                kismatic_plan::text::quoted(a),
                kismatic_plan::text::quoted(k)
            ));
            continue;
        }
        let meta = d.metadata.as_ref();
        heads.push(ManifestHead {
            file: file.to_string(),
            api_version: d.api_version.clone().unwrap_or_default(),
            kind: d.kind.clone().unwrap_or_default(),
            namespace: meta.and_then(|m| m.namespace.clone()).filter(|n| !n.is_empty()),
            name: meta.and_then(|m| m.name.clone()).unwrap_or_default(),
        });
    }
    if objects == 0 {
        out.push("holds no Kubernetes object".into());
    }
    out
}

/// What an artifact's content must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Content {
    Unit,
    Manifest,
    Other,
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Content::Unit => "unit file",
            Content::Manifest => "manifest",
            Content::Other => "artifact",
        })
    }
}

struct Validator<'a> {
    dir: &'a Path,
    problems: Vec<Problem>,
    manifest_objects: Vec<ManifestHead>,
}

impl Validator<'_> {
    fn problem<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.problems.push(Problem {
            line: at.referenced.line(),
            column: at.referenced.column(),
            message: message.into(),
        });
    }

    fn release(&mut self, raw: RawRelease) -> Release {
        if raw.format.value != RELEASE_FORMAT {
            self.problem(
                &raw.format,
                format!("unsupported format {}: this kismatic reads format {RELEASE_FORMAT}", raw.format.value),
            );
        }
        let version = if raw.version.value.starts_with('v') {
            self.problem(
                &raw.version,
                format!("version {} must be written without a leading \"v\"", shown(&raw.version.value)),
            );
            semver::Version::new(0, 0, 0)
        } else {
            match parse_bounded(&raw.version.value) {
                Ok(v) => v,
                Err(e) => {
                    self.problem(&raw.version, format!("version {} {e}", shown(&raw.version.value)));
                    semver::Version::new(0, 0, 0)
                }
            }
        };
        match raw.kubernetes.value.strip_prefix('v') {
            None => self.problem(
                &raw.kubernetes,
                format!("kubernetes {} must start with \"v\" (e.g. v1.34.1)", shown(&raw.kubernetes.value)),
            ),
            Some(rest) => {
                if let Err(e) = parse_bounded(rest) {
                    self.problem(&raw.kubernetes, format!("kubernetes {} {e}", shown(&raw.kubernetes.value)));
                }
            }
        }
        if raw.components.value.is_empty() {
            self.problem(&raw.components, "a release needs at least one component");
        }
        let mut names = BTreeSet::new();
        let mut files = BTreeSet::new();
        let mut components = Vec::new();
        for c in raw.components.value {
            if !names.insert(c.name.value.clone()) {
                self.problem(&c.name, format!("component {} is listed twice", shown(&c.name.value)));
            }
            let comp = self.component(c, &mut files);
            components.push(comp);
        }
        Release {
            dir: self.dir.to_path_buf(),
            version,
            kubernetes: raw.kubernetes.value,
            components,
            manifest_objects: std::mem::take(&mut self.manifest_objects),
        }
    }

    fn component(&mut self, c: RawComponent, files: &mut BTreeSet<PathBuf>) -> Component {
        // Messages start with the name: escaped and shortened when it is not a valid one.
        let name = kismatic_plan::text::shown(&c.name.value).into_owned();
        if !valid_name(&c.name.value) {
            self.problem(
                &c.name,
                format!(
                    "component name {} must be lower-case letters, digits and '-', starting with a letter",
                    shown(&c.name.value)
                ),
            );
        }
        if let Err(e) = parse_version(&c.version.value) {
            self.problem(&c.version, format!("{name}: version {} {e}", shown(&c.version.value)));
        }
        let delivery = c.delivery.value;
        let roles = match (&c.roles, delivery) {
            (Some(r), Delivery::Manifest) => {
                self.problem(r, format!("{name}: a manifest component is applied through the API and has no roles"));
                Vec::new()
            }
            (Some(r), _) => {
                if r.value.is_empty() {
                    self.problem(r, format!("{name}: roles must not be empty"));
                }
                let mut seen = BTreeSet::new();
                for role in &r.value {
                    if !seen.insert(*role) {
                        self.problem(r, format!("{name}: role {role} is listed twice"));
                    }
                }
                r.value.clone()
            }
            (None, Delivery::Manifest) => Vec::new(),
            (None, _) => {
                self.problem(&c.delivery, format!("{name}: a {delivery} component needs `roles`"));
                Vec::new()
            }
        };
        let service = match (&c.service, delivery) {
            (Some(s), Delivery::Manifest) => {
                self.problem(s, format!("{name}: `service` is only for binary and package components"));
                None
            }
            (Some(s), _) => {
                if !valid_unit_name(&s.value) {
                    self.problem(s, format!("{name}: service {} is not a valid systemd unit name", shown(&s.value)));
                }
                if s.value.ends_with(".service") {
                    self.problem(s, format!("{name}: write the service without the \".service\" suffix"));
                }
                Some(s.value.clone())
            }
            (None, Delivery::Manifest) => None,
            (None, _) => Some(name.clone()),
        };
        let unit = match (c.unit, delivery) {
            (Some(u), Delivery::Binary) => Some(self.artifact(&name, u, files, Content::Unit)),
            (Some(u), _) => {
                self.problem(&u, format!("{name}: `unit` is only for binary components"));
                None
            }
            (None, Delivery::Binary) => {
                self.problem(&c.delivery, format!("{name}: a binary component needs `unit` (its systemd unit file)"));
                None
            }
            (None, _) => None,
        };
        let package = match (&c.package, delivery) {
            (Some(p), Delivery::Package) => {
                if !valid_package_name(&p.value) {
                    self.problem(p, format!("{name}: package {} is not a valid package name", shown(&p.value)));
                }
                Some(p.value.clone())
            }
            (Some(p), _) => {
                self.problem(p, format!("{name}: `package` is only for package components"));
                None
            }
            (None, Delivery::Package) => {
                self.problem(&c.delivery, format!("{name}: a package component needs `package` (the OS package name)"));
                None
            }
            (None, _) => None,
        };
        let phase = match (&c.phase, delivery) {
            (Some(p), Delivery::Manifest) => Some(p.value),
            (Some(p), _) => {
                self.problem(p, format!("{name}: `phase` is only for manifest components"));
                None
            }
            (None, Delivery::Manifest) => Some(ServicePhase::Services),
            (None, _) => None,
        };
        let content = if delivery == Delivery::Manifest { Content::Manifest } else { Content::Other };
        let artifact = self.artifact(&name, c.artifact, files, content);
        Component {
            name: c.name.value,
            version: c.version.value,
            delivery,
            roles,
            service,
            artifact,
            unit,
            package,
            phase,
        }
    }

    fn artifact(
        &mut self,
        comp: &str,
        a: Spanned<RawArtifact>,
        files: &mut BTreeSet<PathBuf>,
        kind: Content,
    ) -> Artifact {
        let RawArtifact { file, sha256 } = a.value;
        let sha = sha256.value.to_ascii_lowercase();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.problem(&sha256, format!("{comp}: sha256 {} must be 64 hexadecimal digits", shown(&sha256.value)));
        }
        // Normalised (`./a//b` is `a/b`) before "no file used twice" compares it.
        let rel: PathBuf = Path::new(&file.value).components().filter(|c| *c != PathComponent::CurDir).collect();
        let mut size = 0;
        if let Some(msg) = unsafe_relative_path(&file.value) {
            self.problem(&file, format!("{comp}: file {} {msg}", shown(&file.value)));
        } else {
            if !files.insert(rel.clone()) {
                // Two components sharing a file is legal but almost always a copy-paste slip; refuse it.
                self.problem(&file, format!("{comp}: file {} is already used by another entry", shown(&file.value)));
            }
            let problems = match self.check_inside(&rel) {
                Ok(s) => {
                    size = s;
                    self.content_problems(&rel, size, kind)
                }
                Err(msg) => vec![msg],
            };
            for msg in problems {
                self.problem(&file, format!("{comp}: file {} {msg}", shown(&file.value)));
            }
        }
        Artifact { file: rel, sha256: sha, size }
    }

    /// What can be checked of a unit file or a manifest before anything runs.
    fn content_problems(&mut self, rel: &Path, size: u64, kind: Content) -> Vec<String> {
        if kind == Content::Other {
            return Vec::new();
        }
        if size > MAX_TEXT_ARTIFACT {
            return vec![format!("is {size} bytes, more than a {kind} can be ({MAX_TEXT_ARTIFACT} bytes at most)")];
        }
        let bytes = match std::fs::read(self.dir.join(rel)) {
            Ok(b) => b,
            Err(e) => return vec![format!("cannot be read: {e}")],
        };
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t,
            Err(e) => return vec![format!("is not UTF-8 text (invalid byte at offset {})", e.valid_up_to())],
        };
        match kind {
            Content::Unit => unit_problem(text).into_iter().collect(),
            Content::Manifest => {
                let file = rel.display().to_string();
                manifest_problems(text, &file, &mut self.manifest_objects)
            }
            Content::Other => Vec::new(),
        }
    }

    /// The file must exist, be a regular file, and (after following symlinks) stay inside the release directory.
    fn check_inside(&self, rel: &Path) -> Result<u64, String> {
        let full = self.dir.join(rel);
        let meta = std::fs::metadata(&full).map_err(|e| format!("cannot be read: {e}"))?;
        if !meta.is_file() {
            return Err("is not a regular file".into());
        }
        let root = std::fs::canonicalize(self.dir).map_err(|e| format!("release directory cannot be read: {e}"))?;
        let real = std::fs::canonicalize(&full).map_err(|e| format!("cannot be resolved: {e}"))?;
        if !real.starts_with(&root) {
            return Err(format!("resolves to {} outside the release directory", real.display()));
        }
        Ok(meta.len())
    }
}

fn valid_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_unit_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b'_' | b'-' | b':'))
}

/// Debian policy: lower case letters, digits, `+ - .`, at least two characters, starting alphanumeric.
fn valid_package_name(s: &str) -> bool {
    s.len() >= 2
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.'))
}

fn unsafe_relative_path(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("is empty");
    }
    let p = Path::new(s);
    if p.is_absolute() {
        return Some("must be relative to the release directory");
    }
    for c in p.components() {
        match c {
            PathComponent::ParentDir => return Some("must not contain \"..\""),
            PathComponent::Normal(_) | PathComponent::CurDir => {}
            _ => return Some("must be relative to the release directory"),
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------------------------
// Digests
// ---------------------------------------------------------------------------------------------------------------

/// sha256 of a file, lower-case hex, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// sha256 of bytes in memory, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks every artifact (and unit file) of the release against its digest; returns every problem found.
pub fn verify_artifacts(release: &Release) -> Vec<DigestProblem> {
    let mut problems = Vec::new();
    for c in &release.components {
        for a in std::iter::once(&c.artifact).chain(c.unit.as_ref()) {
            let actual = sha256_file(&release.dir.join(&a.file)).map_err(|e| e.to_string());
            if actual.as_ref().ok() != Some(&a.sha256) {
                problems.push(DigestProblem {
                    component: c.name.clone(),
                    file: a.file.clone(),
                    expected: a.sha256.clone(),
                    actual,
                });
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests;
