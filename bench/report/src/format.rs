//! Durations and ratios as the report prints them.

/// `812 ns`, `3.41 µs`, `12.0 ms`, `1.30 s`: three significant digits.
pub(crate) fn duration(ns: f64) -> String {
    if !ns.is_finite() {
        return "—".to_owned();
    }
    let (value, unit) = match ns {
        n if n >= 1e9 => (n / 1e9, "s"),
        n if n >= 1e6 => (n / 1e6, "ms"),
        n if n >= 1e3 => (n / 1e3, "µs"),
        n => (n, "ns"),
    };
    format!("{} {unit}", significant(value))
}

/// An instruction count as a whole number with thousands separators: `40,336`.
pub(crate) fn count(value: f64) -> String {
    if !value.is_finite() {
        return "—".to_owned();
    }
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A median with its spread: `3.41 µs ± 0.05`, the spread in the median's unit.
pub(crate) fn with_spread(median_ns: f64, spread_ns: f64) -> String {
    let scale = match median_ns {
        n if n >= 1e9 => 1e9,
        n if n >= 1e6 => 1e6,
        n if n >= 1e3 => 1e3,
        _ => 1.0,
    };
    if spread_ns.is_finite() {
        format!(
            "{} ± {}",
            duration(median_ns),
            significant(spread_ns / scale)
        )
    } else {
        duration(median_ns)
    }
}

/// `1.004`, `0.731`, `12.3`, `2104`: a ratio with three decimals near 1.
pub(crate) fn ratio(value: f64) -> String {
    match value {
        v if !v.is_finite() => "—".to_owned(),
        v if v < 10.0 => format!("{v:.3}"),
        v => significant(v),
    }
}

fn significant(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keep_three_digits() {
        assert_eq!(duration(812.0), "812 ns");
        assert_eq!(duration(3_410.0), "3.41 µs");
        assert_eq!(duration(12_040_000.0), "12.0 ms");
        assert_eq!(duration(1_300_000_000.0), "1.30 s");
        assert_eq!(with_spread(3_410.0, 52.0), "3.41 µs ± 0.05");
        assert_eq!(ratio(1.0041), "1.004");
        assert_eq!(ratio(2104.2), "2104");
        assert_eq!(ratio(f64::NAN), "—");
    }

    #[test]
    fn counts_group_thousands() {
        assert_eq!(count(40_336.4), "40,336");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(1_000.0), "1,000");
        assert_eq!(count(31_457_280.0), "31,457,280");
        assert_eq!(count(f64::NAN), "—");
    }
}
