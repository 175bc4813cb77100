//! Event streams over a real Unix socket: resuming after a relay restart
//! loses nothing, pruned events arrive as a gap, filters, and a subscriber
//! that falls behind or stops reading is cut off without ever slowing the
//! relay that publishes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::future::timeout;
use bsv_p2p_proto::jsonrpc::code;
use bsv_p2p_proto::testing::*;
use bsv_p2p_proto::*;
use futures::StreamExt;
use serde_json::json;

/// The next event, skipping reports of outages; fails after 10 s.
async fn next_event(events: &mut Subscription) -> Event {
    loop {
        match timeout(Duration::from_secs(10), events.next()).await {
            Ok(Some(Ok(event))) => return event,
            Ok(Some(Err(e))) => assert!(!e.is_fatal(), "{e}"),
            Ok(None) => panic!("the stream ended"),
            Err(_) => panic!("no event within 10 s"),
        }
    }
}

#[async_std::test]
async fn events_stream_as_notifications_after_the_subscribe_result() {
    let dir = TempDir::new("stream");
    let relay = Relay::start(config(&dir.join("relay.sock")), feed(100)).await;
    relay.feed.publish(numbered(1)).unwrap();
    let (mut raw, _) = Raw::connect(&relay.path).await;
    let reply = raw
        .call(r#"{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"fromSeq":1}}"#)
        .await;
    assert_eq!(
        reply,
        json!({"jsonrpc": "2.0", "id": 1, "result": {"nextSeq": 1}})
    );
    let event = raw.recv().await.unwrap();
    assert_eq!(event["method"], "event");
    assert_eq!(event["params"]["seq"], 1);
    assert_eq!(event["params"]["kind"], "error");
    relay.feed.publish(numbered(2)).unwrap();
    assert_eq!(raw.recv().await.unwrap()["params"]["seq"], 2);
    let again = raw
        .call(r#"{"jsonrpc":"2.0","id":2,"method":"subscribe"}"#)
        .await;
    assert_eq!(again["error"]["code"], code::ALREADY_SUBSCRIBED);
    relay.stop().await;
}

#[async_std::test]
async fn subscribe_resumes_after_a_relay_restart_and_loses_nothing() {
    let dir = TempDir::new("resume");
    let path = dir.join("relay.sock");
    let journal = Arc::new(MemoryJournal::new(1000));
    let feed = Feed::new(journal.clone());
    for n in 1..=20 {
        feed.publish(numbered(n)).unwrap();
    }
    let relay = Relay::start(config(&path), feed.clone()).await;
    let client = Client::connect(&path).await.unwrap();
    let mut events = client.subscribe(Some(1), None).await.unwrap();
    let mut seen = Vec::new();
    for n in 21..=40 {
        relay.feed.publish(numbered(n)).unwrap();
    }
    while seen.len() < 30 {
        seen.push(next_event(&mut events).await.seq);
    }
    relay.stop().await;
    // The relay keeps journaling while its control socket is down.
    for n in 41..=60 {
        feed.publish(numbered(n)).unwrap();
    }
    let relay = Relay::start(config(&path), feed.clone()).await;
    for n in 61..=80 {
        relay.feed.publish(numbered(n)).unwrap();
    }
    while seen.len() < 80 {
        seen.push(next_event(&mut events).await.seq);
    }
    assert_eq!(seen, (1..=80).collect::<Vec<_>>());
    relay.feed.publish(numbered(81)).unwrap();
    assert_eq!(next_event(&mut events).await.seq, 81);
    relay.stop().await;
}

#[async_std::test]
async fn a_subscriber_without_from_seq_resumes_from_where_it_joined() {
    let dir = TempDir::new("fromnow");
    let path = dir.join("relay.sock");
    let feed = feed(1000);
    feed.publish(numbered(1)).unwrap();
    let relay = Relay::start(config(&path), feed.clone()).await;
    let client = Client::connect(&path).await.unwrap();
    let mut events = client.subscribe(None, None).await.unwrap();
    relay.stop().await;
    feed.publish(numbered(2)).unwrap();
    let relay = Relay::start(config(&path), feed.clone()).await;
    assert_eq!(
        next_event(&mut events).await.seq,
        2,
        "published while the socket was down"
    );
    relay.stop().await;
}

#[async_std::test]
async fn pruned_events_arrive_as_one_gap_with_the_count_lost() {
    let dir = TempDir::new("gap");
    let relay = Relay::start(config(&dir.join("relay.sock")), feed(10)).await;
    for n in 1..=30 {
        relay.feed.publish(numbered(n)).unwrap();
    }
    let client = Client::connect(&relay.path).await.unwrap();
    let mut events = client.subscribe(Some(5), None).await.unwrap();
    let gap = next_event(&mut events).await;
    assert_eq!(gap.seq, 20);
    assert_eq!(
        gap.kind,
        EventKind::Gap {
            from: 5,
            to: 20,
            lost: 16
        }
    );
    for seq in 21..=30 {
        assert_eq!(next_event(&mut events).await.seq, seq);
    }
    relay.stop().await;
}

#[async_std::test]
async fn kinds_select_what_is_sent() {
    let dir = TempDir::new("kinds");
    let relay = Relay::start(config(&dir.join("relay.sock")), feed(100)).await;
    let client = Client::connect(&relay.path).await.unwrap();
    let mut events = client
        .subscribe(None, Some(vec!["peer_banned".into()]))
        .await
        .unwrap();
    relay.feed.publish(numbered(1)).unwrap();
    relay
        .feed
        .publish(EventKind::PeerBanned {
            peer_id: "12D3KooWBad".into(),
            reason: "acl".into(),
            until: None,
        })
        .unwrap();
    let event = next_event(&mut events).await;
    assert_eq!((event.seq, event.kind.name()), (2, "peer_banned"));
    let err = client
        .subscribe(None, Some(vec!["peer_baned".into()]))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Some(code::INVALID_PARAMS));
    assert!(
        err.to_string().contains("kinds[0]: unknown event kind"),
        "{err}"
    );
    relay.stop().await;
}

#[async_std::test]
async fn a_subscriber_that_falls_behind_is_told_where_to_resume() {
    let dir = TempDir::new("behind");
    let mut config = config(&dir.join("relay.sock"));
    config.queue_len = 1;
    config.write_timeout = Duration::from_secs(10);
    let journal = Arc::new(MemoryJournal::new(100_000));
    let relay = Relay::start(config, Feed::with_buffer(journal, 4)).await;
    let (mut raw, _) = Raw::connect(&relay.path).await;
    raw.call(r#"{"jsonrpc":"2.0","id":1,"method":"subscribe"}"#)
        .await;
    // Not reading: the socket, the queue and the buffer fill, then the
    // buffer overflows and the subscriber is cut off.
    for n in 1..=20_000 {
        relay.feed.publish(numbered(n)).unwrap();
    }
    assert_eq!(relay.feed.subscribers(), 0, "cut off");
    let mut last = 0;
    let cut_off = loop {
        let line = raw.recv().await.expect("the reason before the close");
        match line["params"]["seq"].as_u64() {
            Some(seq) => {
                assert_eq!(seq, last + 1);
                last = seq;
            }
            None => break line,
        }
    };
    assert_eq!(cut_off["id"], json!(null));
    assert_eq!(cut_off["error"]["code"], code::SUBSCRIBER_TOO_SLOW);
    assert_eq!(cut_off["error"]["data"]["resumeFrom"], last + 1);
    assert_eq!(raw.recv().await, None, "closed");
    relay.stop().await;
}

#[async_std::test]
async fn a_cut_off_subscription_reconnects_and_misses_nothing() {
    let dir = TempDir::new("slowclient");
    let journal = Arc::new(MemoryJournal::new(100_000));
    let mut config = config(&dir.join("relay.sock"));
    config.queue_len = 4;
    let relay = Relay::start(config, Feed::with_buffer(journal, 8)).await;
    let client = Client::connect(&relay.path).await.unwrap();
    let mut events = client.subscribe(None, None).await.unwrap();
    relay.feed.publish(numbered(1)).unwrap();
    let mut seen = vec![next_event(&mut events).await.seq];
    // Not reading while 5000 events are published: far more than the
    // buffer, the queue and the socket hold.
    for n in 2..=5_000 {
        relay.feed.publish(numbered(n)).unwrap();
    }
    let mut cut_off = false;
    while seen.len() < 5_000 {
        match timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
        {
            Some(Ok(event)) => seen.push(event.seq),
            Some(Err(e)) => {
                assert!(!e.is_fatal(), "{e}");
                cut_off |= e.code() == Some(code::SUBSCRIBER_TOO_SLOW);
            }
            None => panic!("ended"),
        }
    }
    assert!(cut_off, "it was cut off for being slow");
    assert_eq!(seen, (1..=5_000).collect::<Vec<_>>());
    relay.stop().await;
}

#[async_std::test]
async fn a_subscriber_that_never_reads_stalls_neither_the_relay_nor_other_clients() {
    let dir = TempDir::new("stuck-sub");
    let mut config = config(&dir.join("relay.sock"));
    config.write_timeout = Duration::from_millis(500);
    let relay = Relay::start(config, feed(100_000)).await;
    let (mut stuck, _) = Raw::connect(&relay.path).await;
    stuck
        .call(r#"{"jsonrpc":"2.0","id":1,"method":"subscribe"}"#)
        .await;
    let client = Client::connect(&relay.path).await.unwrap();
    let mut reader = client.subscribe(None, None).await.unwrap();

    let padding = "x".repeat(200);
    let started = Instant::now();
    for n in 0..20_000u64 {
        relay
            .feed
            .publish(EventKind::Error {
                error_kind: "test".into(),
                message: format!("{n} {padding}"),
            })
            .unwrap();
    }
    let publishing = started.elapsed();
    assert!(
        publishing < Duration::from_secs(3),
        "publishing took {publishing:?}"
    );
    assert_eq!(client.status().await.unwrap(), samples::status());

    let mut last = 0;
    while last < 20_000 {
        let event = next_event(&mut reader).await;
        assert_eq!(event.seq, last + 1);
        last = event.seq;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.feed.subscribers() > 1 {
        assert!(
            Instant::now() < deadline,
            "the stuck subscriber was never dropped"
        );
        async_std::task::sleep(Duration::from_millis(50)).await;
    }
    relay.stop().await;
}
