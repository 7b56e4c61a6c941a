//! Pins the wire format against bytes derived by hand from the published field numbers.
//!
//! Every expected byte string below is written out from the protobuf encoding rules, not produced
//! by prost:
//! - a tag is the varint `(field_number << 3) | wire_type`; wire types: 0 = varint, 1 = 8-byte
//!   little-endian (double), 2 = length-delimited (strings, bytes, messages, packed repeated);
//! - a length-delimited field is `tag, varint length, payload`;
//! - proto3 leaves out scalars equal to their default (0, "", false), but always writes a present
//!   sub-message, even an empty one (`tag 00`);
//! - a map is a repeated entry message with the key as field 1 and the value as field 2 (our maps
//!   are BTreeMaps, so entries come in key order);
//! - fields are written in field-number order.
//!
//! Recurring values:
//! - `1700000000` s as a varint: 1700000000 = 13281250 * 128 + 0, 13281250 = 103759 * 128 + 98,
//!   103759 = 810 * 128 + 79, 810 = 6 * 128 + 42, so the 7-bit groups low to high are 0, 98, 79, 42, 6
//!   -> `80 e2 cf aa 06` (continuation bit on all but the last). 1700000000 + n for n < 128 only
//!   changes the first byte to `80 + n`.
//! - doubles (IEEE 754, little-endian): 1.0 = 0x3ff0000000000000, 1.5 = 0x3ff8..., 2.0 =
//!   0x4000..., 4.0 = 0x4010..., 10.0 = 0x4024..., 12.0 = 0x4028....

use oclayer_proto::agent::common::v1::{LibraryInfo, Node, ProcessIdentifier, ServiceInfo, library_info};
use oclayer_proto::agent::trace::v1::ExportTraceServiceRequest;
use oclayer_proto::metrics::v1::{
    DistributionValue, LabelKey, LabelValue, Metric, MetricDescriptor, Point, TimeSeries,
    distribution_value::{Bucket, BucketOptions, Exemplar, bucket_options},
    metric_descriptor, point,
};
use oclayer_proto::prost::Message;
use oclayer_proto::prost_types::Timestamp;
use oclayer_proto::resource::v1::Resource;
use oclayer_proto::trace::v1::span::{
    self, Attributes, Link, Links, SpanKind, TimeEvent, TimeEvents, Tracestate, time_event,
};
use oclayer_proto::trace::v1::{
    AttributeValue, Module, Span, StackTrace, Status, TruncatableString, attribute_value, stack_trace,
};

/// Joins hand-written byte groups (hex with optional spaces) into one lower-case hex string.
fn hand(groups: &[&str]) -> String {
    groups.concat().chars().filter(|c| !c.is_whitespace()).collect()
}

/// Parses a hand-written hex string into bytes, for the decode tests.
fn bytes_of(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd number of hex digits in a hand-written test vector");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hand-written hex is valid"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ts(seconds: i64, nanos: i32) -> Timestamp {
    Timestamp { seconds, nanos }
}

fn text(value: &str) -> TruncatableString {
    TruncatableString { value: value.to_owned(), truncated_byte_count: 0 }
}

fn node() -> Node {
    Node {
        identifier: Some(ProcessIdentifier {
            host_name: "gw-1".into(),
            pid: 4242,
            start_timestamp: Some(ts(1_700_000_000, 5)),
        }),
        library_info: Some(LibraryInfo {
            // A non-default language so that the field reaches the wire; oclayer itself sends
            // LANGUAGE_UNSPECIFIED (0), which proto3 leaves out.
            language: library_info::Language::WebJs as i32,
            exporter_version: "0.1.0".into(),
            core_library_version: "0.1.0".into(),
        }),
        service_info: Some(ServiceInfo { name: "gateway".into() }),
        attributes: [("lang".to_owned(), "rust".to_owned()), ("env".to_owned(), "test".to_owned())]
            .into_iter()
            .collect(),
    }
}

#[test]
fn node_matches_hand_encoding() {
    let expected = hand(&[
        "0a 13",                  // 1 identifier: LEN, 19 bytes
        "  0a 04 67772d31",       //   1 host_name "gw-1"
        "  10 9221",              //   2 pid 4242 = 33 * 128 + 18 -> 0x80|18, 33
        "  1a 08",                //   3 start_timestamp: LEN 8
        "    08 80e2cfaa06",      //     1 seconds 1700000000
        "    10 05",              //     2 nanos 5
        "12 10",                  // 2 library_info: LEN 16
        "  08 0a",                //   1 language WEB_JS = 10
        "  12 05 302e312e30",     //   2 exporter_version "0.1.0"
        "  1a 05 302e312e30",     //   3 core_library_version "0.1.0"
        "1a 09",                  // 3 service_info: LEN 9
        "  0a 07 67617465776179", //   1 name "gateway"
        "22 0b",                  // 4 attributes entry: LEN 11 ("env" sorts before "lang")
        "  0a 03 656e76",         //   1 key "env"
        "  12 04 74657374",       //   2 value "test"
        "22 0c",                  // 4 attributes entry: LEN 12
        "  0a 04 6c616e67",       //   1 key "lang"
        "  12 04 72757374",       //   2 value "rust"
    ]);
    assert_eq!(hex(&node().encode_to_vec()), expected);
}

fn attribute(value: attribute_value::Value) -> AttributeValue {
    AttributeValue { value: Some(value) }
}

/// A span with every field of the published `Span` set, and every variant of the oneofs
/// (the four attribute value kinds, annotation and message event) used somewhere.
fn full_span() -> Span {
    Span {
        trace_id: (0x01..=0x10).collect(),
        span_id: (0x11..=0x18).collect(),
        tracestate: Some(Tracestate {
            entries: vec![span::tracestate::Entry { key: "a".into(), value: "b".into() }],
        }),
        parent_span_id: (0x21..=0x28).collect(),
        name: Some(TruncatableString { value: "/users".into(), truncated_byte_count: 2 }),
        kind: SpanKind::Server as i32,
        start_time: Some(ts(1_700_000_000, 5)),
        end_time: Some(ts(1_700_000_001, 0)),
        attributes: Some(Attributes {
            attribute_map: [
                ("b".to_owned(), attribute(attribute_value::Value::BoolValue(true))),
                ("d".to_owned(), attribute(attribute_value::Value::DoubleValue(1.5))),
                ("i".to_owned(), attribute(attribute_value::Value::IntValue(200))),
                ("s".to_owned(), attribute(attribute_value::Value::StringValue(text("x")))),
            ]
            .into_iter()
            .collect(),
            dropped_attributes_count: 1,
        }),
        stack_trace: Some(StackTrace {
            stack_frames: Some(stack_trace::StackFrames {
                frame: vec![stack_trace::StackFrame {
                    function_name: Some(text("f")),
                    original_function_name: Some(text("g")),
                    file_name: Some(text("m.rs")),
                    line_number: 42,
                    column_number: 7,
                    load_module: Some(Module { module: Some(text("bin")), build_id: Some(text("ab")) }),
                    source_version: Some(text("v1")),
                }],
                dropped_frames_count: 3,
            }),
            stack_trace_hash_id: 9,
        }),
        time_events: Some(TimeEvents {
            time_event: vec![
                TimeEvent {
                    time: Some(ts(1_700_000_000, 100)),
                    value: Some(time_event::Value::Annotation(time_event::Annotation {
                        description: Some(text("hi")),
                        attributes: Some(Attributes {
                            attribute_map: [("k".to_owned(), attribute(attribute_value::Value::IntValue(1)))]
                                .into_iter()
                                .collect(),
                            dropped_attributes_count: 0,
                        }),
                    })),
                },
                TimeEvent {
                    time: Some(ts(1_700_000_000, 200)),
                    value: Some(time_event::Value::MessageEvent(time_event::MessageEvent {
                        r#type: time_event::message_event::Type::Sent as i32,
                        id: 1,
                        uncompressed_size: 300,
                        compressed_size: 100,
                    })),
                },
            ],
            dropped_annotations_count: 4,
            dropped_message_events_count: 5,
        }),
        links: Some(Links {
            link: vec![Link {
                trace_id: (0x31..=0x40).collect(),
                span_id: (0x41..=0x48).collect(),
                r#type: span::link::Type::ParentLinkedSpan as i32,
                attributes: Some(Attributes {
                    attribute_map: [("l".to_owned(), attribute(attribute_value::Value::BoolValue(true)))]
                        .into_iter()
                        .collect(),
                    dropped_attributes_count: 0,
                }),
                tracestate: Some(Tracestate {
                    entries: vec![span::tracestate::Entry { key: "v".into(), value: "1".into() }],
                }),
            }],
            dropped_links_count: 6,
        }),
        status: Some(Status { code: 5, message: "NOT_FOUND".into() }),
        resource: Some(Resource {
            r#type: "host".into(),
            labels: [("h".to_owned(), "x".to_owned())].into_iter().collect(),
        }),
        same_process_as_parent_span: Some(true),
        child_span_count: Some(2),
    }
}

#[test]
fn span_with_every_field_matches_hand_encoding() {
    let expected = hand(&[
        "0a 10 0102030405060708090a0b0c0d0e0f10",     // 1 trace_id: 16 bytes
        "12 08 1112131415161718",                     // 2 span_id: 8 bytes
        "1a 08 2122232425262728",                     // 3 parent_span_id: 8 bytes
        "22 0a",                                      // 4 name: LEN 10
        "  0a 06 2f7573657273",                       //   1 value "/users"
        "  10 02",                                    //   2 truncated_byte_count 2
        "2a 08",                                      // 5 start_time: LEN 8
        "  08 80e2cfaa06",                            //   1 seconds 1700000000
        "  10 05",                                    //   2 nanos 5
        "32 06",                                      // 6 end_time: LEN 6 (nanos 0 left out)
        "  08 81e2cfaa06",                            //   1 seconds 1700000001
        "3a 31",                                      // 7 attributes: LEN 49
        "  0a 07",                                    //   1 attribute_map entry: LEN 7
        "    0a 01 62",                               //     1 key "b"
        "    12 02 18 01",                            //     2 value: 3 bool_value true
        "  0a 0e",                                    //   1 attribute_map entry: LEN 14
        "    0a 01 64",                               //     1 key "d"
        "    12 09 21 000000000000f83f",              //     2 value: 4 double_value 1.5 (tag 4<<3|1)
        "  0a 08",                                    //   1 attribute_map entry: LEN 8
        "    0a 01 69",                               //     1 key "i"
        "    12 03 10 c801",                          //     2 value: 2 int_value 200 = 1*128 + 72
        "  0a 0a",                                    //   1 attribute_map entry: LEN 10
        "    0a 01 73",                               //     1 key "s"
        "    12 05 0a 03 0a 01 78",                   //     2 value: 1 string_value { 1 value "x" }
        "  10 01",                                    //   2 dropped_attributes_count 1
        "42 33",                                      // 8 stack_trace: LEN 51
        "  0a 2f",                                    //   1 stack_frames: LEN 47
        "    0a 2b",                                  //     1 frame: LEN 43
        "      0a 03 0a 01 66",                       //       1 function_name "f"
        "      12 03 0a 01 67",                       //       2 original_function_name "g"
        "      1a 06 0a 04 6d2e7273",                 //       3 file_name "m.rs"
        "      20 2a",                                //       4 line_number 42
        "      28 07",                                //       5 column_number 7
        "      32 0d",                                //       6 load_module: LEN 13
        "        0a 05 0a 03 62696e",                 //         1 module "bin"
        "        12 04 0a 02 6162",                   //         2 build_id "ab"
        "      3a 04 0a 02 7631",                     //       7 source_version "v1"
        "    10 03",                                  //     2 dropped_frames_count 3
        "  10 09",                                    //   2 stack_trace_hash_id 9
        "4a 3b",                                      // 9 time_events: LEN 59
        "  0a 1d",                                    //   1 time_event: LEN 29
        "    0a 08 08 80e2cfaa06 10 64",              //     1 time { seconds 1700000000, nanos 100 }
        "    12 11",                                  //     2 annotation: LEN 17
        "      0a 04 0a 02 6869",                     //       1 description "hi"
        "      12 09",                                //       2 attributes: LEN 9
        "        0a 07 0a 01 6b 12 02 10 01",         //         1 entry { "k": int_value 1 }
        "  0a 16",                                    //   1 time_event: LEN 22
        "    0a 09 08 80e2cfaa06 10 c801",            //     1 time { seconds 1700000000, nanos 200 }
        "    1a 09",                                  //     3 message_event: LEN 9
        "      08 01",                                //       1 type SENT
        "      10 01",                                //       2 id 1
        "      18 ac02",                              //       3 uncompressed_size 300 = 2*128 + 44
        "      20 64",                                //       4 compressed_size 100
        "  10 04",                                    //   2 dropped_annotations_count 4
        "  18 05",                                    //   3 dropped_message_events_count 5
        "52 37",                                      // 10 links: LEN 55
        "  0a 33",                                    //   1 link: LEN 51
        "    0a 10 3132333435363738393a3b3c3d3e3f40", //   1 trace_id
        "    12 08 4142434445464748",                 //     2 span_id
        "    18 02",                                  //     3 type PARENT_LINKED_SPAN
        "    22 09 0a 07 0a 01 6c 12 02 18 01",       //     4 attributes { "l": bool_value true }
        "    2a 08 0a 06 0a 01 76 12 01 31",          //     5 tracestate { entries { "v" = "1" } }
        "  10 06",                                    //   2 dropped_links_count 6
        "5a 0d",                                      // 11 status: LEN 13
        "  08 05",                                    //   1 code 5
        "  12 09 4e4f545f464f554e44",                 //   2 message "NOT_FOUND"
        "62 02 08 01",                                // 12 same_process_as_parent_span: BoolValue { 1 true }
        "6a 02 08 02",                                // 13 child_span_count: UInt32Value { 1 value 2 }
        "70 01",                                      // 14 kind SERVER (tag 14<<3|0 = 0x70)
        "7a 08",                                      // 15 tracestate: LEN 8 (tag 15<<3|2 = 0x7a)
        "  0a 06 0a 01 61 12 01 62",                  //   1 entries { 1 key "a", 2 value "b" }
        "8201 0e",                   // 16 resource: tag 16<<3|2 = 130 -> 2-byte varint; LEN 14
        "  0a 04 686f7374",          //   1 type "host"
        "  12 06 0a 01 68 12 01 78", //   2 labels entry { "h": "x" }
    ]);
    assert_eq!(hex(&full_span().encode_to_vec()), expected);
}

fn distribution_metric() -> Metric {
    Metric {
        metric_descriptor: Some(MetricDescriptor {
            name: "lat".into(),
            description: "d".into(),
            unit: "ms".into(),
            r#type: metric_descriptor::Type::CumulativeDistribution as i32,
            label_keys: vec![
                LabelKey { key: "m".into(), description: "k".into() },
                LabelKey { key: "s".into(), description: String::new() },
            ],
        }),
        timeseries: vec![TimeSeries {
            start_timestamp: Some(ts(1_700_000_000, 0)),
            label_values: vec![
                LabelValue { value: "GET".into(), has_value: true },
                // A tag that was not set on the measurement: one value per key, marked absent.
                LabelValue { value: String::new(), has_value: false },
            ],
            points: vec![Point {
                timestamp: Some(ts(1_700_000_010, 0)),
                value: Some(point::Value::DistributionValue(DistributionValue {
                    count: 3,
                    sum: 12.0,
                    sum_of_squared_deviation: 2.0,
                    bucket_options: Some(BucketOptions {
                        r#type: Some(bucket_options::Type::Explicit(bucket_options::Explicit {
                            bounds: vec![1.0, 10.0],
                        })),
                    }),
                    buckets: vec![
                        Bucket { count: 1, exemplar: None },
                        Bucket {
                            count: 1,
                            exemplar: Some(Exemplar {
                                value: 4.0,
                                timestamp: Some(ts(1_700_000_005, 0)),
                                attachments: [("s".to_owned(), "t".to_owned())].into_iter().collect(),
                            }),
                        },
                        Bucket { count: 1, exemplar: None },
                    ],
                })),
            }],
        }],
        resource: Some(Resource { r#type: "r".into(), labels: Default::default() }),
    }
}

#[test]
fn distribution_metric_matches_hand_encoding() {
    let expected = hand(&[
        "0a 1b",                             // 1 metric_descriptor: LEN 27
        "  0a 03 6c6174",                    //   1 name "lat"
        "  12 01 64",                        //   2 description "d"
        "  1a 02 6d73",                      //   3 unit "ms"
        "  20 06",                           //   4 type CUMULATIVE_DISTRIBUTION = 6
        "  2a 06 0a 01 6d 12 01 6b",         //   5 label_keys { key "m", description "k" }
        "  2a 03 0a 01 73",                  //   5 label_keys { key "s" }
        "12 70",                             // 2 timeseries: LEN 112
        "  0a 06 08 80e2cfaa06",             //   1 start_timestamp { seconds 1700000000 }
        "  12 07 0a 03 474554 10 01",        //   2 label_values { value "GET", has_value true }
        "  12 00",                           //   2 label_values {} (absent: both fields default)
        "  1a 5b",                           //   3 points: LEN 91
        "    0a 06 08 8ae2cfaa06",           //     1 timestamp { seconds 1700000010 }
        "    22 51",                         //     4 distribution_value: LEN 81
        "      08 03",                       //       1 count 3
        "      11 0000000000002840",         //       2 sum 12.0 (tag 2<<3|1)
        "      19 0000000000000040",         //       3 sum_of_squared_deviation 2.0 (tag 3<<3|1)
        "      22 14",                       //       4 bucket_options: LEN 20
        "        0a 12",                     //         1 explicit: LEN 18
        "          0a 10",                   //           1 bounds, packed: LEN 16
        "            000000000000f03f",      //             1.0
        "            0000000000002440",      //             10.0
        "      2a 02 08 01",                 //       5 buckets { count 1 }
        "      2a 1d",                       //       5 buckets: LEN 29
        "        08 01",                     //         1 count 1
        "        12 19",                     //         2 exemplar: LEN 25
        "          09 0000000000001040",     //           1 value 4.0 (tag 1<<3|1)
        "          12 06 08 85e2cfaa06",     //           2 timestamp { seconds 1700000005 }
        "          1a 06 0a 01 73 12 01 74", //        3 attachments { "s": "t" }
        "      2a 02 08 01",                 //       5 buckets { count 1 }
        "1a 03 0a 01 72",                    // 3 resource { type "r" }
    ]);
    assert_eq!(hex(&distribution_metric().encode_to_vec()), expected);
}

#[test]
fn enum_names_and_numbers_match_the_published_ones() {
    use oclayer_proto::trace::v1::constant_sampler::ConstantDecision;
    use oclayer_proto::trace::v1::span::link;
    use oclayer_proto::trace::v1::span::time_event::message_event;

    // The proto names matter for JSON and text formats; the numbers for the binary wire.
    let names_and_numbers = [
        (library_info::Language::Unspecified.as_str_name(), library_info::Language::Unspecified as i32),
        (library_info::Language::GoLang.as_str_name(), library_info::Language::GoLang as i32),
        (library_info::Language::WebJs.as_str_name(), library_info::Language::WebJs as i32),
        (SpanKind::Unspecified.as_str_name(), SpanKind::Unspecified as i32),
        (SpanKind::Server.as_str_name(), SpanKind::Server as i32),
        (SpanKind::Client.as_str_name(), SpanKind::Client as i32),
        (message_event::Type::Received.as_str_name(), message_event::Type::Received as i32),
        (link::Type::ChildLinkedSpan.as_str_name(), link::Type::ChildLinkedSpan as i32),
        (ConstantDecision::AlwaysOff.as_str_name(), ConstantDecision::AlwaysOff as i32),
        (ConstantDecision::AlwaysOn.as_str_name(), ConstantDecision::AlwaysOn as i32),
        (ConstantDecision::AlwaysParent.as_str_name(), ConstantDecision::AlwaysParent as i32),
        (metric_descriptor::Type::Unspecified.as_str_name(), metric_descriptor::Type::Unspecified as i32),
        (metric_descriptor::Type::GaugeInt64.as_str_name(), metric_descriptor::Type::GaugeInt64 as i32),
        (metric_descriptor::Type::GaugeDouble.as_str_name(), metric_descriptor::Type::GaugeDouble as i32),
        (
            metric_descriptor::Type::GaugeDistribution.as_str_name(),
            metric_descriptor::Type::GaugeDistribution as i32,
        ),
        (
            metric_descriptor::Type::CumulativeInt64.as_str_name(),
            metric_descriptor::Type::CumulativeInt64 as i32,
        ),
        (
            metric_descriptor::Type::CumulativeDouble.as_str_name(),
            metric_descriptor::Type::CumulativeDouble as i32,
        ),
        (
            metric_descriptor::Type::CumulativeDistribution.as_str_name(),
            metric_descriptor::Type::CumulativeDistribution as i32,
        ),
        (metric_descriptor::Type::Summary.as_str_name(), metric_descriptor::Type::Summary as i32),
    ];
    assert_eq!(
        names_and_numbers,
        [
            ("LANGUAGE_UNSPECIFIED", 0),
            ("GO_LANG", 4),
            ("WEB_JS", 10),
            ("SPAN_KIND_UNSPECIFIED", 0),
            ("SERVER", 1),
            ("CLIENT", 2),
            ("RECEIVED", 2),
            ("CHILD_LINKED_SPAN", 1),
            ("ALWAYS_OFF", 0),
            ("ALWAYS_ON", 1),
            ("ALWAYS_PARENT", 2),
            ("UNSPECIFIED", 0),
            ("GAUGE_INT64", 1),
            ("GAUGE_DOUBLE", 2),
            ("GAUGE_DISTRIBUTION", 3),
            ("CUMULATIVE_INT64", 4),
            ("CUMULATIVE_DOUBLE", 5),
            ("CUMULATIVE_DISTRIBUTION", 6),
            ("SUMMARY", 7),
        ]
    );
}

#[test]
fn trace_config_samplers_match_hand_encoding() {
    use oclayer_proto::trace::v1::{
        ConstantSampler, ProbabilitySampler, RateLimitingSampler, TraceConfig, constant_sampler, trace_config,
    };

    let probability = TraceConfig {
        sampler: Some(trace_config::Sampler::ProbabilitySampler(ProbabilitySampler {
            sampling_probability: 0.5,
        })),
        max_number_of_attributes: 32,
        max_number_of_annotations: 33,
        max_number_of_message_events: 34,
        max_number_of_links: 35,
    };
    let expected = hand(&[
        "0a 09 09 000000000000e03f", // 1 probability_sampler { 1 samplingProbability 0.5 }
        "20 20",                     // 4 max_number_of_attributes 32
        "28 21",                     // 5 max_number_of_annotations 33
        "30 22",                     // 6 max_number_of_message_events 34
        "38 23",                     // 7 max_number_of_links 35
    ]);
    assert_eq!(hex(&probability.encode_to_vec()), expected);

    let always_parent = TraceConfig {
        sampler: Some(trace_config::Sampler::ConstantSampler(ConstantSampler {
            decision: constant_sampler::ConstantDecision::AlwaysParent as i32,
        })),
        ..Default::default()
    };
    // 2 constant_sampler: LEN 2 { 1 decision ALWAYS_PARENT = 2 }
    assert_eq!(hex(&always_parent.encode_to_vec()), hand(&["12 02 08 02"]));

    // ALWAYS_OFF is the enum's zero: the sampler message is present but empty, which is how a
    // receiver tells "always off" from "no sampler".
    let always_off = TraceConfig {
        sampler: Some(trace_config::Sampler::ConstantSampler(ConstantSampler {
            decision: constant_sampler::ConstantDecision::AlwaysOff as i32,
        })),
        ..Default::default()
    };
    assert_eq!(hex(&always_off.encode_to_vec()), hand(&["12 00"]));

    let rate_limited = TraceConfig {
        sampler: Some(trace_config::Sampler::RateLimitingSampler(RateLimitingSampler { qps: 150 })),
        ..Default::default()
    };
    // 3 rate_limiting_sampler: LEN 3 { 1 qps 150 = 1*128 + 22 -> 96 01 }
    assert_eq!(hex(&rate_limited.encode_to_vec()), hand(&["1a 03 08 9601"]));
}

/// Bytes as an upstream client may send them: fields out of number order, an unknown field (a
/// newer sender), and no optional parts. A receiver must accept all of it.
#[test]
fn decodes_hand_written_export_request() {
    let bytes = bytes_of(&hand(&[
        "0a 07",                                    // 1 node: LEN 7
        "  1a 05 0a 03 737663",                     //   3 service_info { name "svc" }
        "12 26",                                    // 2 spans: LEN 38
        "  70 02",                                  //   14 kind CLIENT, before the ids
        "  0a 10 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", //  1 trace_id
        "  12 08 bbbbbbbbbbbbbbbb",                 //   2 span_id
        "  22 03 0a 01 71",                         //   4 name "q"
        "  9806 01",                                //   99 (unknown), varint 1: tag 99<<3 = 792 = 6*128 + 24
        "1a 08",                                    // 3 resource: LEN 8
        "  12 06 0a 01 6b 12 01 76",                //   2 labels { "k": "v" }
    ]));
    let request = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("valid bytes decode");

    let node = request.node.expect("node present");
    assert_eq!(node.service_info.map(|s| s.name).as_deref(), Some("svc"));
    assert_eq!(node.identifier, None);

    assert_eq!(request.spans.len(), 1);
    let span = &request.spans[0];
    assert_eq!(span.trace_id, vec![0xaa; 16]);
    assert_eq!(span.span_id, vec![0xbb; 8]);
    assert!(span.parent_span_id.is_empty(), "a root span has no parent id");
    assert_eq!(span.kind(), SpanKind::Client);
    assert_eq!(span.name.as_ref().map(|n| n.value.as_str()), Some("q"));
    assert_eq!(span.same_process_as_parent_span, None);
    assert_eq!(span.child_span_count, None);

    let resource = request.resource.expect("resource present");
    assert_eq!(resource.labels.get("k").map(String::as_str), Some("v"));
}

/// Protobuf decoders must accept a repeated scalar both packed and one element per tag; some
/// encoders write bounds unpacked.
#[test]
fn decodes_unpacked_bucket_bounds() {
    let bytes = bytes_of(&hand(&[
        "09 000000000000f03f", // 1 bounds 1.0, wire type 1 (one double per tag)
        "09 0000000000002440", // 1 bounds 10.0
    ]));
    let explicit = bucket_options::Explicit::decode(bytes.as_slice()).expect("valid bytes decode");
    assert_eq!(explicit.bounds, vec![1.0, 10.0]);
}

#[test]
fn decodes_what_it_encodes() {
    // The hand-pinned tests prove the bytes; this shows nothing is lost on the way back.
    let span = full_span();
    assert_eq!(Span::decode(span.encode_to_vec().as_slice()).expect("decodes"), span);
    let metric = distribution_metric();
    assert_eq!(Metric::decode(metric.encode_to_vec().as_slice()).expect("decodes"), metric);
    let node = node();
    assert_eq!(Node::decode(node.encode_to_vec().as_slice()).expect("decodes"), node);
}
