//! How much one span may hold. The counts are opencensus-go's defaults; what goes over a limit is dropped
//! and counted, and the counts travel with the span (the OpenCensus proto carries them), so a trace viewer
//! can tell that something is missing.

use std::borrow::Cow;

/// Attributes per span (and per annotation or link).
pub const MAX_ATTRIBUTES: usize = 32;
/// Annotations per span.
pub const MAX_ANNOTATIONS: usize = 32;
/// Message events per span.
pub const MAX_MESSAGE_EVENTS: usize = 128;
/// Links per span.
pub const MAX_LINKS: usize = 32;
/// Bytes kept of a string attribute value or an annotation description. Longer strings are cut at the
/// last character boundary at or below this, so a span never carries a request body by accident.
pub const MAX_STRING_BYTES: usize = 256;

/// Cuts `value` to at most [`MAX_STRING_BYTES`], at a character boundary. Borrowed strings stay borrowed.
pub(crate) fn truncate(value: Cow<'static, str>) -> Cow<'static, str> {
    if value.len() <= MAX_STRING_BYTES {
        return value;
    }
    let mut end = MAX_STRING_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    match value {
        Cow::Borrowed(s) => Cow::Borrowed(&s[..end]),
        Cow::Owned(mut s) => {
            s.truncate(end);
            Cow::Owned(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_untouched() {
        assert_eq!(truncate(Cow::Borrowed("GET")), "GET");
        let exact = "x".repeat(MAX_STRING_BYTES);
        assert_eq!(truncate(Cow::Owned(exact.clone())), exact);
    }

    #[test]
    fn long_strings_are_cut_at_a_char_boundary() {
        let ascii: &'static str = Box::leak("a".repeat(1000).into_boxed_str());
        let cut = truncate(Cow::Borrowed(ascii));
        assert_eq!(cut.len(), MAX_STRING_BYTES);
        assert!(matches!(cut, Cow::Borrowed(_)), "a borrowed string is sliced, not copied");

        // 'é' is two bytes: one byte before the limit a boundary falls in the middle of a char.
        let mut mixed = "a".to_string();
        mixed.push_str(&"é".repeat(300));
        let cut = truncate(Cow::Owned(mixed));
        assert_eq!(cut.len(), MAX_STRING_BYTES - 1);
        assert!(cut.ends_with('é'));
    }
}
