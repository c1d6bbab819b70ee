//! Human-readable numbers for tables and messages.

/// Bytes with a binary unit: `512 B`, `1.50 KiB`, `3.20 GiB`.
pub fn bytes(n: u64) -> String {
    signed_bytes(n as i64)
}

/// Like [`bytes`], for values that may be negative (heap RSS may dip below the baseline).
pub fn signed_bytes(n: i64) -> String {
    let a = n.unsigned_abs() as f64;
    let sign = if n < 0 { "-" } else { "" };
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if a < 1024.0 {
        return format!("{n} B");
    }
    let mut v = a / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{sign}{v:.2} {}", UNITS[u])
}

/// A duration in ns with a readable unit: `850 ns`, `12.3 µs`, `4.56 ms`, `1.23 s`.
pub fn ns(n: f64) -> String {
    if n < 1e3 {
        format!("{n:.0} ns")
    } else if n < 1e6 {
        format!("{:.1} µs", n / 1e3)
    } else if n < 1e9 {
        format!("{:.2} ms", n / 1e6)
    } else {
        format!("{:.2} s", n / 1e9)
    }
}

/// A rate: `950`, `12.3 K`, `4.56 M`.
pub fn rate(v: f64) -> String {
    if v < 1e3 {
        format!("{v:.0}")
    } else if v < 1e6 {
        format!("{:.1} K", v / 1e3)
    } else if v < 1e9 {
        format!("{:.2} M", v / 1e6)
    } else {
        format!("{:.2} G", v / 1e9)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn units() {
        assert_eq!(super::bytes(1000), "1000 B");
        assert_eq!(super::bytes(1536), "1.50 KiB");
        assert_eq!(super::signed_bytes(-3 << 20), "-3.00 MiB");
        assert_eq!(super::ns(1234.0), "1.2 µs");
        assert_eq!(super::rate(4.5e6), "4.50 M");
    }
}
