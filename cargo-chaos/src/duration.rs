//! Parsing durations given on the command line: `90s`, `2m`, `1h`, `500ms`, `1m30s`.

use std::time::Duration;

/// Parses a duration that must not be zero (a bound of 0 would run nothing).
pub fn parse_nonzero(text: &str) -> Result<Duration, String> {
    let d = parse(text)?;
    if d.is_zero() {
        return Err(format!("`{text}` is zero: give a positive duration"));
    }
    Ok(d)
}

/// Parses a duration; a bare number means seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return secs_to_duration(secs, text);
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let value: f64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a duration (e.g. 30s, 2m, 1h)"))?;
        num.clear();
        total += value
            * match unit.as_str() {
                "ms" => 0.001,
                "s" | "sec" | "secs" => 1.0,
                "m" | "min" | "mins" => 60.0,
                "h" | "hour" | "hours" => 3600.0,
                _ => {
                    return Err(format!(
                        "unknown unit `{unit}` in `{text}` (use ms, s, m or h)"
                    ))
                }
            };
    }
    if !num.is_empty() {
        return Err(format!(
            "`{text}` has a number without a unit at the end (e.g. 30s)"
        ));
    }
    secs_to_duration(total, text)
}

fn secs_to_duration(secs: f64, text: &str) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{text}` is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("3").unwrap(), Duration::from_secs(3));
        assert!(parse("3x").is_err());
        assert!(parse("").is_err());
        assert!(parse("5s3").is_err());
    }
}
