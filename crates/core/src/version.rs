//! Version handling shared by need, summary, checks and planner.
//!
//! Versions are compared by semver precedence (`cmp_precedence`, so build metadata never matters), after stripping a
//! leading `v` and reducing vendor suffixes: `v1.34.1-eks-113cf36` is treated as `1.34.1`, because a vendor build
//! of a release is that release for every decision we make (skew, downgrade, at-target). Real pre-releases
//! (`-alpha`, `-beta`, `-rc`, ...) are kept, since `1.35.0-rc.1` really is older than `1.35.0`.

use semver::Version;
use std::cmp::Ordering;

pub use kismatic_release::parse_version as parse_strict;

const PRERELEASE_WORDS: [&str; 6] = ["alpha", "beta", "rc", "pre", "dev", "snapshot"];

/// Parses `v1.2.3`, `1.2.3`, `1.2.3-rc.1`, `1.2.3+build`, and Debian-style `1.2.3-1` package revisions and vendor
/// suffixes (reduced away). `None` when it is not a version at all.
pub fn parse(s: &str) -> Option<Version> {
    let s = s.trim();
    let mut v = parse_strict(s).ok()?;
    v.build = semver::BuildMetadata::EMPTY;
    if !v.pre.is_empty() {
        let first = v.pre.as_str().split(['.', '-']).next().unwrap_or_default().to_ascii_lowercase();
        let is_prerelease = PRERELEASE_WORDS.iter().any(|w| first.starts_with(w));
        if !is_prerelease {
            // Vendor suffix (`-eks-…`, `-gke.100`) or a package revision (`-1`, `-00`): the same release.
            v.pre = semver::Prerelease::EMPTY;
        }
    }
    Some(v)
}

/// Compares two version strings by precedence after normalisation; unparsable strings compare by text and sort
/// before any version.
pub fn cmp_str(a: &str, b: &str) -> Ordering {
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x.cmp_precedence(&y),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// True when both strings denote the same version (text equality when either is unparsable).
pub fn same(a: &str, b: &str) -> bool {
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x.cmp_precedence(&y) == Ordering::Equal,
        _ => a.trim() == b.trim(),
    }
}

/// `(major, minor)` distance from `from` to `to` in minors, when the major is the same; `None` across majors.
pub fn minor_step(from: &Version, to: &Version) -> Option<i64> {
    // Versions from outside are bounded when parsed, but a `Version` can be built by hand: never wrap, saturate.
    let step = i128::from(to.minor) - i128::from(from.minor);
    (from.major == to.major).then(|| i64::try_from(step).unwrap_or(if step < 0 { i64::MIN } else { i64::MAX }))
}

/// Displays a version with a leading `v`, as Kismatic's output does.
pub fn with_v(v: &Version) -> String {
    format!("v{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reduces() {
        assert_eq!(parse("v1.34.1"), Some(Version::new(1, 34, 1)));
        assert_eq!(parse("1.34.1-eks-113cf36"), Some(Version::new(1, 34, 1)));
        assert_eq!(parse("1.1.0-1"), Some(Version::new(1, 1, 0)));
        assert_eq!(parse("1.34.1+k3s1"), Some(Version::new(1, 34, 1)));
        assert_eq!(parse("garbage"), None);
        assert_eq!(parse("1.2"), None);
        let rc = parse("1.35.0-rc.1").expect("rc");
        assert!(!rc.pre.is_empty());
    }

    #[test]
    fn compares() {
        assert!(same("v1.2.3", "1.2.3"));
        assert!(same("1.2.3+a", "1.2.3+b"));
        assert!(!same("1.2.3", "1.2.4"));
        assert_eq!(cmp_str("1.35.0-rc.1", "1.35.0"), Ordering::Less);
        assert_eq!(cmp_str("1.10.0", "1.9.9"), Ordering::Greater);
        assert_eq!(cmp_str("junk", "1.0.0"), Ordering::Less);
        assert!(same("junk", " junk"));
    }

    #[test]
    fn minor_steps() {
        assert_eq!(minor_step(&Version::new(1, 33, 0), &Version::new(1, 35, 2)), Some(2));
        assert_eq!(minor_step(&Version::new(1, 33, 0), &Version::new(2, 0, 0)), None);
        // Issue 12: minor 2^63 used to overflow (debug) or wrap to a small step (release).
        assert_eq!(minor_step(&Version::new(1, 33, 5), &Version::new(1, u64::MAX, 0)), Some(i64::MAX));
        assert_eq!(minor_step(&Version::new(1, 1 << 63, 0), &Version::new(1, 0, 0)), Some(-(1i64 << 62) * 2));
    }

    #[test]
    fn huge_numbers_are_not_versions() {
        assert_eq!(parse("v1.9223372036854775808.0"), None);
        assert_eq!(parse("v1.18446744073709551616.0"), None);
        assert_eq!(parse(&format!("1.2.3-{}", "a".repeat(200_000))), None);
    }
}
