//! Durations on the command line: `30s`, `5m`, `2h`, `1d`, or combined as `1h30m`.
//!
//! Use as a clap value parser: `#[arg(long, value_parser = duration::parse)]`.

use std::time::Duration;

/// Parses one or more `<number><unit>` parts, unit `s`, `m`, `h` or `d` (`0s` is zero).
pub fn parse(text: &str) -> Result<Duration, String> {
    const HINT: &str =
        "use a number and a unit ms, s, m, h or d, e.g. 500ms, 30s, 5m, 2h, 1d or 1h30m";
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("empty duration ({HINT})"));
    }
    let mut total: u64 = 0; // milliseconds
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("`{text}` is not a duration ({HINT})"));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let (unit, after) = after.split_at(unit_len);
        let millis_per_unit = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" if after.is_empty() => return Err(format!("`{text}` has no unit ({HINT})")),
            "" => return Err(format!("`{text}` is not a duration ({HINT})")),
            other => return Err(format!("`{other}` in `{text}` is not a unit ({HINT})")),
        };
        let part = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(millis_per_unit))
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
        total = part;
        rest = after;
    }
    Ok(Duration::from_millis(total))
}
