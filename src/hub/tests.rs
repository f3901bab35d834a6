use bytes::Bytes;
use tokio::sync::broadcast::error::TryRecvError;

use super::*;

const KEYFRAME: &[u8] = &[0x17, 1, 0, 0, 0, 0xAA];
const INTER: &[u8] = &[0x27, 1, 0, 0, 0, 0xBB];
const AVC_SEQ: &[u8] = &[0x17, 0, 0, 0, 0, 1, 0x64];
const AAC_SEQ: &[u8] = &[0xAF, 0, 0x12, 0x10];
const AAC: &[u8] = &[0xAF, 1, 0x21];

fn hub() -> Hub {
    Hub::new(HubConfig {
        queue_messages: 16,
        ..HubConfig::default()
    })
}

fn frame_of(event: Event) -> Arc<crate::media::Frame> {
    match event {
        Event::Frame(f) => f,
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[test]
fn second_publisher_is_refused_and_first_keeps_the_stream() {
    let hub = hub();
    let first = hub.publish("live/a", 1).expect("first publish");
    assert_eq!(
        hub.publish("live/a", 2).err(),
        Some(PublishError::AlreadyPublishing("live/a".into()))
    );
    assert_eq!(hub.streams()[0].publisher_conn, Some(1));
    drop(first);
    assert_eq!(hub.stream_count(), 0);
    assert!(hub.publish("live/a", 3).is_ok());
}

#[test]
fn late_player_snapshot_starts_with_headers_then_keyframe() {
    let hub = hub();
    let p = hub.publish("live/a", 1).expect("publish");
    p.set_metadata(0, Bytes::from_static(b"\x02\x00\x0aonMetaData\x05"));
    p.send(FrameKind::Video, 0, Bytes::from_static(AVC_SEQ));
    p.send(FrameKind::Audio, 0, Bytes::from_static(AAC_SEQ));
    p.send(FrameKind::Video, 0, Bytes::from_static(KEYFRAME));
    p.send(FrameKind::Video, 40, Bytes::from_static(INTER));
    p.send(FrameKind::Video, 80, Bytes::from_static(KEYFRAME));
    p.send(FrameKind::Audio, 90, Bytes::from_static(AAC));
    p.send(FrameKind::Video, 120, Bytes::from_static(INTER));

    let (mut player, snap) = hub.play("live/a").expect("play");
    assert!(snap.publishing);
    let kinds: Vec<_> = snap
        .frames
        .iter()
        .map(|f| (f.kind, f.timestamp, f.keyframe, f.sequence_header))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (FrameKind::Data, 0, false, false),
            (FrameKind::Video, 0, false, true),
            (FrameKind::Audio, 0, false, true),
            (FrameKind::Video, 80, true, false),
            (FrameKind::Audio, 90, false, false),
            (FrameKind::Video, 120, false, false),
        ]
    );
    // Nothing is repeated between the snapshot and the receiver.
    assert!(matches!(player.rx.try_recv(), Err(TryRecvError::Empty)));
    p.send(FrameKind::Video, 160, Bytes::from_static(INTER));
    assert_eq!(frame_of(player.rx.try_recv().expect("live")).timestamp, 160);
}

#[test]
fn player_waits_before_publisher_and_survives_republish() {
    let hub = hub();
    let (mut player, snap) = hub.play("live/b").expect("play");
    assert!(!snap.publishing && snap.frames.is_empty());

    let p = hub.publish("live/b", 1).expect("publish");
    assert!(matches!(player.rx.try_recv(), Ok(Event::Published)));
    p.send(FrameKind::Video, 1000, Bytes::from_static(KEYFRAME));
    assert_eq!(
        frame_of(player.rx.try_recv().expect("frame")).timestamp,
        1000
    );
    drop(p);
    assert!(matches!(player.rx.try_recv(), Ok(Event::Unpublished)));
    assert_eq!(
        hub.stream_count(),
        1,
        "the stream stays while a player waits"
    );

    // OBS reconnects and starts its timestamps at 0 again: players see no jump back.
    let p = hub.publish("live/b", 2).expect("republish");
    assert!(matches!(player.rx.try_recv(), Ok(Event::Published)));
    p.send(FrameKind::Video, 0, Bytes::from_static(KEYFRAME));
    p.send(FrameKind::Video, 40, Bytes::from_static(INTER));
    assert_eq!(
        frame_of(player.rx.try_recv().expect("frame")).timestamp,
        1001
    );
    assert_eq!(
        frame_of(player.rx.try_recv().expect("frame")).timestamp,
        1041
    );
    drop(p);
    drop(player);
    assert_eq!(hub.stream_count(), 0);
}

#[test]
fn a_relay_s_new_source_continues_the_timeline_from_its_first_media_frame() {
    let hub = hub();
    let (mut player, _) = hub.play("live/moved").expect("play");
    let relay = hub.publish_relay("live/moved", 7).expect("relay");
    relay.send(FrameKind::Video, 30_000, Bytes::from_static(KEYFRAME));
    relay.send(FrameKind::Video, 30_040, Bytes::from_static(INTER));
    // The new origin's fast start: metadata and headers stamped at its publish start (0),
    // then its GOP, on the stream's own clock (8 s on).
    relay.discontinuity();
    relay.set_metadata(0, Bytes::from_static(b"\x02\x00\x0aonMetaData\x05"));
    relay.send(FrameKind::Video, 0, Bytes::from_static(AVC_SEQ));
    relay.send(FrameKind::Audio, 0, Bytes::from_static(AAC_SEQ));
    relay.send(FrameKind::Video, 38_000, Bytes::from_static(KEYFRAME));
    relay.send(FrameKind::Video, 38_040, Bytes::from_static(INTER));
    let mut stamps = Vec::new();
    while let Ok(ev) = player.rx.try_recv() {
        if let Event::Frame(f) = ev {
            stamps.push(f.timestamp);
        }
    }
    // Headers at the timeline's end; the keyframe right after; no jump by the stream's age.
    assert_eq!(
        stamps,
        vec![30_000, 30_040, 30_040, 30_040, 30_040, 30_041, 30_081]
    );
}

#[test]
fn slow_player_lags_without_holding_the_publisher() {
    let hub = hub();
    let p = hub.publish("live/c", 1).expect("publish");
    let (mut slow, _) = hub.play("live/c").expect("play");
    for i in 0..100u32 {
        p.send(FrameKind::Video, i * 40, Bytes::from_static(INTER));
    }
    assert!(matches!(
        slow.rx.try_recv(),
        Err(TryRecvError::Lagged(n)) if n > 0
    ));
    slow.skip_to_live();
    assert!(matches!(slow.rx.try_recv(), Err(TryRecvError::Empty)));
    p.send(FrameKind::Video, 4000, Bytes::from_static(KEYFRAME));
    assert!(frame_of(slow.rx.try_recv().expect("keyframe")).keyframe);
}

#[test]
fn oversized_gop_is_not_cached() {
    let hub = Hub::new(HubConfig {
        gop_cache_max_bytes: 20,
        ..HubConfig::default()
    });
    let p = hub.publish("live/d", 1).expect("publish");
    p.send(FrameKind::Video, 0, Bytes::from_static(KEYFRAME));
    for i in 1..10 {
        p.send(FrameKind::Video, i * 40, Bytes::from_static(INTER));
    }
    let (_player, snap) = hub.play("live/d").expect("play");
    assert!(snap.frames.is_empty());
    assert_eq!(hub.streams()[0].gop_cache_bytes, 0);
}

#[test]
fn a_real_publisher_takes_over_a_relay_which_then_goes_quiet() {
    let hub = hub();
    let (mut player, _) = hub.play("live/r").expect("play");
    let relay = hub.publish_relay("live/r", 100).expect("relay");
    assert!(matches!(player.rx.try_recv(), Ok(Event::Published)));
    relay.send(FrameKind::Video, 0, Bytes::from_static(KEYFRAME));
    assert!(frame_of(player.rx.try_recv().expect("relayed")).keyframe);
    assert!(
        hub.publish_relay("live/r", 101).is_err(),
        "one relay at a time"
    );

    let real = hub
        .publish("live/r", 1)
        .expect("a publisher takes over a relay");
    assert!(!relay.is_current() && real.is_current());
    assert!(matches!(player.rx.try_recv(), Ok(Event::Published)));
    relay.send(FrameKind::Video, 40, Bytes::from_static(INTER));
    assert!(matches!(player.rx.try_recv(), Err(TryRecvError::Empty)));
    drop(relay);
    assert!(
        hub.is_publishing("live/r"),
        "the old relay's drop must not unpublish"
    );
    real.send(FrameKind::Video, 0, Bytes::from_static(KEYFRAME));
    assert!(frame_of(player.rx.try_recv().expect("real")).keyframe);
    // A relay cannot take a real publisher's slot.
    assert!(hub.publish_relay("live/r", 102).is_err());
}

#[test]
fn relay_discontinuity_keeps_players_and_the_timeline() {
    let hub = hub();
    let (mut player, _) = hub.play("live/d").expect("play");
    let relay = hub.publish_relay("live/d", 100).expect("relay");
    let _ = player.rx.try_recv();
    relay.send(FrameKind::Video, 5000, Bytes::from_static(KEYFRAME));
    assert_eq!(
        frame_of(player.rx.try_recv().expect("frame")).timestamp,
        5000
    );
    // The origin died; the relay pulls from another one whose timestamps start at 0.
    relay.discontinuity();
    relay.send(FrameKind::Video, 0, Bytes::from_static(KEYFRAME));
    assert_eq!(
        frame_of(player.rx.try_recv().expect("frame")).timestamp,
        5001
    );
    assert_eq!(hub.players_of("live/d"), 1);
}

#[test]
fn a_forwarder_gets_the_frames_but_is_not_a_player() {
    let hub = hub();
    let publisher = hub.publish("live/f", 1).expect("publish");
    let (mut forwarder, _) = hub.play_forwarder("live/f");
    assert_eq!(hub.players_of("live/f"), 0);
    assert_eq!(hub.streams()[0].players, 0);
    let (player, _) = hub.play("live/f").expect("play");
    assert_eq!(hub.players_of("live/f"), 1);
    publisher.send(FrameKind::Video, 0, Bytes::from_static(KEYFRAME));
    assert!(frame_of(forwarder.rx.try_recv().expect("a frame")).keyframe);
    drop(player);
    drop(publisher);
    // The forwarder alone keeps the stream in the registry; dropping it releases it.
    assert_eq!(hub.stream_count(), 1);
    drop(forwarder);
    assert_eq!(hub.stream_count(), 0);
}

#[test]
fn streams_waiting_for_a_publisher_are_counted_and_capped() {
    let hub = Hub::new(HubConfig {
        max_waiting_streams: 2,
        ..HubConfig::default()
    });
    let (a, _) = hub.play("live/a").expect("first waiting stream");
    let (a2, _) = hub
        .play("live/a")
        .expect("joining a waiting stream adds none");
    let (b, _) = hub.play("live/b").expect("second waiting stream");
    assert_eq!(hub.waiting_streams(), 2);
    assert_eq!(
        hub.play("live/c").err(),
        Some(super::PlayError::TooManyWaiting(2))
    );
    // A published stream never waits: its players are always admitted.
    let publisher = hub.publish("live/a", 1).expect("publish");
    assert_eq!(hub.waiting_streams(), 1);
    let (c, _) = hub.play("live/c").expect("a slot freed");
    let (_d, _) = hub.play("live/a").expect("published");
    // A forwarder does not make a stream wait, and is not refused.
    let (_f, _) = hub.play_forwarder("live/e");
    assert_eq!(hub.waiting_streams(), 2);
    drop(publisher);
    assert_eq!(hub.waiting_streams(), 3, "live/a's players wait again");
    drop((a, a2, b, c, _d));
    assert_eq!(hub.waiting_streams(), 0);
}

#[test]
fn a_new_publisher_takes_over_from_a_silent_one_but_not_from_a_live_one() {
    let hub = Hub::new(HubConfig {
        stale_publisher: std::time::Duration::from_millis(100),
        ..HubConfig::default()
    });
    let first = hub.publish("live/obs", 1).expect("first publish");
    first.send(
        FrameKind::Video,
        0,
        Bytes::from_static(&[0x17, 1, 0, 0, 0, 9]),
    );
    assert!(
        hub.publish("live/obs", 2).is_err(),
        "a live publisher keeps it"
    );
    std::thread::sleep(std::time::Duration::from_millis(150));
    let second = hub
        .publish("live/obs", 2)
        .expect("the silent one is taken over");
    assert!(!first.is_current() && second.is_current());
    // The first's late frames and its departure do not touch the new publisher's stream.
    first.send(
        FrameKind::Video,
        40,
        Bytes::from_static(&[0x27, 1, 0, 0, 0, 9]),
    );
    drop(first);
    assert_eq!(hub.streams()[0].publisher_conn, Some(2));
    assert_eq!(hub.streams()[0].frames_in, 1);
}

#[test]
fn a_takeover_replaces_a_live_publisher_and_names_it() {
    let hub = hub();
    let first = hub.publish("live/t", 1).expect("first");
    first.send(
        FrameKind::Video,
        0,
        Bytes::from_static(&[0x17, 1, 0, 0, 0, 9]),
    );
    let (second, replaced) = hub.publish_takeover("live/t", 2).expect("takeover");
    assert_eq!(replaced, Some(1));
    assert!(!first.is_current() && second.is_current());
    drop(first);
    assert_eq!(hub.streams()[0].publisher_conn, Some(2));
    let (_, replaced) = hub.publish_takeover("live/u", 3).expect("new stream");
    assert_eq!(replaced, None);
}

#[test]
fn frames_carry_when_their_bytes_may_first_have_waited() {
    let hub = hub();
    let mut p = hub.publish("live/a", 1).expect("publish");
    let (mut player, _) = hub.play("live/a").expect("play");
    assert_eq!(p.player_count(), 1);
    // Unknown until the session says (a relay never does).
    p.send(FrameKind::Video, 0, Bytes::from_static(AVC_SEQ));
    let since = std::time::Instant::now();
    p.set_held_since(Some(since));
    p.set_metadata(0, Bytes::from_static(b"\x02\x00\x0aonMetaData\x05"));
    p.send(FrameKind::Video, 0, Bytes::from_static(KEYFRAME));
    let mut held = Vec::new();
    while let Ok(ev) = player.rx.try_recv() {
        if let Event::Frame(f) = ev {
            held.push(f.held_since);
        }
    }
    assert_eq!(held, vec![None, Some(since), Some(since)]);
}

#[test]
fn players_learn_the_earliest_stamp_still_to_come_from_the_slot_holder_only() {
    let hub = hub();
    let (player, _) = hub.play("live/floor").expect("play");
    assert_eq!(player.next_held_since(), None);
    let p = hub.publish("live/floor", 1).expect("publish");
    assert_eq!(
        player.next_held_since(),
        None,
        "unknown until the session says"
    );
    let since = std::time::Instant::now();
    p.set_next_held_since(Some(since));
    assert_eq!(player.next_held_since(), Some(since));
    // A relay that lost the slot to a real publisher says nothing any more.
    drop(p);
    assert_eq!(
        player.next_held_since(),
        None,
        "cleared when the publisher leaves"
    );
    let relay = hub.publish_relay("live/floor", 2).expect("relay");
    let real = hub.publish("live/floor", 3).expect("takes over the relay");
    relay.set_next_held_since(Some(since));
    assert_eq!(player.next_held_since(), None);
    real.set_next_held_since(Some(since));
    assert_eq!(player.next_held_since(), Some(since));
    // A new publisher starts unknown again.
    drop(real);
    let next = hub.publish("live/floor", 4).expect("publish again");
    assert_eq!(player.next_held_since(), None);
    drop(next);
}
