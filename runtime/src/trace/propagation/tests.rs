use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::*;
use crate::trace::{SpanId, TraceId, TraceState};

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    map
}

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";

fn trace_id() -> TraceId {
    TraceId::from_hex(TRACE).expect("valid")
}

fn span_id() -> SpanId {
    SpanId::from_hex(SPAN).expect("valid")
}

#[test]
fn traceparent_is_read() {
    let context =
        extract(&headers(&[("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]))
            .expect("valid traceparent");
    assert_eq!((context.trace_id, context.span_id, context.sampled), (trace_id(), span_id(), true));
    let context =
        extract(&headers(&[("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")]))
            .expect("valid traceparent");
    assert!(!context.sampled);
}

#[test]
fn bad_traceparents_start_a_new_trace() {
    for bad in [
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", // version ff
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", // upper case
        "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01", // upper case
        "0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", // upper-case version
        "00-00000000000000000000000000000000-b7ad6b7169203331-01", // zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", // zero span id
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-", // 00 has four fields exactly
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",  // short span id
        "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",  // short trace id
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x", // flags not hex
        "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01", // separators
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x", // later version, no dash after
        "",
    ] {
        let mut map = HeaderMap::new();
        map.insert("traceparent", HeaderValue::from_str(bad).expect("ASCII"));
        assert_eq!(extract(&map), None, "{bad:?}");
    }
}

#[test]
fn later_traceparent_versions_may_add_fields() {
    let context = extract(&headers(&[(
        "traceparent",
        "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-holds",
    )]))
    .expect("a later version is read as far as 00 goes");
    assert_eq!(context.trace_id, trace_id());
}

#[test]
fn two_traceparents_are_ambiguous() {
    let map = headers(&[
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("traceparent", "00-11111111111111111111111111111111-2222222222222222-01"),
    ]);
    assert_eq!(extract(&map), None);
}

#[test]
fn tracestate_is_kept_in_order_across_headers() {
    let map = headers(&[
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("tracestate", "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"),
        ("tracestate", ",tenant@vendor=x "),
    ]);
    let context = extract(&map).expect("valid");
    assert_eq!(
        context.tracestate.entries(),
        [
            ("rojo".into(), "00f067aa0ba902b7".into()),
            ("congo".into(), "t61rcWkgMzE".into()),
            ("tenant@vendor".into(), "x".into())
        ]
    );
}

#[test]
fn bad_tracestate_is_dropped_but_traceparent_kept() {
    for bad in
        ["Rojo=1", "rojo", "rojo=a,rojo=b", "rojo=a=b", "rojo=", "@vendor=1", "tenant@=1", "tenant@Vendor=1"]
    {
        let mut map = headers(&[("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]);
        map.insert("tracestate", HeaderValue::from_str(bad).expect("ASCII"));
        let context = extract(&map).expect("the traceparent stands");
        assert_eq!(context.trace_id, trace_id());
        assert!(context.tracestate.is_empty(), "{bad:?}");
    }
    let too_many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    let mut map = headers(&[("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]);
    map.insert("tracestate", HeaderValue::from_str(&too_many.join(",")).expect("ASCII"));
    assert!(extract(&map).expect("valid").tracestate.is_empty(), "33 members");
}

#[test]
fn b3_multi_is_read_when_there_is_no_traceparent() {
    let context = extract(&headers(&[
        ("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c"),
        ("x-b3-spanid", "b7ad6b7169203331"),
        ("x-b3-parentspanid", "0020000000000001"),
        ("x-b3-sampled", "1"),
    ]))
    .expect("valid B3");
    assert_eq!((context.trace_id, context.span_id, context.sampled), (trace_id(), span_id(), true));

    let short =
        extract(&headers(&[("x-b3-traceid", "8448eb211c80319c"), ("x-b3-spanid", "b7ad6b7169203331")]))
            .expect("64-bit trace id");
    assert_eq!(short.trace_id.to_string(), "00000000000000008448eb211c80319c", "right-aligned");
    assert!(!short.sampled, "no X-B3-Sampled: not sampled here, the sampler decides");
}

#[test]
fn b3_sampled_is_true_only_for_1_true_or_debug() {
    for (value, expected) in
        [("1", true), ("true", true), ("0", false), ("false", false), ("yes", false), ("TRUE", false)]
    {
        let mut map = headers(&[
            ("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c"),
            ("x-b3-spanid", "b7ad6b7169203331"),
        ]);
        map.insert("x-b3-sampled", HeaderValue::from_static(value));
        assert_eq!(extract(&map).map(|c| c.sampled), Some(expected), "{value}");
    }
    let debug = headers(&[
        ("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c"),
        ("x-b3-spanid", "b7ad6b7169203331"),
        ("x-b3-flags", "1"),
    ]);
    assert_eq!(extract(&debug).map(|c| c.sampled), Some(true));
}

#[test]
fn bad_b3_multi_starts_a_new_trace() {
    let cases: [&[(&'static str, &'static str)]; 6] = [
        &[("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c")],
        &[("x-b3-spanid", "b7ad6b7169203331")],
        &[("x-b3-traceid", "0AF7651916CD43DD8448EB211C80319C"), ("x-b3-spanid", "b7ad6b7169203331")],
        &[("x-b3-traceid", "0af7651916cd43dd8448eb211c80319"), ("x-b3-spanid", "b7ad6b7169203331")],
        &[("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c"), ("x-b3-spanid", "0000000000000000")],
        &[
            ("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c"),
            ("x-b3-spanid", "b7ad6b7169203331"),
            ("x-b3-parentspanid", "zz"),
        ],
    ];
    for case in cases {
        assert_eq!(extract(&headers(case)), None, "{case:?}");
    }
}

#[test]
fn b3_single_is_read_last() {
    let context =
        extract(&headers(&[("b3", "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-d-0020000000000001")]))
            .expect("valid b3");
    assert_eq!((context.trace_id, context.span_id, context.sampled), (trace_id(), span_id(), true));
    let context = extract(&headers(&[("b3", "8448eb211c80319c-b7ad6b7169203331")])).expect("valid b3");
    assert!(!context.sampled);
    for bad in [
        "0",
        "1",
        "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-x",
        "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1-zz",
        "a-b-c-d-e",
    ] {
        let mut map = HeaderMap::new();
        map.insert("b3", HeaderValue::from_static(bad));
        assert_eq!(extract(&map), None, "{bad:?}");
    }
}

#[test]
fn traceparent_wins_over_b3() {
    let map = headers(&[
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"),
        ("x-b3-traceid", "11111111111111111111111111111111"),
        ("x-b3-spanid", "2222222222222222"),
        ("x-b3-sampled", "1"),
    ]);
    let context = extract(&map).expect("valid");
    assert_eq!((context.trace_id, context.sampled), (trace_id(), false));
    // A broken traceparent does not hide a good B3.
    let mut map = map;
    map.insert("traceparent", HeaderValue::from_static("garbage"));
    assert_eq!(extract(&map).map(|c| c.span_id.to_string()), Some("2222222222222222".into()));
}

#[test]
fn inject_writes_w3c_and_b3_multi_by_default() {
    let context = SpanContext {
        trace_id: trace_id(),
        span_id: span_id(),
        sampled: true,
        tracestate: TraceState::from_entries(vec![("rojo".into(), "1".into()), ("congo".into(), "2".into())]),
    };
    let mut map = headers(&[("x-b3-parentspanid", "0020000000000001"), ("x-b3-flags", "1")]);
    Propagation::DEFAULT.inject(&context, &mut map);
    assert_eq!(map["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert_eq!(map["tracestate"], "rojo=1,congo=2");
    assert_eq!(map["x-b3-traceid"], TRACE);
    assert_eq!(map["x-b3-spanid"], SPAN);
    assert_eq!(map["x-b3-sampled"], "1");
    assert!(!map.contains_key("x-b3-parentspanid") && !map.contains_key("x-b3-flags"), "stale B3 removed");
    assert!(!map.contains_key("b3"));

    let unsampled = SpanContext { sampled: false, tracestate: TraceState::EMPTY, ..context };
    let mut map = headers(&[("tracestate", "stale=1")]);
    (Propagation::B3_SINGLE | Propagation::W3C).inject(&unsampled, &mut map);
    assert_eq!(map["b3"], "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0");
    assert_eq!(map["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
    assert!(!map.contains_key("tracestate"), "a stale tracestate is removed");
    assert!(!map.contains_key("x-b3-traceid"));

    let mut map = HeaderMap::new();
    Propagation::DEFAULT.inject(&SpanContext::INVALID, &mut map);
    assert!(map.is_empty(), "no span, no headers");
}

#[test]
fn propagation_set_debug_and_contains() {
    let set = Propagation::W3C | Propagation::B3_SINGLE;
    assert!(set.contains(Propagation::W3C) && !set.contains(Propagation::B3_MULTI));
    assert_eq!(format!("{set:?}"), "{W3C, B3_SINGLE}");
    assert!(Propagation::NONE.contains(Propagation::NONE));
}

fn arb_context() -> impl Strategy<Value = SpanContext> {
    let key = "[a-z][a-z0-9_*/-]{0,20}(@[a-z][a-z0-9_*/-]{0,10})?";
    let value = "[\\x20-\\x2b\\x2d-\\x3c\\x3e-\\x7e]{0,30}[\\x21-\\x2b\\x2d-\\x3c\\x3e-\\x7e]";
    (
        any::<[u8; 16]>().prop_filter("valid", |b| b.iter().any(|&x| x != 0)),
        any::<[u8; 8]>().prop_filter("valid", |b| b.iter().any(|&x| x != 0)),
        any::<bool>(),
        proptest::collection::btree_map(key, value, 0..5),
    )
        .prop_map(|(trace, span, sampled, entries)| SpanContext {
            trace_id: TraceId(trace),
            span_id: SpanId(span),
            sampled,
            tracestate: TraceState::from_entries(entries.into_iter().collect()),
        })
}

proptest! {
    #[test]
    fn every_format_round_trips(context in arb_context()) {
        let mut map = HeaderMap::new();
        Propagation::W3C.inject(&context, &mut map);
        prop_assert_eq!(extract(&map), Some(context.clone()));

        let without_state = SpanContext { tracestate: TraceState::EMPTY, ..context };
        for format in [Propagation::B3_MULTI, Propagation::B3_SINGLE] {
            let mut map = HeaderMap::new();
            format.inject(&without_state, &mut map);
            prop_assert_eq!(extract(&map), Some(without_state.clone()));
        }
    }

    #[test]
    fn arbitrary_header_bytes_never_panic(
        name in prop::sample::select(vec!["traceparent", "tracestate", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3"]),
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        base in prop::sample::select(vec![
            vec![],
            vec![("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
            vec![("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c"), ("x-b3-spanid", "b7ad6b7169203331")],
        ]),
    ) {
        let mut map = headers(&base);
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            map.append(HeaderName::from_static(name), value);
        }
        if let Some(context) = extract(&map) {
            prop_assert!(context.is_valid(), "only valid contexts are returned");
        }
    }

    #[test]
    fn near_miss_traceparents_never_panic(text in "[0-9a-fA-F-]{50,60}") {
        let mut map = HeaderMap::new();
        map.insert("traceparent", HeaderValue::from_str(&text).expect("ASCII"));
        if let Some(context) = extract(&map) {
            prop_assert!(context.is_valid());
            prop_assert!(!text.chars().any(|c| c.is_ascii_uppercase()), "upper case is refused");
        }
    }
}

#[test]
fn formats_are_found_among_few_or_many_headers() {
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let b3 = "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1";
    // Below and above the count where the names stop being compared one by one.
    for others in [0, 3, Present::MAX_SCANNED, Present::MAX_SCANNED + 10] {
        let mut map = HeaderMap::new();
        for i in 0..others {
            let name = HeaderName::from_bytes(format!("x-other-{i}").as_bytes()).expect("a valid name");
            map.insert(name, HeaderValue::from_static("v"));
        }
        map.insert(http::header::HOST, HeaderValue::from_static("gateway.local"));
        assert_eq!(extract(&map), None, "{others} other headers, no context");

        let mut with_b3 = map.clone();
        with_b3.insert("b3", HeaderValue::from_static(b3));
        assert_eq!(extract(&with_b3).map(|c| c.span_id), Some(span_id()), "b3 among {others}");

        let mut with_multi = map.clone();
        with_multi.insert("x-b3-traceid", HeaderValue::from_static(TRACE));
        with_multi.insert("x-b3-spanid", HeaderValue::from_static(SPAN));
        assert_eq!(extract(&with_multi).map(|c| c.trace_id), Some(trace_id()), "B3 among {others}");

        map.insert("traceparent", HeaderValue::from_static(traceparent));
        let context = extract(&map).expect("traceparent among other headers");
        assert_eq!((context.trace_id, context.sampled), (trace_id(), true), "{others} other headers");
    }
}

#[test]
fn stale_context_headers_are_removed_among_few_or_many_headers() {
    let context = SpanContext {
        trace_id: trace_id(),
        span_id: span_id(),
        sampled: true,
        tracestate: TraceState::EMPTY,
    };
    // Below and above the count where the names stop being compared one by one.
    for others in [0, 3, Present::MAX_SCANNED, Present::MAX_SCANNED + 10] {
        let mut map = HeaderMap::new();
        for i in 0..others {
            let name = HeaderName::from_bytes(format!("x-other-{i}").as_bytes()).expect("a valid name");
            map.insert(name, HeaderValue::from_static("v"));
        }
        let mut clean = map.clone();
        Propagation::DEFAULT.inject(&context, &mut clean);
        assert_eq!(clean.keys_len(), others + 4, "traceparent and three B3 headers among {others}");

        for stale in ["x-b3-parentspanid", "x-b3-flags", "tracestate"] {
            let mut map = map.clone();
            map.append(stale, HeaderValue::from_static("1"));
            map.append(stale, HeaderValue::from_static("2"));
            Propagation::DEFAULT.inject(&context, &mut map);
            assert!(!map.contains_key(stale), "{stale} among {others} other headers");
            assert_eq!(map, clean, "{stale} among {others}: nothing else changed");
        }
    }
}
