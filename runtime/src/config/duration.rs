//! Go duration strings (`"2s"`, `"1m30s"`, `"-1.5h"`), parsed exactly as Go's `time.ParseDuration` parses
//! them, since KrakenD configs are written for that parser.
//!
//! Grammar: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `0` alone (optionally signed). Units: `ns`, `us`, `µs`
//! (U+00B5), `μs` (U+03BC), `ms`, `s`, `m`, `h`. The result is an `i64` count of nanoseconds, like Go's
//! `time.Duration`; the caller decides whether negative values make sense.
//!
//! The arithmetic deliberately mirrors Go's, including its use of `f64` for the fractional part of each
//! number (so `0.3333333333333333333h` is exactly 20 minutes, as in Go) and its `u64` accumulator, so that a
//! string Go accepts is accepted here with the same value and a string Go refuses is refused.

use std::fmt;

/// Why a string is not a Go duration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GoDurationError {
    /// Not of the form `[-+]?([0-9]*(\.[0-9]*)?unit)+` (Go: `invalid duration`).
    Syntax,
    /// A number without a unit, such as `"2"` (Go: `missing unit in duration`).
    MissingUnit,
    /// A unit Go does not know, such as `d` (Go: `unknown unit "d" in duration`).
    UnknownUnit(String),
    /// Outside Go's `time.Duration` range, about ±292 years (Go: `invalid duration`).
    Overflow,
}

impl fmt::Display for GoDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoDurationError::Syntax => f.write_str("not a Go duration (numbers each followed by a unit)"),
            GoDurationError::MissingUnit => {
                f.write_str("a number needs a unit (ns, us, µs, ms, s, m or h), e.g. \"2s\"")
            }
            GoDurationError::UnknownUnit(unit) => write!(
                f,
                "unknown unit {} (the units are ns, us, µs, ms, s, m and h; there is no d for days: write 24h)",
                serde_json::Value::from(unit.as_str())
            ),
            GoDurationError::Overflow => {
                f.write_str("out of range (Go durations are at most 2562047h47m16.854775807s)")
            }
        }
    }
}

/// Go's `1 << 63`: the accumulator may reach it (for `i64::MIN`) but not pass it.
const LIMIT: u64 = 1 << 63;

const NANOSECOND: u64 = 1;
const MICROSECOND: u64 = 1_000 * NANOSECOND;
const MILLISECOND: u64 = 1_000 * MICROSECOND;
const SECOND: u64 = 1_000 * MILLISECOND;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// Go's unit table, compared byte for byte as Go does.
const UNITS: [(&str, u64); 8] = [
    ("ns", NANOSECOND),
    ("us", MICROSECOND),
    ("\u{00B5}s", MICROSECOND), // micro sign
    ("\u{03BC}s", MICROSECOND), // Greek small letter mu
    ("ms", MILLISECOND),
    ("s", SECOND),
    ("m", MINUTE),
    ("h", HOUR),
];

/// Parses a Go duration string into nanoseconds.
pub(crate) fn parse_go_duration(input: &str) -> Result<i64, GoDurationError> {
    parse_bytes(input.as_bytes())
}

/// The parser proper, on bytes like Go's, so that tests can feed it the invalid UTF-8 of Go's own table.
fn parse_bytes(mut s: &[u8]) -> Result<i64, GoDurationError> {
    let mut neg = false;
    if let Some((&sign @ (b'-' | b'+'), rest)) = s.split_first() {
        neg = sign == b'-';
        s = rest;
    }
    // "0", "-0" and "+0" are the only numbers allowed without a unit.
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(GoDurationError::Syntax);
    }
    let mut total: u64 = 0;
    while let Some(&first) = s.first() {
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(GoDurationError::Syntax);
        }
        let before_int = s.len();
        let (mut value, rest) = leading_int(s).ok_or(GoDurationError::Overflow)?;
        s = rest;
        let has_int = s.len() != before_int;

        let (mut fraction, mut scale, mut has_fraction) = (0u64, 1f64, false);
        if let Some((b'.', rest)) = s.split_first() {
            let before_fraction = rest.len();
            (fraction, scale, s) = leading_fraction(rest);
            has_fraction = s.len() != before_fraction;
        }
        if !has_int && !has_fraction {
            // A lone "." as in ".s" or "-.".
            return Err(GoDurationError::Syntax);
        }

        let unit_len = s.iter().position(|&c| c == b'.' || c.is_ascii_digit()).unwrap_or(s.len());
        if unit_len == 0 {
            return Err(GoDurationError::MissingUnit);
        }
        let (unit_text, rest) = s.split_at(unit_len);
        s = rest;
        let unit =
            UNITS.iter().find(|(name, _)| name.as_bytes() == unit_text).map(|&(_, nanos)| nanos).ok_or_else(
                || GoDurationError::UnknownUnit(String::from_utf8_lossy(unit_text).into_owned()),
            )?;

        if value > LIMIT / unit {
            return Err(GoDurationError::Overflow);
        }
        value *= unit;
        if fraction > 0 {
            // As Go: f64 keeps fractions of hours nanosecond-accurate, and the product is at most
            // 3.6e12 (one hour in ns), so the truncating cast cannot saturate.
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(GoDurationError::Overflow);
            }
        }
        // Both terms are at most 2^63, so the sum can only wrap at exactly 2^64, to 0. Go's uint64 addition
        // wraps there too and then accepts the string; we keep that (absurd) corner identical rather than
        // refuse a config that KrakenD accepts.
        total = total.wrapping_add(value);
        if total > LIMIT {
            return Err(GoDurationError::Overflow);
        }
    }
    if neg {
        // 2^63 becomes i64::MIN, the one magnitude only a negative duration can have.
        return Ok((total as i64).wrapping_neg());
    }
    if total > LIMIT - 1 {
        return Err(GoDurationError::Overflow);
    }
    Ok(total as i64)
}

/// Consumes the leading `[0-9]*`; `None` when the number passes 2^63.
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut x: u64 = 0;
    for &c in &s[..digits] {
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > LIMIT {
            return None;
        }
    }
    Some((x, &s[digits..]))
}

/// Consumes the leading `[0-9]*` of a fraction. Past 2^63 it stops accumulating precision (the digits are
/// still consumed), as Go does, since digits that far right cannot change the nanosecond count.
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let (mut x, mut scale, mut overflow) = (0u64, 1f64, false);
    for &c in &s[..digits] {
        if overflow {
            continue;
        }
        if x > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > LIMIT {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[digits..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NS: i64 = 1;
    const US: i64 = 1_000;
    const MS: i64 = 1_000_000;
    const SEC: i64 = 1_000_000_000;
    const MIN: i64 = 60 * SEC;
    const HOUR: i64 = 60 * MIN;

    /// Go's `parseDurationTests` (src/time/time_test.go), every row.
    #[test]
    fn accepts_go_table() {
        let table: &[(&str, i64)] = &[
            // simple
            ("0", 0),
            ("5s", 5 * SEC),
            ("30s", 30 * SEC),
            ("1478s", 1478 * SEC),
            // sign
            ("-5s", -5 * SEC),
            ("+5s", 5 * SEC),
            ("-0", 0),
            ("+0", 0),
            // decimal
            ("5.0s", 5 * SEC),
            ("5.6s", 5 * SEC + 600 * MS),
            ("5.s", 5 * SEC),
            (".5s", 500 * MS),
            ("1.0s", SEC),
            ("1.00s", SEC),
            ("1.004s", SEC + 4 * MS),
            ("1.0040s", SEC + 4 * MS),
            ("100.00100s", 100 * SEC + MS),
            // different units
            ("10ns", 10 * NS),
            ("11us", 11 * US),
            ("12\u{00B5}s", 12 * US),
            ("12\u{03BC}s", 12 * US),
            ("13ms", 13 * MS),
            ("14s", 14 * SEC),
            ("15m", 15 * MIN),
            ("16h", 16 * HOUR),
            // composite durations
            ("3h30m", 3 * HOUR + 30 * MIN),
            ("10.5s4m", 4 * MIN + 10 * SEC + 500 * MS),
            ("-2m3.4s", -(2 * MIN + 3 * SEC + 400 * MS)),
            ("1h2m3s4ms5us6ns", HOUR + 2 * MIN + 3 * SEC + 4 * MS + 5 * US + 6 * NS),
            ("39h9m14.425s", 39 * HOUR + 9 * MIN + 14 * SEC + 425 * MS),
            // large value
            ("52763797000ns", 52763797000 * NS),
            // more than 9 digits after the decimal point (golang.org/issue/6617)
            ("0.3333333333333333333h", 20 * MIN),
            // 1<<53+1 cannot be stored exactly in an f64
            ("9007199254740993ns", (1 << 53) + 1),
            // the largest duration an i64 of nanoseconds holds
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-9223372036s854ms775us808ns", i64::MIN),
            // the largest negative round-trip value (golang.org/issue/48629)
            ("-2562047h47m16.854775808s", i64::MIN),
            // a huge string (golang.org/issue/15011)
            ("0.100000000000000000000h", 6 * MIN),
            // the first overflow check in leadingFraction
            ("0.830103483285477580700h", 49 * MIN + 48 * SEC + 372539827 * NS),
        ];
        for &(input, want) in table {
            assert_eq!(parse_go_duration(input), Ok(want), "input {input:?}");
        }
    }

    /// Go's `parseDurationErrorTests`, every row, with the kind of error each one is.
    #[test]
    fn refuses_go_error_table() {
        use GoDurationError::*;
        let table: &[(&[u8], GoDurationError)] = &[
            (b"", Syntax),
            (b"3", MissingUnit),
            (b"-", Syntax),
            (b"s", Syntax),
            (b".", Syntax),
            (b"-.", Syntax),
            (b".s", Syntax),
            (b"+.s", Syntax),
            (b"1d", UnknownUnit("d".into())),
            (b"\x85\x85", Syntax),
            (b"\xffff", Syntax),
            (b"hello \xffff world", Syntax),
            ("\u{FFFD}".as_bytes(), Syntax),
            ("\u{FFFD} hello \u{FFFD} world".as_bytes(), Syntax),
            // overflow
            (b"9223372036854775810ns", Overflow),
            (b"9223372036854775808ns", Overflow),
            (b"-9223372036854775809ns", Overflow),
            (b"9223372036854776us", Overflow),
            (b"3000000h", Overflow),
            (b"9223372036854775.808us", Overflow),
            (b"9223372036854ms775us808ns", Overflow),
        ];
        for (input, want) in table {
            assert_eq!(parse_bytes(input).as_ref(), Err(want), "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn refuses_what_go_refuses_beyond_its_table() {
        use GoDurationError::*;
        for (input, want) in [
            ("00", MissingUnit),
            ("1.5", MissingUnit),
            ("1h30", MissingUnit),
            (" 1s", Syntax),
            ("1s ", UnknownUnit("s ".into())),
            ("2 seconds", UnknownUnit(" seconds".into())),
            ("1S", UnknownUnit("S".into())),
            ("1sec", UnknownUnit("sec".into())),
            ("+-1s", Syntax),
            ("--1s", Syntax),
            ("1s-1s", UnknownUnit("s-".into())),
            ("1..5s", MissingUnit),
            ("1e3s", UnknownUnit("e".into())),
            ("0x10s", UnknownUnit("x".into())),
            ("-", Syntax),
            ("+", Syntax),
        ] {
            assert_eq!(parse_go_duration(input), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn accepts_what_go_accepts_beyond_its_table() {
        for (input, want) in [
            ("2s", 2 * SEC),
            ("500ms", 500 * MS),
            ("1m30s", 90 * SEC),
            ("1.5h", 90 * MIN),
            ("-1.5h", -90 * MIN),
            ("0s", 0),
            ("-0s", 0),
            ("000001s", SEC),
            // repeated units simply add up
            ("1s1s", 2 * SEC),
            // a fraction beyond nanosecond precision is truncated, as Go's f64 product is
            ("1.9ns", NS),
            ("0.0000000019s", NS),
            ("1.s.5s", 1500 * MS),
        ] {
            assert_eq!(parse_go_duration(input), Ok(want), "input {input:?}");
        }
    }

    /// Go's accumulator wraps at exactly 2^64; Go returns 0 here, and so do we.
    #[test]
    fn mirrors_go_wrapping_corner() {
        assert_eq!(parse_go_duration("9223372036854775808ns9223372036854775808ns"), Ok(0));
        // One nanosecond less and there is no wrap: the sum passes 2^63 and is refused.
        assert_eq!(
            parse_go_duration("9223372036854775807ns9223372036854775808ns"),
            Err(GoDurationError::Overflow)
        );
    }

    #[test]
    fn error_messages_are_actionable() {
        assert!(GoDurationError::UnknownUnit("d".into()).to_string().contains("unknown unit \"d\""));
        assert!(GoDurationError::UnknownUnit("d".into()).to_string().contains("write 24h"));
        assert!(GoDurationError::MissingUnit.to_string().contains("e.g. \"2s\""));
        assert!(GoDurationError::Overflow.to_string().contains("2562047h47m16.854775807s"));
    }

    proptest! {
        #[test]
        fn never_panics_on_any_string(input in any::<String>()) {
            let _ = parse_go_duration(&input);
        }

        #[test]
        fn never_panics_on_duration_like_bytes(input in proptest::collection::vec(
            prop_oneof![Just(b'.'), Just(b'-'), Just(b'+'), Just(b'h'), Just(b'm'), Just(b's'), Just(b'n'),
                        Just(b'u'), (b'0'..=b'9')],
            0..40,
        )) {
            let _ = parse_bytes(&input);
        }

        #[test]
        fn components_add_up(h in 0i64..100_000, m in 0i64..60, s in 0i64..60, ms in 0i64..1000,
                             neg in any::<bool>()) {
            let sign = if neg { "-" } else { "" };
            let text = format!("{sign}{h}h{m}m{s}s{ms}ms");
            let magnitude = h * HOUR + m * MIN + s * SEC + ms * MS;
            prop_assert_eq!(parse_go_duration(&text), Ok(if neg { -magnitude } else { magnitude }));
        }

        #[test]
        fn whole_nanoseconds_round_trip(n in any::<i64>()) {
            prop_assert_eq!(parse_go_duration(&format!("{n}ns")), Ok(n));
        }
    }
}
