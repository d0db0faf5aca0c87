//! vendor/glommio is glommio 0.9.0 as crates.io publishes it plus vendor/glommio.patch, and
//! nothing else (`vendor/glommio.sh --check`: the published crate's SHA-256, then a diff of the
//! whole tree). Where the crate cannot be had (no cargo cache and no registry) it says so and
//! passes, except in CI (`CI` set, as `.ci/run` sets it), where the check is required.
//!
//! The other tests check what the patch changes: vectored writes, the sleep handshake between
//! executors (a fence where glommio made a `membarrier` system call) and the preemption timers
//! (kept armed across the executor's loops instead of cancelled and armed on each).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Runs `work` on a thread of its own and fails the test if it takes longer than `limit` (a
/// broken wake-up or preemption would otherwise hang the suite).
fn within(limit: Duration, what: &str, work: fn()) {
    let (done, finished) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        work();
        let _ = done.send(());
    });
    match finished.recv_timeout(limit) {
        Ok(()) => worker.join().expect("the test's thread"),
        // The worker panicked: join gives its panic to this test.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: not done after {limit:?}"),
    }
}

#[test]
fn vendored_glommio_is_the_published_crate_plus_the_patch() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../vendor/glommio.sh");
    let out = Command::new("bash").arg(&script).arg("--check").output().expect("running vendor/glommio.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if out.status.code() == Some(3) && !in_ci {
        eprintln!("vendored_glommio: not checked here: {text}");
        return;
    }
    assert!(out.status.success(), "vendor/glommio.sh --check: {text}");
}

/// The patch's vectored writes: one `write_vectored` on a glommio `TcpStream` takes every slice
/// (glommio 0.9.0 took only the first: rustls then sent one record per system call), and a
/// vectored write larger than the socket's buffers, against a reader that starts late, waits
/// and delivers every byte in order.
#[test]
fn a_vectored_write_takes_every_slice_and_loses_nothing() {
    use futures_util::io::{AsyncReadExt, AsyncWriteExt};
    use std::io::IoSlice;
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(|| async move {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("address");
            let pieces: Vec<Vec<u8>> = (0..40u32).map(|i| (0..(1000 + i * 40_000)).map(|j| (i * 7 + j) as u8).collect()).collect();
            let total: usize = pieces.iter().map(Vec::len).sum();
            let want: Vec<u8> = pieces.concat();
            let reader = glommio::spawn_local(async move {
                let mut s = listener.accept().await.expect("accept");
                // Late: the writer fills the socket's buffers first and must wait.
                glommio::timer::sleep(std::time::Duration::from_millis(200)).await;
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.expect("read");
                got
            });
            let mut w = glommio::net::TcpStream::connect(addr).await.expect("connect");
            let first = w.write_vectored(&[IoSlice::new(b"one "), IoSlice::new(b"two "), IoSlice::new(b"three")]).await.expect("small vectored write");
            assert_eq!(first, 13, "every slice in one call");
            let mut slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
            let mut bufs = &mut slices[..];
            let mut sent = 0;
            while !bufs.is_empty() {
                let n = w.write_vectored(bufs).await.expect("vectored write");
                assert!(n > 0, "no progress");
                sent += n;
                IoSlice::advance_slices(&mut bufs, n);
            }
            assert_eq!(sent, total);
            w.close().await.expect("close");
            let got = reader.await;
            assert_eq!(&got[..13], b"one two three");
            assert!(got[13..] == want[..], "{} bytes read of {}, or out of order", got.len() - 13, total);
        })
        .expect("an executor")
        .join()
        .expect("the test ran");
}

/// The patch's sleep handshake: an executor that parks with nothing to do must be woken by
/// every message another executor sends it. The receiver waits with no timer of its own, so a
/// lost wake-up shows as a receive that takes seconds (its watchdog, a timeout, ends it), not
/// as a hang; the sender alternates bursts with pauses long enough for the receiver to park.
#[test]
fn a_parked_executor_wakes_for_every_message_from_another() {
    within(Duration::from_secs(60), "3,000 messages between two executors", parked_executor_wakes);
}

fn parked_executor_wakes() {
    use glommio::channels::shared_channel;
    use std::time::Instant;
    const MESSAGES: u32 = 3000;
    let (to_receiver, from_sender) = shared_channel::new_bounded::<(u32, Instant)>(64);
    let (to_sender, from_receiver) = shared_channel::new_bounded::<u32>(64);
    let receiver = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            let rx = from_sender.connect().await;
            let ack = to_sender.connect().await;
            let mut slowest = Duration::ZERO;
            for want in 0..MESSAGES {
                let got = glommio::timer::timeout(Duration::from_secs(5), async { Ok(rx.recv().await) }).await;
                let (n, sent) = got.expect("a message within 5 s (a lost wake-up)").expect("the sender stays");
                assert_eq!(n, want, "in order");
                slowest = slowest.max(sent.elapsed());
                if n % 10 == 9 {
                    ack.send(n).await.expect("the sender stays");
                }
            }
            slowest
        })
        .expect("the receiving executor");
    let sender = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            let tx = to_receiver.connect().await;
            let acks = from_receiver.connect().await;
            for n in 0..MESSAGES {
                tx.send((n, Instant::now())).await.expect("the receiver stays");
                if n % 10 == 9 {
                    // The receiver has taken all ten and is idle: let it park before the next.
                    assert_eq!(acks.recv().await, Some(n));
                    let pause = Duration::from_micros(u64::from(n % 7) * 100);
                    glommio::timer::sleep(pause).await;
                }
            }
        })
        .expect("the sending executor");
    sender.join().expect("the sender ran");
    let slowest = receiver.join().expect("the receiver ran");
    assert!(slowest < Duration::from_secs(1), "a message waited {slowest:?} for its receiver to wake");
}

/// The patch's preemption timers: two task queues that each keep the executor busy, yielding
/// only when asked (`yield_if_needed`), take turns about once per preemption period; the
/// second, spawned after the first, first runs long before the first is done.
#[test]
fn busy_task_queues_still_take_turns() {
    within(Duration::from_secs(30), "two busy task queues of 600 ms", busy_queues_take_turns);
}

fn busy_queues_take_turns() {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Instant;
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .preempt_timer(Duration::from_millis(20))
        .spawn(|| async move {
            let first_queue = glommio::executor().create_task_queue(glommio::Shares::default(), glommio::Latency::NotImportant, "first");
            let second_queue = glommio::executor().create_task_queue(glommio::Shares::default(), glommio::Latency::NotImportant, "second");
            let first_steps = Rc::new(Cell::new(0u64));
            let first_done = Rc::new(Cell::new(false));
            let start = Instant::now();
            let (steps, done) = (first_steps.clone(), first_done.clone());
            let first = glommio::spawn_local_into(
                async move {
                    while start.elapsed() < Duration::from_millis(600) {
                        steps.set(steps.get() + 1);
                        glommio::yield_if_needed().await;
                    }
                    done.set(true);
                },
                first_queue,
            )
            .expect("spawn the first task");
            let second = glommio::spawn_local_into(
                async move {
                    let first_ran_at = start.elapsed();
                    let mut turns = 0u32;
                    let mut seen = first_steps.get();
                    while !first_done.get() {
                        if first_steps.get() != seen {
                            // The first queue ran since this one last did: a turn each.
                            turns += 1;
                            seen = first_steps.get();
                        }
                        glommio::yield_if_needed().await;
                    }
                    (first_ran_at, turns)
                },
                second_queue,
            )
            .expect("spawn the second task");
            first.await;
            let (first_ran_at, turns) = second.await;
            assert!(first_ran_at < Duration::from_millis(300), "the second queue first ran after {first_ran_at:?} (period 20 ms)");
            assert!(turns >= 5, "{turns} turns in 600 ms with a 20 ms preemption period");
        })
        .expect("an executor")
        .join()
        .expect("the test ran");
}
