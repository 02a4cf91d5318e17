//! Byte sizes written the way people write them: `8192`, `56KiB`, `2GiB`, `1.5GB`.

/// Splits `12.5GiB` into 12.5 and `GiB` (the unit trimmed, maybe empty);
/// `None` if it does not start with a number.
pub(crate) fn number_and_unit(text: &str) -> Option<(f64, &str)> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    Some((num.parse().ok()?, unit.trim()))
}

/// Parses a size with an optional binary (KiB, MiB, GiB, TiB) or decimal
/// (KB, MB, GB, TB) suffix; `K`, `M`, `G`, `T` alone are binary.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (value, unit) = number_and_unit(text)
        .ok_or_else(|| format!("{text:?} is not a size (try 8192, 56KiB, 2GiB)"))?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return Err(format!("{text:?} has an unknown unit (try KiB, MiB, GiB)")),
    };
    Ok((value * mult).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_size("8192"), Ok(8192));
        assert_eq!(parse_size("56KiB"), Ok(57344));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }
}

/// A byte count for people: `0 B`, `8.0 KiB`, `1.25 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.2} {unit}")
}

/// Parses a rate such as `50MiB/s` (the `/s` is optional) into bytes per second.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    parse_size(text.trim().trim_end_matches("/s"))
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn formats_and_parses_rates() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(8192), "8.00 KiB");
        assert_eq!(format_size(3 << 30), "3.00 GiB");
        assert_eq!(parse_rate("50MiB/s"), Ok(50 << 20));
        assert_eq!(parse_rate("1k"), Ok(1024));
    }
}
