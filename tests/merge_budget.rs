//! End-to-end: `rtmp.merge_write_ms` is a latency budget at every audience size. Even a single
//! player of a 30 fps stream gets its frames in batches that share a write; with a budget of 0
//! every frame is written as it comes. Counts of batches only (a loaded machine makes batches
//! larger, never smaller); delay figures live in benches/compare.sh.

mod common;

use std::time::Duration;

use common::*;
use ringcast::client::Incoming;

const SEC: Duration = Duration::from_secs(1);

/// Arrival gaps longer than this start a new batch: frames of one write arrive together.
const SAME_BATCH: Duration = Duration::from_millis(12);

/// One player of a 30 fps stream on a node with `budget` ms: (video frames, batches) seen in
/// four seconds after the first frame.
async fn batches(budget: &str) -> (usize, usize) {
    let node = Node::start(&[("RINGCAST_RTMP__MERGE_WRITE_MS", budget)]).await;
    let url = node.url("live/budget");
    let publisher = synthetic_publisher(&url, 30, 1500, 30, 30 * 20);
    let mut p = player(&url).await;
    assert_eq!(wait_video(&mut p, 1, 10 * SEC).await, 1, "no first frame");
    let end = tokio::time::Instant::now() + 4 * SEC;
    let (mut frames, mut batches) = (0, 0);
    let mut last: Option<tokio::time::Instant> = None;
    while let Ok(Ok(ev)) = tokio::time::timeout_at(end, p.next()).await {
        if let Incoming::Media(m) = ev {
            if m.type_id != 9 {
                continue;
            }
            let now = tokio::time::Instant::now();
            if last.is_none_or(|t| now - t > SAME_BATCH) {
                batches += 1;
            }
            last = Some(now);
            frames += 1;
        }
    }
    publisher.abort();
    (frames, batches)
}

#[tokio::test]
async fn one_player_gets_its_frames_in_batches_of_the_budget() {
    // 400 ms: publisher reads wait 100 ms, writes 300 ms: about 13 writes in four seconds.
    let (frames, batches) = batches("400").await;
    assert!(frames >= 30, "only {frames} frames in 4 s");
    assert!(
        batches <= 4 * 1000 / 300 + 3,
        "{frames} frames came in {batches} batches: not merged for the budget"
    );
}

#[tokio::test]
async fn a_zero_budget_writes_every_frame_as_it_comes() {
    let (frames, batches) = batches("0").await;
    assert!(frames >= 30, "only {frames} frames in 4 s");
    // Mostly one frame per write; a stall of the machine may join a few.
    assert!(
        batches * 3 >= frames,
        "{frames} frames came in {batches} batches with a zero budget"
    );
}
