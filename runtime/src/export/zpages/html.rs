//! The few HTML helpers the pages share: escaping, the page frame, query strings, times and durations.
//!
//! Every string that did not come from this file (span names, attribute values, view names, tag values)
//! goes through [`Html`]; query values in links go through [`QueryValue`] first.

use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Text escaped for HTML element content and double- or single-quoted attribute values.
pub(super) struct Html<'a>(pub(super) &'a str);

impl fmt::Display for Html<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// A query-string value, percent-encoded (everything but RFC 3986's unreserved characters). The link
/// that holds it is then escaped with [`Html`] like any other attribute.
pub(super) struct QueryValue<'a>(pub(super) &'a str);

impl fmt::Display for QueryValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                f.write_char(char::from(byte))?;
            } else {
                write!(f, "%{byte:02X}")?;
            }
        }
        Ok(())
    }
}

/// The value of `name` in a query string (`a=1&b=2`), decoded as HTML forms encode it (`+` is a space,
/// `%XX` a byte). Malformed escapes are kept as they are and invalid UTF-8 is replaced, so any input
/// yields a string. The first occurrence wins.
pub(super) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(value))
    })
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| char::from(*b).to_digit(16));
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2))
        {
            // Two hex digits make at most 255.
            out.push((high * 16 + low) as u8);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes a complete page: the frame, a heading, and `body`.
pub(super) fn page(title: &str, body: impl FnOnce(&mut String) -> fmt::Result) -> String {
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail.
    let _ = write_page(&mut out, title, body);
    out
}

fn write_page(out: &mut String, title: &str, body: impl FnOnce(&mut String) -> fmt::Result) -> fmt::Result {
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{STYLE}</style></head><body>\n<p class=\"nav\"><a href=\"/debug/tracez\">tracez</a> \
         · <a href=\"/debug/statsz\">statsz</a></p>\n<h1>{title}</h1>\n",
        title = Html(title),
    )?;
    body(out)?;
    out.push_str("</body></html>\n");
    Ok(())
}

const STYLE: &str = "body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}td.n{text-align:right}\
th{background:#eee}.muted{color:#888}.nav{font-size:small}code{font-size:small}";

/// A wall-clock time as RFC 3339 in UTC with microseconds (`2024-05-01T12:00:00.000123Z`).
pub(super) struct Timestamp(pub(super) SystemTime);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(since_epoch) = self.0.duration_since(UNIX_EPOCH) else {
            return f.write_str("(before 1970)");
        };
        let seconds = since_epoch.as_secs();
        let (year, month, day) = civil_from_days(seconds / 86_400);
        let in_day = seconds % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
            in_day / 3600,
            in_day % 3600 / 60,
            in_day % 60,
            since_epoch.subsec_micros()
        )
    }
}

/// Year, month and day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A duration in the largest unit that keeps it readable (`850ns`, `12.500µs`, `3.250ms`, `1.500s`).
pub(super) struct Elapsed(pub(super) Duration);

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos < 1_000 {
            write!(f, "{nanos}ns")
        } else if nanos < 1_000_000 {
            write!(f, "{:.3}µs", nanos as f64 / 1e3)
        } else if nanos < 1_000_000_000 {
            write!(f, "{:.3}ms", nanos as f64 / 1e6)
        } else {
            write!(f, "{:.3}s", self.0.as_secs_f64())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_open_markup() {
        assert_eq!(
            Html("<script>alert('x&y')</script> \"q\"").to_string(),
            "&lt;script&gt;alert(&#39;x&amp;y&#39;)&lt;/script&gt; &quot;q&quot;"
        );
        assert_eq!(Html("plain ünïcødé").to_string(), "plain ünïcødé");
    }

    #[test]
    fn query_values_round_trip() {
        for name in ["/users/{id}", "a&b=c d+e", "<script>", "ünï", "%zz", ""] {
            let query = format!("x=1&zspanname={}&y=2", QueryValue(name));
            assert_eq!(query_param(Some(&query), "zspanname").as_deref(), Some(name), "{query}");
        }
        assert_eq!(query_param(Some("a=1+2%2B3"), "a").as_deref(), Some("1 2+3"));
        assert_eq!(query_param(Some("a=%zz%4"), "a").as_deref(), Some("%zz%4"));
        assert_eq!(query_param(Some("a=%ff"), "a").as_deref(), Some("\u{fffd}"));
        assert_eq!(query_param(Some("flag"), "flag").as_deref(), Some(""));
        assert_eq!(query_param(Some("a=1"), "b"), None);
        assert_eq!(query_param(None, "a"), None);
    }

    #[test]
    fn times_and_durations() {
        let t = UNIX_EPOCH + Duration::new(1_709_210_096, 123_456_789);
        assert_eq!(Timestamp(t).to_string(), "2024-02-29T12:34:56.123456Z");
        assert_eq!(Timestamp(UNIX_EPOCH).to_string(), "1970-01-01T00:00:00.000000Z");
        assert_eq!(Elapsed(Duration::from_nanos(850)).to_string(), "850ns");
        assert_eq!(Elapsed(Duration::from_nanos(12_500)).to_string(), "12.500µs");
        assert_eq!(Elapsed(Duration::from_micros(3_250)).to_string(), "3.250ms");
        assert_eq!(Elapsed(Duration::from_millis(1_500)).to_string(), "1.500s");
    }
}
