//! Markdown pieces and number formats of the report (the same value always prints the same).

/// A Markdown table; `|` inside a cell is escaped.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let line = |cells: &mut dyn Iterator<Item = String>| {
        let cells: Vec<String> = cells.map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = line(&mut header.iter().map(|h| h.to_string()));
    out.push_str(&line(&mut header.iter().map(|_| "---".to_string())));
    for row in rows {
        out.push_str(&line(&mut row.iter().cloned()));
    }
    out
}

/// A fraction as a percentage with two decimals: `0.6944` -> `69.44%`.
pub(super) fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// Four decimals (losses, mixing weights).
pub(super) fn f4(x: f64) -> String {
    format!("{x:.4}")
}

/// Seconds: three decimals under 10 s, one above.
pub(super) fn secs(x: f64) -> String {
    if x.abs() < 10.0 {
        format!("{x:.3} s")
    } else {
        format!("{x:.1} s")
    }
}

/// A count with its noun, singular or plural: `1 epoch`, `3 epochs`.
pub(super) fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// Four significant digits (learning rates of any size): `0.025` -> `0.02500`.
pub(super) fn sig4(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let decimals = (3 - x.abs().log10().floor() as i64).clamp(0, 12) as usize;
    format!("{x:.decimals$}")
}

/// `text` with its first letter in upper case.
pub(super) fn capitalized(text: &str) -> String {
    let mut c = text.chars();
    c.next()
        .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
}
