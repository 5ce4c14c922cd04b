//! Numbers as people read them: sizes in SI units (a disk's "1 GB" is 10⁹ bytes, as Kismatic's minimum was) and
//! durations in seconds, minutes and hours. JSON keeps the exact numbers; these are for messages.

/// `999 bytes`, `1.00 kB`, `12.3 MB`, `457 GB`: three significant digits.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1000 {
        return format!("{n} bytes");
    }
    let mut value = n as f64;
    let mut unit = 0;
    value /= 1000.0;
    while value >= 999.5 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value >= 99.95 {
        0
    } else if value >= 9.995 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {}", UNITS[unit])
}

/// Two sizes that read the same in [`bytes`] (e.g. 999,999,000 and 1,000,000,223 are both "1.00 GB") are told
/// apart by their exact counts.
pub fn bytes_pair(a: u64, b: u64) -> (String, String) {
    let (ha, hb) = (bytes(a), bytes(b));
    if ha == hb && a != b {
        (format!("{} bytes ({ha})", grouped(a)), format!("{} bytes ({hb})", grouped(b)))
    } else {
        (ha, hb)
    }
}

/// `1,000,000,223`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `0.4s`, `12.3s`, `2m 05s`, `3h 07m`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 60_000 {
        return format!("{:.1}s", ms as f64 / 1000.0);
    }
    let secs = ms / 1000;
    if secs < 3600 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h {:02}m", secs / 3600, secs % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(bytes(0), "0 bytes");
        assert_eq!(bytes(999), "999 bytes");
        assert_eq!(bytes(1000), "1.00 kB");
        assert_eq!(bytes(1_000_000_223), "1.00 GB");
        assert_eq!(bytes(12_345_678), "12.3 MB");
        assert_eq!(bytes(999_499_999), "999 MB");
        assert_eq!(bytes(999_500_000), "1.00 GB");
        assert_eq!(bytes(456_789_000_000), "457 GB");
        assert_eq!(bytes(u64::MAX), "18.4 EB");
    }

    #[test]
    fn pairs_that_read_the_same_show_exact_counts() {
        assert_eq!(
            bytes_pair(999_999_000, 1_000_000_223),
            ("999,999,000 bytes (1.00 GB)".to_string(), "1,000,000,223 bytes (1.00 GB)".to_string())
        );
        assert_eq!(bytes_pair(500_000_000, 1_000_000_223), ("500 MB".to_string(), "1.00 GB".to_string()));
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms(420), "0.4s");
        assert_eq!(duration_ms(59_949), "59.9s");
        assert_eq!(duration_ms(125_000), "2m 05s");
        assert_eq!(duration_ms(11_220_000), "3h 07m");
    }
}
