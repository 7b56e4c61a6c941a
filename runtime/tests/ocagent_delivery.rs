//! The ocagent exporter's delivery promise against a real agent receiver: nothing is lost while the agent
//! is late, killed, restarted or breaking streams, within the queue bound; beyond it, exactly the excess is
//! dropped and counted; flush and shutdown report what they could not deliver.

mod ocagent_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ocagent_support::*;
use oclayer_agent::{StreamKind, StreamState};
use oclayer_runtime::Error;
use oclayer_runtime::export::{Exporter, SpanBatch};
use oclayer_runtime::trace::SpanData;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_starts_3s_after_the_app_gets_everything() {
    // Take a port, then stop serving on it: the exporter starts against an agent that is not there.
    let agent = agent().await;
    agent.kill().await;
    let exporter = exporter(&config_for(&agent, "late-agent"));

    let mut sent: Vec<SpanData> = Vec::new();
    for round in 0..10 {
        let spans = batch(&format!("early{round}"), 30);
        sent.extend(spans.iter().cloned());
        exporter.export_spans(&spans);
    }
    exporter.export_stats(&Arc::from(Vec::new()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(exporter.queued_spans(), 300, "everything waits for the agent");
    assert!(exporter.last_error().is_some_and(|e| e.contains("Unavailable")), "{:?}", exporter.last_error());

    agent.restart().await.expect("agent starts");
    let received = wait_for_ids(&agent, &ids_of(&sent)).await;
    assert_eq!(received_ids(&received), ids_of(&sent));
    exporter.flush(deadline()).await.expect("flush once the agent is up");
    assert_eq!(exporter.dropped_spans(), 0);
    assert_eq!(exporter.dropped_reports(), 0);
    assert_eq!(used_streams(&agent, StreamKind::MetricsExport).iter().map(|s| s.messages).sum::<u64>(), 1);
    assert_eq!(exporter.last_error(), None, "cleared once streams deliver again");
    exporter.shutdown(deadline()).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_stream_and_restarted_loses_nothing() {
    let agent = agent().await;
    let exporter = exporter(&config_for(&agent, "restarts"));

    // A producer that keeps exporting while the agent dies and comes back.
    let producer = {
        let exporter = Arc::clone(&exporter);
        tokio::spawn(async move {
            let mut sent: Vec<SpanData> = Vec::new();
            for round in 0..60 {
                let spans = batch(&format!("r{round}"), 20);
                sent.extend(spans.iter().cloned());
                exporter.export_spans(&spans);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        })
    };
    agent.wait_for_spans(100, WAIT).await.expect("spans before the kill");
    agent.kill().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    agent.restart().await.expect("restart");
    let sent = producer.await.expect("producer");

    let received = wait_for_ids(&agent, &ids_of(&sent)).await;
    assert_eq!(received_ids(&received), ids_of(&sent), "every span, and nothing else");
    assert_eq!(exporter.dropped_spans(), 0);
    exporter.flush(deadline()).await.expect("flush");

    // The kill broke at least one stream, and every stream after it opened with the Node again.
    let streams = agent.streams();
    assert!(streams.iter().any(|s| s.generation == 1 && s.kind == StreamKind::TraceExport));
    for stream in used_streams(&agent, StreamKind::TraceExport) {
        assert_eq!(first_service(&stream).as_deref(), Some("restarts"), "{stream:?}");
    }
    exporter.shutdown(deadline()).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_bound_exactly_the_oldest_excess_is_dropped() {
    let agent = agent().await;
    let config = config_for(&agent, "bounded").with_max_queued_spans(1000).with_max_queued_reports(4);
    let exporter = exporter(&config);

    let before = batch("before", 10);
    exporter.export_spans(&before);
    exporter.flush(deadline()).await.expect("delivered before the kill");
    agent.kill().await;

    // 1500 spans and 10 reports while the agent is down: 500 spans and 6 reports over the bounds.
    let mut during: Vec<SpanData> = Vec::new();
    for round in 0..15 {
        let spans = batch(&format!("down{round}"), 100);
        during.extend(spans.iter().cloned());
        exporter.export_spans(&spans);
        tokio::task::yield_now().await;
    }
    for _ in 0..10 {
        exporter.export_stats(&Arc::from(Vec::new()));
    }
    assert_eq!(exporter.dropped_spans(), 500);
    assert_eq!(exporter.queued_spans(), 1000);
    assert_eq!(exporter.dropped_reports(), 6);
    assert_eq!(exporter.queued_reports(), 4);

    agent.restart().await.expect("restart");
    exporter.flush(deadline()).await.expect("the bound's worth is delivered");
    let received = received_ids(&agent.spans());
    let during_ids = ids_of(&during);
    let delivered_during = during_ids.iter().filter(|id| received.contains(*id)).count();
    assert_eq!(delivered_during, 1000, "exactly the bound's worth of what was sent during the outage");
    assert!(ids_of(&before).iter().all(|id| received.contains(id)));
    assert_eq!(received.len(), 1010, "nothing but what was sent");
    // Drops take the oldest not yet written: the newest half of the bound always survives.
    let newest = ids_of(&during[during.len() - 500..]);
    assert!(newest.iter().all(|id| received.contains(id)), "the newest spans are kept");
    let reports = agent
        .streams()
        .iter()
        .filter(|s| s.kind == StreamKind::MetricsExport && s.generation == 1)
        .map(|s| s.messages)
        .sum::<u64>();
    assert_eq!(reports, 4, "the reports within the bound, once each");
    assert_eq!(exporter.dropped_spans(), 500, "no further loss");
    exporter.shutdown(deadline()).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_fail_after_a_few_messages_are_reopened_until_all_is_delivered() {
    let agent = agent().await;
    agent.fail_after(StreamKind::TraceExport, 3);
    let exporter = exporter(&config_for(&agent, "failing"));

    // One message at a time: each round waits until the agent has it, so the first stream carries three
    // messages and is broken by the agent.
    let mut sent: Vec<SpanData> = Vec::new();
    for round in 0..6 {
        let spans = batch(&format!("step{round}"), 10);
        sent.extend(spans.iter().cloned());
        exporter.export_spans(&spans);
        wait_for_ids(&agent, &ids_of(&spans)).await;
    }
    // Then a burst, while streams keep failing after three messages.
    for round in 0..50 {
        let spans = batch(&format!("burst{round}"), 10);
        sent.extend(spans.iter().cloned());
        exporter.export_spans(&spans);
    }
    let received = wait_for_ids(&agent, &ids_of(&sent)).await;
    assert_eq!(received_ids(&received), ids_of(&sent));
    exporter.flush(deadline()).await.expect("flush while streams still fail after 3 messages");

    let streams = used_streams(&agent, StreamKind::TraceExport);
    assert!(
        streams.iter().any(|s| s.state == StreamState::Failed),
        "the agent did break streams: {streams:?}"
    );
    assert!(streams.iter().any(|s| s.state == StreamState::Closed), "and the exporter confirmed others");
    assert!(streams.iter().all(|s| first_service(s).as_deref() == Some("failing")), "Node on every stream");
    assert_eq!(exporter.dropped_spans(), 0);
    agent.stop_failing(StreamKind::TraceExport);
    exporter.shutdown(deadline()).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_agent_holds_items_in_the_queue_not_in_handlers() {
    let agent = agent().await;
    agent.slow_down(Duration::from_millis(50));
    let exporter = exporter(&config_for(&agent, "slow"));
    let mut sent: Vec<SpanData> = Vec::new();
    for round in 0..20 {
        let spans = batch(&format!("s{round}"), 50);
        sent.extend(spans.iter().cloned());
        // Returns at once whatever the agent does: the span pipeline's batcher never waits here.
        exporter.export_spans(&spans);
    }
    assert!(exporter.queued_spans() > 0);
    exporter.flush(deadline()).await.expect("flush");
    assert_eq!(received_ids(&agent.spans()), ids_of(&sent));
    exporter.shutdown(deadline()).await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_and_shutdown_report_what_they_could_not_deliver() {
    let agent = agent().await;
    agent.kill().await;
    let exporter = exporter(&config_for(&agent, "unreachable"));
    exporter.export_spans(&batch("lost", 7));
    exporter.export_stats(&Arc::from(Vec::new()));

    wait_until("the exporter tried and failed", || exporter.last_error().is_some()).await;
    let error = exporter.flush(Instant::now() + Duration::from_millis(200)).await.expect_err("agent is down");
    let Error::Undelivered { exporter: name, spans, reports, last_error, .. } = &error else {
        panic!("expected Undelivered, got {error:?}");
    };
    assert_eq!((*name, *spans, *reports), ("ocagent", 7, 1));
    assert!(last_error.as_ref().is_some_and(|e| e.contains("Unavailable")), "{error}");
    let message = error.to_string();
    assert!(message.contains("7 spans and 1 stats reports not delivered"), "{message}");

    let error = exporter.shutdown(Instant::now() + Duration::from_millis(200)).await.expect_err("still down");
    assert!(matches!(error, Error::Undelivered { spans: 7, reports: 1, .. }), "{error:?}");
    // After shutdown nothing is queued any more; late exports are counted as dropped.
    exporter.export_spans(&batch("late", 2));
    assert_eq!(exporter.dropped_spans(), 2);
}

#[test]
fn shutdown_on_a_current_thread_runtime_delivers_everything() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let agent = agent().await;
        let exporter = exporter(&config_for(&agent, "current-thread"));
        let mut sent: Vec<SpanData> = Vec::new();
        for round in 0..20 {
            let spans: SpanBatch = batch(&format!("c{round}"), 250);
            sent.extend(spans.iter().cloned());
            exporter.export_spans(&spans);
        }
        exporter.export_stats(&Arc::from(Vec::new()));
        // Straight to shutdown: nothing has been sent yet on this single thread.
        exporter.shutdown(deadline()).await.expect("shutdown delivers");
        assert_eq!(received_ids(&agent.spans()), ids_of(&sent));
        assert_eq!(exporter.queued_spans(), 0);
        assert_eq!(exporter.queued_reports(), 0);
        assert!(
            agent.streams().iter().all(|s| s.state == StreamState::Closed),
            "streams are closed cleanly: {:?}",
            agent.streams()
        );
        assert!(
            agent
                .streams()
                .iter()
                .any(|s| s.kind == StreamKind::TraceExport && s.state == StreamState::Closed),
            "{:?}",
            agent.streams()
        );
    });
}
