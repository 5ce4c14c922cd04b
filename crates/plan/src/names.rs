//! Syntax checks for the names and addresses a plan carries. Each returns `Err(reason)`.
//! The values end up in command arguments and Kubernetes objects, so anything unusual is refused here.

use std::net::IpAddr;

fn first_bad(s: &str, ok: impl Fn(char) -> bool) -> Option<char> {
    s.chars().find(|c| !ok(*c))
}

fn show(c: char) -> String {
    if c.is_whitespace() {
        format!("whitespace ({c:?})")
    } else if c.is_control() {
        format!("a control character ({})", c.escape_unicode())
    } else {
        format!("'{}'", c.escape_debug())
    }
}

/// A DNS-1123 host name (subdomain): dot-separated labels of letters, digits and '-', each 1–63
/// characters and not starting or ending with '-', 253 characters at most. Letters may be upper case
/// (Kismatic lower-cased host names where Kubernetes needs it).
pub fn dns1123_host(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("must not be empty".into());
    }
    if h.starts_with('-') {
        return Err("starts with '-'".into());
    }
    if let Some(c) = first_bad(h, |c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err(format!("contains {}", show(c)));
    }
    if h.len() > 253 {
        return Err(format!("is {} characters long, more than 253", h.len()));
    }
    for label in h.split('.') {
        if label.is_empty() {
            return Err("has an empty label (two dots, or a leading or trailing dot)".into());
        }
        if label.len() > 63 {
            return Err(format!("has a label of {} characters, more than 63", label.len()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("has a label that starts or ends with '-' ({label})"));
        }
    }
    Ok(())
}

pub fn ip(s: &str) -> Result<IpAddr, String> {
    if let Some(c) = first_bad(s, |c| c.is_ascii_hexdigit() || c == '.' || c == ':') {
        return Err(format!("contains {}", show(c)));
    }
    s.parse::<IpAddr>().map_err(|_| "is not an IPv4 or IPv6 address".into())
}

/// A host name or an IP address.
pub fn host_or_ip(s: &str) -> Result<(), String> {
    if ip(s).is_ok() { Ok(()) } else { dns1123_host(s) }
}

/// `host:port` (IPv6 as `[addr]:port`), port 1–65535.
pub fn host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or("is not host:port (IPv6 addresses go in brackets: [addr]:port)")?;
        ip(h).map_err(|e| format!("has an IPv6 address that {e}"))?;
        (h.to_string(), p)
    } else {
        let (h, p) = s.rsplit_once(':').ok_or("is not host:port")?;
        if h.contains(':') {
            return Err("is not host:port (IPv6 addresses go in brackets: [addr]:port)".into());
        }
        host_or_ip(h).map_err(|e| format!("has a host that {e}"))?;
        (h.to_string(), p)
    };
    Ok((host, port_str(port)?))
}

pub fn port_str(p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) || p.len() > 5 {
        return Err(format!("has port {:?}, which is not a number from 1 to 65535", p.escape_debug().to_string()));
    }
    match p.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!("has port {p}, which is not in the range 1-65535")),
    }
}

/// Kubernetes' qualified name: `[prefix/]name`, prefix a lower-case DNS-1123 subdomain, name 1–63
/// characters of letters, digits, '-', '_' and '.', starting and ending alphanumeric.
pub fn qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Err("has an empty prefix before '/'".into());
        }
        if p.chars().any(|c| c.is_ascii_uppercase()) {
            return Err("has a prefix with upper-case letters".into());
        }
        dns1123_host(p).map_err(|e| format!("has a prefix that {e}"))?;
    }
    name_part(name, "name")
}

fn name_part(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("has an empty {what}"));
    }
    if let Some(c) = first_bad(name, |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(format!("contains {}", show(c)));
    }
    if name.len() > 63 {
        return Err(format!("has a {what} of {} characters, more than 63", name.len()));
    }
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok_end(name.chars().next()) || !ok_end(name.chars().last()) {
        return Err(format!("has a {what} that does not start and end with a letter or digit"));
    }
    Ok(())
}

/// A Kubernetes label value: empty, or 1–63 characters like a qualified name's name part.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() { Ok(()) } else { name_part(s, "value") }
}

/// The remote user: letters, digits, '_', '.', '@' and '-', not starting with '-' (it would read as an
/// ssh option), at most 64 characters.
pub fn ssh_user(s: &str) -> Result<(), String> {
    if s.starts_with('-') {
        return Err("starts with '-'".into());
    }
    if let Some(c) = first_bad(s, |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-')) {
        return Err(format!("contains {}", show(c)));
    }
    if s.len() > 64 {
        return Err("is longer than 64 characters".into());
    }
    Ok(())
}

/// No control characters (newlines, escapes) in free text that reaches files and terminals.
pub fn no_control(s: &str) -> Result<(), String> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("contains {}", show(c))),
        None => Ok(()),
    }
}

/// A component flag name (`option_overrides` key): letters, digits, '-', '_' and '.', starting alphanumeric.
pub fn flag_name(s: &str) -> Result<(), String> {
    if let Some(c) = first_bad(s, |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(format!("contains {}", show(c)));
    }
    if !s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err("does not start with a letter or digit".into());
    }
    Ok(())
}

/// `a.b.c.d/n` or an IPv6 CIDR.
pub fn cidr(s: &str) -> Result<(), String> {
    let (addr, bits) = s.split_once('/').ok_or("is not in CIDR notation (address/prefix)")?;
    let a = ip(addr).map_err(|e| format!("has an address that {e}"))?;
    let max = if a.is_ipv4() { 32 } else { 128 };
    match bits.parse::<u8>() {
        Ok(b) if b <= max && bits.chars().all(|c| c.is_ascii_digit()) => Ok(()),
        _ => Err(format!("has prefix length {:?}, not in 0-{max}", bits.escape_debug().to_string())),
    }
}

/// A Go `time.ParseDuration` string, e.g. `17520h`, `1h30m`, `1.5h`.
pub fn go_duration(s: &str) -> Result<(), String> {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    if body == "0" {
        return Ok(());
    }
    if body.is_empty() {
        return Err("is empty".into());
    }
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err("is not a duration such as 17520h or 1h30m".into());
        }
        rest = &rest[num_len..];
        let unit = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .iter()
            .filter(|u| rest.starts_with(**u))
            .max_by_key(|u| u.len())
            .ok_or("is not a duration such as 17520h or 1h30m (units: ns, us, ms, s, m, h)")?;
        rest = &rest[unit.len()..];
    }
    Ok(())
}

/// `vMAJOR.MINOR.PATCH` (the `v` optional, pre-release/build suffixes allowed).
pub fn kube_version(s: &str) -> Result<(), String> {
    let body = s.strip_prefix('v').unwrap_or(s);
    let core = body.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    if parts.len() != 3 || !parts.iter().all(numeric) {
        return Err("is not a version such as v1.10.5".into());
    }
    no_control(s)?;
    if let Some(c) = first_bad(body, |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+')) {
        return Err(format!("contains {}", show(c)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(dns1123_host("etcd01").is_ok());
        assert!(dns1123_host("Master-1.example.com").is_ok());
        assert_eq!(dns1123_host("a;b"), Err("contains ';'".into()));
        assert_eq!(dns1123_host("a b"), Err("contains whitespace (' ')".into()));
        assert_eq!(dns1123_host("-oProxyCommand=x"), Err("starts with '-'".into()));
        assert_eq!(dns1123_host("a\u{7}"), Err("contains a control character (\\u{7})".into()));
        assert!(dns1123_host("-rf").is_err());
        assert!(dns1123_host("a..b").is_err());
        assert!(dns1123_host(&"a".repeat(64)).is_err());
    }

    #[test]
    fn addresses() {
        assert!(ip("10.0.0.1").is_ok());
        assert!(ip("fd00::1").is_ok());
        assert!(ip("10.0.0.256").is_err());
        assert_eq!(host_port("lb.example.com:6443"), Ok(("lb.example.com".into(), 6443)));
        assert_eq!(host_port("[fd00::1]:6443"), Ok(("fd00::1".into(), 6443)));
        assert!(host_port("lb.example.com").is_err());
        assert!(host_port("lb:0").is_err());
        assert!(host_port("lb:70000").is_err());
        assert!(host_port("fd00::1:6443").is_err());
        assert!(cidr("172.16.0.0/16").is_ok());
        assert!(cidr("172.16.0.0/33").is_err());
        assert!(cidr("172.16.0.0").is_err());
    }

    #[test]
    fn kubernetes_names() {
        assert!(qualified_name("example.com/role").is_ok());
        assert!(qualified_name("role").is_ok());
        assert!(qualified_name("Example.com/role").is_err());
        assert!(qualified_name("role$(x)").is_err());
        assert!(qualified_name("").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("a b").is_err());
    }

    #[test]
    fn durations_and_versions() {
        for ok in ["17520h", "1h30m", "1.5h", "0", "300ms"] {
            assert!(go_duration(ok).is_ok(), "{ok}");
        }
        for bad in ["", "2y", "h", "17520", "1..5h"] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
        assert!(kube_version("v1.10.5").is_ok());
        assert!(kube_version("1.10.5").is_ok());
        assert!(kube_version("v1.10").is_err());
        assert!(kube_version("v1.10.5;id").is_err());
    }

    #[test]
    fn users() {
        assert!(ssh_user("kismaticuser").is_ok());
        assert!(ssh_user("ec2-user").is_ok());
        assert!(ssh_user("-oProxyCommand=x").is_err());
        assert!(ssh_user("root bob").is_err());
    }
}
