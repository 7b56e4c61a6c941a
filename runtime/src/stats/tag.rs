//! Tags: the key/value pairs that split a view into rows, and the tag map that travels with the current
//! request (see [`with_tags`]).
//!
//! Keys and values follow OpenCensus' rule: printable ASCII (`' '..='~'`), at most 255 bytes; keys are also
//! non-empty. A bad key is an error where it is made (keys are few and written by programmers). A bad value
//! comes from traffic, so it is never an error: its offending characters become `_`, it is cut to 255
//! bytes, and the fix is counted (see [`super::health::invalid_tag_values`]).

use std::borrow::{Borrow, Cow};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use smallvec::SmallVec;

use super::record::THREAD;
use crate::Error;

/// The longest key or value, in bytes.
pub const MAX_TAG_LEN: usize = 255;

const fn is_printable(b: u8) -> bool {
    b >= b' ' && b <= b'~'
}

const fn is_valid_key(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_TAG_LEN {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if !is_printable(bytes[i]) {
            return false;
        }
        i += 1;
    }
    true
}

pub(crate) fn is_valid_value(value: &str) -> bool {
    value.len() <= MAX_TAG_LEN && value.bytes().all(is_printable)
}

/// `value` made valid: each character outside printable ASCII becomes `_`, then it is cut to
/// [`MAX_TAG_LEN`] bytes. Borrowed when it was valid already.
pub(crate) fn sanitize_value(value: &str) -> Cow<'_, str> {
    if is_valid_value(value) {
        return Cow::Borrowed(value);
    }
    let fixed: String = value
        .chars()
        .map(|c| if c.is_ascii() && is_printable(c as u8) { c } else { '_' })
        .take(MAX_TAG_LEN)
        .collect();
    Cow::Owned(fixed)
}

/// Byte equality, inline for the short strings tags usually are (a call to `memcmp` per value costs more
/// than the comparison): at most two overlapping word loads compare up to 16 bytes.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn word(s: &[u8], at: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(w)
    }
    fn half(s: &[u8], at: usize) -> u32 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&s[at..at + 4]);
        u32::from_ne_bytes(w)
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        // First, middle and last byte cover all of 1 to 3 bytes.
        1..4 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// The name of a tag, e.g. `http_server_route`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagKey {
    name: Cow<'static, str>,
}

impl TagKey {
    /// A key from a literal, for `const` items:
    ///
    /// ```
    /// use oclayer_runtime::stats::TagKey;
    /// const TENANT: TagKey = TagKey::from_static("tenant");
    /// ```
    ///
    /// # Panics
    /// If `name` is empty, longer than 255 bytes or not printable ASCII. In a `const` item that is a compile
    /// error, which is where this constructor belongs; use [`TagKey::new`] for names known at run time.
    pub const fn from_static(name: &'static str) -> TagKey {
        assert!(is_valid_key(name), "a tag key must be 1 to 255 bytes of printable ASCII");
        TagKey { name: Cow::Borrowed(name) }
    }

    /// A key from a name known at run time.
    ///
    /// # Errors
    /// [`Error::TagKey`] if `name` is empty, longer than 255 bytes or not printable ASCII.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Result<TagKey, Error> {
        let name = name.into();
        if is_valid_key(&name) {
            return Ok(TagKey { name });
        }
        let message = if name.is_empty() {
            "a tag key must not be empty".to_owned()
        } else if name.len() > MAX_TAG_LEN {
            format!("a tag key is at most {MAX_TAG_LEN} bytes, this one has {}", name.len())
        } else {
            "a tag key must be printable ASCII (' ' to '~')".to_owned()
        };
        Err(Error::TagKey { key: name.into_owned(), message })
    }

    /// The key's name.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Equality with a fast path for the usual case of two copies of one `const` key.
    #[inline]
    pub(crate) fn same(&self, other: &TagKey) -> bool {
        let (a, b) = (self.as_str().as_bytes(), other.as_str().as_bytes());
        std::ptr::eq(a, b) || same_bytes(a, b)
    }
}

impl std::fmt::Display for TagKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// A tag value. Cheap to clone: a static string or a shared one.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagValue(Repr);

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl TagValue {
    /// A value from a literal; no allocation when it is valid.
    pub fn from_static(value: &'static str) -> TagValue {
        match sanitize_value(value) {
            Cow::Borrowed(_) => TagValue(Repr::Static(value)),
            Cow::Owned(fixed) => {
                super::health::count_invalid_tag_value();
                TagValue(Repr::Shared(fixed.into()))
            }
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }
}

impl From<&str> for TagValue {
    /// Copies `value`, fixed as the module docs say if it is invalid.
    fn from(value: &str) -> TagValue {
        let fixed = sanitize_value(value);
        if matches!(fixed, Cow::Owned(_)) {
            super::health::count_invalid_tag_value();
        }
        TagValue(Repr::Shared(Arc::from(&*fixed)))
    }
}

impl From<String> for TagValue {
    fn from(value: String) -> TagValue {
        match sanitize_value(&value) {
            Cow::Borrowed(_) => TagValue(Repr::Shared(value.into())),
            Cow::Owned(fixed) => {
                super::health::count_invalid_tag_value();
                TagValue(Repr::Shared(fixed.into()))
            }
        }
    }
}

impl From<Arc<str>> for TagValue {
    /// Shares `value` without copying when it is valid (e.g. a router's matched-path `Arc<str>`).
    fn from(value: Arc<str>) -> TagValue {
        match sanitize_value(&value) {
            Cow::Borrowed(_) => TagValue(Repr::Shared(value)),
            Cow::Owned(fixed) => {
                super::health::count_invalid_tag_value();
                TagValue(Repr::Shared(fixed.into()))
            }
        }
    }
}

impl Borrow<str> for TagValue {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for TagValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for TagValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of tags, at most one value per key. The first four entries live inline (no allocation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagMap {
    entries: SmallVec<[(TagKey, TagValue); 4]>,
}

impl TagMap {
    /// An empty map.
    pub const fn new() -> TagMap {
        TagMap { entries: SmallVec::new_const() }
    }

    /// Sets `key` to `value`, replacing its previous value.
    pub fn insert(&mut self, key: TagKey, value: impl Into<TagValue>) -> &mut TagMap {
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| k.same(&key)) {
            Some((_, v)) => *v = value,
            None => self.entries.push((key, value)),
        }
        self
    }

    /// This map with `key` set to `value`.
    pub fn with(mut self, key: TagKey, value: impl Into<TagValue>) -> TagMap {
        self.insert(key, value);
        self
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &TagKey) -> Option<TagValue> {
        let i = self.entries.iter().position(|(k, _)| k.same(key))?;
        Some(self.entries.remove(i).1)
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: &TagKey) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k.same(key)).map(|(_, v)| v.as_str())
    }

    /// The entries, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&TagKey, &TagValue)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no tags.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl FromIterator<(TagKey, TagValue)> for TagMap {
    fn from_iter<I: IntoIterator<Item = (TagKey, TagValue)>>(iter: I) -> TagMap {
        let mut map = TagMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

// ---- the current tags -------------------------------------------------------------------------------------

/// A copy of the tags in effect here: start from it to add a tag for what runs inside.
pub fn current_tags() -> TagMap {
    THREAD.try_with(|t| t.tags.try_borrow().map(|m| m.clone()).unwrap_or_default()).unwrap_or_default()
}

/// Swaps a map into the thread's current tags and back out on drop, so an inner scope (or a panic) restores the outer tags.
struct Swap<'a> {
    tags: &'a mut TagMap,
    swapped: bool,
}

impl<'a> Swap<'a> {
    fn enter(tags: &'a mut TagMap) -> Swap<'a> {
        let swapped = THREAD
            .try_with(|t| match t.tags.try_borrow_mut() {
                Ok(mut current) => {
                    std::mem::swap(&mut *current, tags);
                    true
                }
                Err(_) => false,
            })
            .unwrap_or(false);
        Swap { tags, swapped }
    }
}

impl Drop for Swap<'_> {
    fn drop(&mut self) {
        if self.swapped {
            let tags = &mut *self.tags;
            let _ = THREAD.try_with(|t| {
                if let Ok(mut current) = t.tags.try_borrow_mut() {
                    std::mem::swap(&mut *current, tags);
                }
            });
        }
    }
}

pin_project_lite::pin_project! {
    /// A future that runs with a tag map as the current tags: see [`with_tags`].
    #[must_use = "futures do nothing unless polled"]
    pub struct WithTags<F> {
        tags: TagMap,
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for WithTags<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _current = Swap::enter(this.tags);
        this.inner.poll(cx)
    }
}

/// Runs `future` with `tags` as the current tags: every record made while it is polled (by this future or
/// what it awaits inline) sees them, under the tags it passes itself. This is how the route set by the router
/// layer reaches the pipe and backend records of the same request.
///
/// `tags` replaces the current tags rather than adding to them; to add, start from [`current_tags`]:
///
/// ```
/// use oclayer_runtime::stats::{self, TagKey};
/// const TENANT: TagKey = TagKey::from_static("tenant");
/// # async fn handle() {}
/// # async fn run() {
/// stats::with_tags(stats::current_tags().with(TENANT, "acme"), handle()).await;
/// # }
/// ```
///
/// Tasks spawned inside do not inherit the tags (as with any task-local): wrap them too.
pub fn with_tags<F: Future>(tags: TagMap, future: F) -> WithTags<F> {
    WithTags { tags, inner: future }
}

/// Runs `f` with `tags` as the current tags; the synchronous twin of [`with_tags`].
pub fn with_tags_sync<R>(mut tags: TagMap, f: impl FnOnce() -> R) -> R {
    let _current = Swap::enter(&mut tags);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: TagKey = TagKey::from_static("k");
    const J: TagKey = TagKey::from_static("j");

    #[test]
    fn short_string_equality_matches_slice_equality() {
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "b",
            "ac",
            "abd",
            "xbc",
            "axc",
            "abcd",
            "abce",
            "abcdefg",
            "abcdefh",
            "abcdefgh",
            "/users/{id}",
            "/users/{ix}",
            "/users/{id}/x",
            "0123456789abcdef",
            "0123456789abcdeF",
            "0123456789abcdefg",
            "0123456789abcdefh",
        ];
        for a in words {
            for b in words {
                assert_eq!(same_bytes(a.as_bytes(), b.as_bytes()), a == b, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn keys_are_validated() {
        assert!(TagKey::new("http.method").is_ok());
        assert!(TagKey::new(" ~").is_ok());
        for bad in ["", "tab\there", "é", &"x".repeat(256)] {
            let err = TagKey::new(bad.to_owned()).expect_err(bad);
            assert!(matches!(err, Error::TagKey { .. }), "{err}");
        }
        assert!(TagKey::new("x".repeat(255)).is_ok());
    }

    #[test]
    fn invalid_values_are_fixed_never_refused() {
        assert_eq!(sanitize_value("/users/{id}"), Cow::Borrowed("/users/{id}"));
        assert_eq!(sanitize_value("a\nb"), "a_b");
        assert_eq!(sanitize_value("café"), "caf_");
        assert_eq!(sanitize_value(&"y".repeat(300)).len(), MAX_TAG_LEN);
        assert_eq!(sanitize_value(""), "");
        assert_eq!(TagValue::from("bad\u{0}").as_str(), "bad_");
        assert_eq!(TagValue::from_static("ok").as_str(), "ok");
    }

    #[test]
    fn map_keeps_one_value_per_key() {
        let mut map = TagMap::new().with(K, "1").with(J, "2");
        map.insert(K, "3");
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(&K), Some("3"));
        assert_eq!(map.remove(&J).map(|v| v.to_string()), Some("2".to_owned()));
        assert_eq!(map.get(&J), None);
        let dynamic = TagKey::new(String::from("k")).expect("valid");
        assert_eq!(map.get(&dynamic), Some("3"), "keys compare by name, not by address");
    }

    #[test]
    fn sync_scopes_nest_and_restore() {
        assert!(current_tags().is_empty());
        with_tags_sync(TagMap::new().with(K, "outer"), || {
            assert_eq!(current_tags().get(&K), Some("outer"));
            with_tags_sync(current_tags().with(J, "inner"), || {
                let tags = current_tags();
                assert_eq!((tags.get(&K), tags.get(&J)), (Some("outer"), Some("inner")));
            });
            assert_eq!(current_tags().get(&J), None);
        });
        assert!(current_tags().is_empty());
    }

    #[test]
    fn a_panic_inside_a_scope_restores_the_outer_tags() {
        let caught = std::panic::catch_unwind(|| {
            with_tags_sync(TagMap::new().with(K, "x"), || panic!("handler failed"));
        });
        assert!(caught.is_err());
        assert!(current_tags().is_empty());
    }

    #[test]
    fn future_sees_its_tags_on_every_poll_and_others_do_not() {
        struct YieldOnce(bool);
        impl Future for YieldOnce {
            type Output = ();
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                if self.0 {
                    Poll::Ready(())
                } else {
                    self.0 = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        }
        let mut seen = Vec::new();
        let fut = with_tags(TagMap::new().with(K, "req"), async {
            seen.push(current_tags().get(&K).map(str::to_owned));
            YieldOnce(false).await;
            seen.push(current_tags().get(&K).map(str::to_owned));
        });
        let mut fut = std::pin::pin!(fut);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        // Between polls the thread is free for other tasks: no tags leak out.
        assert!(current_tags().is_empty());
        assert!(fut.as_mut().poll(&mut cx).is_ready());
        assert_eq!(seen, vec![Some("req".to_owned()), Some("req".to_owned())]);
    }
}
