//! How config problems are worded: JSON paths, the values seen, suggestions for typos.

use std::fmt;

use serde_json::Value;

use crate::Error;

/// A path into the JSON document, displayed as KrakenD users write it:
/// `extra_config."telemetry/opencensus".exporters.ocagent.reconnection`. A key that is not a plain
/// identifier is quoted as a JSON string; the empty path is the document root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct JsonPath(Vec<String>);

impl JsonPath {
    /// The document root.
    pub(crate) fn root() -> Self {
        JsonPath(Vec::new())
    }

    /// The path of `key` inside the object at this path.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(key.to_owned());
        JsonPath(segments)
    }

    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(root)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            if is_identifier(segment) {
                f.write_str(segment)?;
            } else {
                write!(f, "{}", Value::from(segment.as_str()))?;
            }
        }
        Ok(())
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The error for an invalid value at `path`.
pub(crate) fn config_error(path: &JsonPath, message: impl Into<String>) -> Error {
    Error::Config { path: path.to_string(), message: message.into() }
}

/// `s` as a JSON string, cut after 64 characters so that a pasted blob does not flood the message.
pub(crate) fn quoted(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    match s.char_indices().nth(MAX_CHARS) {
        None => Value::from(s).to_string(),
        Some((cut, _)) => format!("{}…", Value::from(&s[..cut])),
    }
}

/// What a value was, for "expected X, found Y": the value itself for scalars, its kind for containers.
pub(crate) fn found(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("{b} (a boolean)"),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{} (a string)", quoted(s)),
        Value::Array(a) if a.is_empty() => "an empty array".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(o) if o.is_empty() => "an empty object".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// The kind of a value without the value, for places whose values are secrets (header values).
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `a, b and c`, each quoted as the user would write it.
pub(crate) fn list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// ` (did you mean "x"?)` when `word` is a near miss of one of `candidates`, else empty.
pub(crate) fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    // Comparing without case and separators catches `sampleRate` and `enable-compression` too.
    fn normalize(s: &str) -> Vec<char> {
        s.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
    }
    let word_norm = normalize(word);
    if word_norm.len() > 64 {
        return String::new();
    }
    candidates
        .iter()
        .map(|c| {
            let c_norm = normalize(c);
            let threshold = 2.max(word_norm.len().max(c_norm.len()) / 4);
            (edit_distance(&word_norm, &c_norm), threshold, *c)
        })
        .filter(|(distance, threshold, _)| distance <= threshold)
        .min_by_key(|(distance, _, _)| *distance)
        .map(|(_, _, c)| format!(" (did you mean {}?)", quoted(c)))
        .unwrap_or_default()
}

/// Levenshtein distance; the words are short config keys.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_keys_that_are_not_identifiers() {
        let path = JsonPath::root()
            .key("extra_config")
            .key("telemetry/opencensus")
            .key("exporters")
            .key("ocagent")
            .key("headers")
            .key("X-Api-Key");
        assert_eq!(
            path.to_string(),
            r#"extra_config."telemetry/opencensus".exporters.ocagent.headers."X-Api-Key""#
        );
        assert_eq!(JsonPath::root().to_string(), "(root)");
        assert_eq!(JsonPath::root().key("a\"b").to_string(), r#""a\"b""#);
        assert_eq!(JsonPath::root().key("").to_string(), r#""""#);
        assert_eq!(JsonPath::root().key("9lives").to_string(), r#""9lives""#);
    }

    #[test]
    fn long_values_are_cut() {
        let long = "x".repeat(100);
        assert_eq!(quoted(&long), format!("\"{}\"…", "x".repeat(64)));
        assert_eq!(quoted("é\n"), "\"é\\n\"");
    }

    #[test]
    fn suggestions_catch_near_misses_only() {
        let keys = ["address", "service_name", "reconnection", "enable_compression"];
        assert_eq!(did_you_mean("adress", &keys), " (did you mean \"address\"?)");
        assert_eq!(did_you_mean("serviceName", &keys), " (did you mean \"service_name\"?)");
        assert_eq!(did_you_mean("reconnect", &keys), " (did you mean \"reconnection\"?)");
        assert_eq!(did_you_mean("timeout", &keys), "");
        assert_eq!(did_you_mean(&"q".repeat(1000), &keys), "");
    }

    #[test]
    fn lists_read_as_english() {
        assert_eq!(list(&["ocagent", "prometheus", "zpages"]), "ocagent, prometheus and zpages");
        assert_eq!(list(&["a"]), "a");
        assert_eq!(list(&[]), "");
    }
}
