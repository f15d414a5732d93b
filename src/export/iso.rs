//! ISO 8601 timestamps for HAR's `startedDateTime`, both ways. Written by hand because the
//! crate builds `time` without its `parsing` feature, and HAR only needs one shape:
//! `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM|±HHMM|±HH)`.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// `2026-06-08T11:41:20.130+00:00`: UTC, milliseconds. Browsers' `Date` parses exactly this
/// form; the exact microseconds travel in `_vobizTunnel.timings`.
pub fn format_micros(micros: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Microseconds since the Unix epoch of an ISO 8601 date-time; `None` when it is not one.
/// Without an offset the time is taken as UTC (what HAR writers that omit it mean).
pub fn parse_micros(text: &str) -> Option<i64> {
    let text = text.trim();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let bytes = text.as_bytes();
    let separators_ok = bytes.get(4) == Some(&b'-')
        && bytes.get(7) == Some(&b'-')
        && matches!(bytes.get(10), Some(b'T' | b't' | b' '))
        && bytes.get(13) == Some(&b':')
        && bytes.get(16) == Some(&b':');
    if !separators_ok {
        return None;
    }
    let month = Month::try_from(u8::try_from(number(5..7)?).ok()?).ok()?;
    let date = Date::from_calendar_date(
        i32::try_from(number(0..4)?).ok()?,
        month,
        u8::try_from(number(8..10)?).ok()?,
    )
    .ok()?;
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let mut rest = text.get(19..)?;
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix(['.', ',']) {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        // Keep nanosecond precision; further digits are below what anything records.
        let kept = &fraction[..len.min(9)];
        nanos = kept.parse::<u32>().ok()? * 10u32.pow(9 - kept.len() as u32);
        rest = &fraction[len..];
    }
    let offset = parse_offset(rest)?;
    let time = Time::from_hms_nano(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    let at = PrimitiveDateTime::new(date, time).assume_offset(offset);
    i64::try_from(at.unix_timestamp_nanos() / 1000).ok()
}

fn parse_offset(text: &str) -> Option<UtcOffset> {
    if text.is_empty() || text.eq_ignore_ascii_case("z") {
        return Some(UtcOffset::UTC);
    }
    let sign: i8 = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = text[1..].chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
        return None;
    }
    let hours: i8 = digits[..2].parse().ok()?;
    let minutes: i8 = digits
        .get(2..)
        .filter(|m| !m.is_empty())
        .map_or(Some(0), |m| m.parse().ok())?;
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_back_to_the_millisecond() {
        let micros = 1_780_918_880_130_248;
        let text = format_micros(micros);
        assert_eq!(text, "2026-06-08T11:41:20.130+00:00");
        assert_eq!(parse_micros(&text), Some(micros - 248));
    }

    #[test]
    fn parses_the_shapes_har_writers_use() {
        let utc = parse_micros("2026-06-08T11:41:20.130248Z").unwrap();
        assert_eq!(utc, 1_780_918_880_130_248);
        assert_eq!(parse_micros("2026-06-08T17:11:20.130248+05:30"), Some(utc));
        assert_eq!(parse_micros("2026-06-08T06:41:20.130248-0500"), Some(utc));
        assert_eq!(parse_micros("2026-06-08T11:41:20.130248"), Some(utc));
        assert_eq!(
            parse_micros("2026-06-08T11:41:20+01"),
            Some(utc - 130_248 - 3_600_000_000)
        );
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        for text in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-06-08T25:00:00Z",
            "2026-06-08T11:41:20.Z",
            "2026-06-08T11:41:20+5",
            "2026-06-08T11:41:20 UTC",
            "2026-06-08",
        ] {
            assert_eq!(parse_micros(text), None, "{text}");
        }
    }
}
