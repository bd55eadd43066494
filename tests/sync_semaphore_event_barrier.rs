//! `Semaphore`, `BoundedSemaphore`, `Event` and `Barrier` across real
//! processes: forked children and a re-executed, unrelated process.
#![cfg(not(loom))]

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{fork, fork_all};
use multiproc::SharedObject;
use multiproc::{
    AtomicValue, Barrier, BoundedSemaphore, Descriptor, Error, Event, OverRelease, Semaphore,
};

/// Spins (sleeping a little) until `cond` holds; fails the test after the
/// common deadline instead of hanging.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let end = Instant::now() + common::DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Handles can be shared with threads as well as processes.
#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
    check::<Semaphore>();
    check::<BoundedSemaphore>();
    check::<Event>();
    check::<Barrier>();
    fn send<T: Send>() {}
    send::<multiproc::SemaphoreGuard<'static>>();
}

// ---------------------------------------------------------------- Semaphore

/// `Semaphore(3)` never lets more than 3 of 8 processes in at once, and
/// every process gets in every time.
#[test]
fn semaphore_capacity_eight_processes() {
    const PROCS: usize = 8;
    const ROUNDS: u32 = 200;
    let sem = Semaphore::new(3).unwrap();
    let inside = AtomicValue::new(0u32).unwrap();
    let max_inside = AtomicValue::new(0u32).unwrap();
    let entries = AtomicValue::new(0u32).unwrap();
    fork_all(PROCS, |i| {
        for r in 0..ROUNDS {
            let _permit = sem.access();
            let now = inside.fetch_add(1, SeqCst) + 1;
            max_inside.fetch_max(now, SeqCst);
            entries.fetch_add(1, SeqCst);
            // Hold the permit a moment, sometimes long enough for others to
            // go to sleep on the futex.
            if (r + i as u32).is_multiple_of(16) {
                std::thread::sleep(Duration::from_micros(200));
            } else {
                std::thread::yield_now();
            }
            inside.fetch_sub(1, SeqCst);
        }
        0
    });
    let max = max_inside.load(SeqCst);
    assert!(
        max <= 3,
        "{max} processes held a permit of Semaphore(3) at once"
    );
    assert!(max >= 1);
    assert_eq!(entries.load(SeqCst), PROCS as u32 * ROUNDS);
    assert_eq!(inside.load(SeqCst), 0);
    assert_eq!(sem.value(), 3);
}

/// A process blocked in `acquire` is woken by a release in another, and
/// `release_n` wakes several sleepers at once.
#[test]
fn semaphore_release_wakes_other_processes() {
    let sem = Semaphore::new(0).unwrap();
    let waiting = AtomicValue::new(0u32).unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| {
            fork(|| {
                waiting.fetch_add(1, SeqCst);
                sem.acquire();
                0
            })
        })
        .collect();
    wait_for("three acquirers", || waiting.load(SeqCst) == 3);
    for k in &kids {
        k.wait_until_futex_sleep();
    }
    sem.release().unwrap();
    sem.release_n(2).unwrap();
    for k in kids {
        assert_eq!(k.join(), 0);
    }
    assert_eq!(sem.value(), 0);
}

/// `acquire_timeout` on an empty semaphore gives up after at least the
/// timeout; `try_acquire` never blocks; a huge timeout does not overflow.
#[test]
fn semaphore_timeout_and_try() {
    let sem = Semaphore::new(0).unwrap();
    let timeout = Duration::from_millis(50);
    let t0 = Instant::now();
    assert!(sem.acquire_timeout(timeout).is_err());
    assert!(t0.elapsed() >= timeout);
    assert!(sem.try_acquire().is_err());
    assert!(sem.try_access().is_err());
    assert!(sem.access_timeout(Duration::ZERO).is_err());

    sem.release().unwrap();
    assert_eq!(sem.value(), 1);
    assert!(sem.try_acquire().is_ok());
    assert!(sem.try_acquire().is_err());

    // Duration::MAX means "as long as it takes": a child's release ends it.
    let kid = fork(|| {
        std::thread::sleep(Duration::from_millis(20));
        sem.release().unwrap();
        0
    });
    assert!(sem.acquire_timeout(Duration::MAX).is_ok());
    assert_eq!(kid.join(), 0);
    assert_eq!(sem.value(), 0);
}

/// A bounded semaphore refuses releases above its initial value, in any
/// process, and changes nothing when it does.
#[test]
fn bounded_semaphore_over_release() {
    let sem = BoundedSemaphore::new(2).unwrap();
    assert_eq!(sem.max_value(), 2);
    assert_eq!(sem.release(), Err(OverRelease { max: 2 }));
    assert_eq!(sem.value(), 2);

    let kid = fork(|| {
        sem.acquire();
        sem.acquire();
        let ok = sem.release_n(2).is_ok() && sem.release().is_err();
        i32::from(!ok)
    });
    assert_eq!(kid.join(), 0);
    assert_eq!(sem.value(), 2);

    sem.acquire();
    assert!(sem.release_n(2).is_err(), "2 + 1 exceeds the bound");
    assert_eq!(sem.value(), 1);
    {
        let _permit = sem.access();
        assert_eq!(sem.value(), 0);
    }
    assert_eq!(sem.value(), 1);
    sem.release().unwrap();
    assert!(sem.release().unwrap_err().to_string().contains("released"));
}

/// A process SIGKILLed while it holds a permit through a guard: a blocked
/// `access` in another process takes that permit over (and says so), a
/// plain `acquire` too; nothing is given back twice.
#[test]
fn semaphore_permit_of_a_killed_guard_holder_comes_back() {
    let sem = Semaphore::new(1).unwrap();
    let holding = Event::new().unwrap();
    let victim = fork(|| {
        let _permit = sem.access();
        holding.set();
        std::thread::sleep(common::DEADLINE);
        0
    });
    assert!(holding.wait_timeout(common::DEADLINE).is_ok());
    assert_eq!(sem.value(), 0);
    victim.signal(libc::SIGKILL);
    assert_eq!(victim.join(), -libc::SIGKILL);
    let permit = sem.access_timeout(common::DEADLINE).expect("taken over");
    assert!(permit.from_dead_holder());
    assert_eq!(sem.recovered_permits(), 1);
    assert_eq!(sem.value(), 0);
    drop(permit);
    assert_eq!(sem.value(), 1);

    // A plain acquire, blocked before the holder dies, gets it too.
    holding.clear();
    let victim = fork(|| {
        let _permit = sem.access();
        holding.set();
        std::thread::sleep(common::DEADLINE);
        0
    });
    assert!(holding.wait_timeout(common::DEADLINE).is_ok());
    let waiter = fork(|| {
        sem.acquire();
        0
    });
    waiter.wait_until_futex_sleep();
    victim.signal(libc::SIGKILL);
    assert_eq!(victim.join(), -libc::SIGKILL);
    assert_eq!(waiter.join(), 0, "the plain acquire returned");
    assert_eq!(sem.recovered_permits(), 2);
    assert_eq!(sem.value(), 0, "the waiter holds it (it never released)");
}

/// Two holders of a `BoundedSemaphore`'s two permits killed: both permits
/// come back, exactly (a release past the bound is still refused).
#[test]
fn bounded_semaphore_permits_of_killed_holders_come_back_exactly() {
    let sem = BoundedSemaphore::new(2).unwrap();
    let held = AtomicValue::new(0u32).unwrap();
    let victims: Vec<_> = (0..2)
        .map(|_| {
            fork(|| {
                let _permit = sem.access();
                held.fetch_add(1, SeqCst);
                std::thread::sleep(common::DEADLINE);
                0
            })
        })
        .collect();
    wait_for("both holders", || held.load(SeqCst) == 2);
    for v in victims {
        v.signal(libc::SIGKILL);
        assert_eq!(v.join(), -libc::SIGKILL);
    }
    let a = sem.access_timeout(common::DEADLINE).unwrap();
    let b = sem.access_timeout(common::DEADLINE).unwrap();
    assert!(a.from_dead_holder() && b.from_dead_holder());
    drop((a, b));
    assert_eq!(sem.value(), 2);
    assert_eq!(sem.release(), Err(OverRelease { max: 2 }));
}

/// A bare `acquire` (no guard) in a process that is killed keeps its
/// permit: nothing records who took it (as in Python), so it cannot come
/// back; and a forked child dropping its copy of its parent's guard gives
/// nothing back (the permit is the parent's).
#[test]
fn semaphore_bare_acquire_of_a_killed_process_and_a_forked_guard_copy() {
    let sem = Semaphore::new(1).unwrap();
    let victim = fork(|| {
        sem.acquire();
        std::thread::sleep(common::DEADLINE);
        0
    });
    wait_for("the bare acquire", || sem.value() == 0);
    victim.signal(libc::SIGKILL);
    assert_eq!(victim.join(), -libc::SIGKILL);
    assert_eq!(
        sem.acquire_timeout(Duration::from_millis(100)),
        Err(multiproc::TimedOut)
    );
    assert_eq!(sem.recovered_permits(), 0);

    sem.release().unwrap();
    let permit = sem.access();
    let kid = fork(|| {
        // SAFETY: the child's address space holds its own copy of
        // `permit`; moving it out there and dropping it is what a forked
        // child that owned an inherited guard does. The parent's copy is
        // untouched.
        drop(unsafe { std::ptr::read(&permit) });
        i32::from(sem.value() != 0)
    });
    assert_eq!(kid.join(), 0, "the child's copy gave nothing back");
    assert_eq!(sem.value(), 0);
    drop(permit);
    assert_eq!(sem.value(), 1);
}

/// Descriptors of a `Semaphore` and a `BoundedSemaphore` are not
/// interchangeable, and neither attaches as another kind.
#[test]
fn semaphore_kinds_do_not_mix() {
    let sem = Semaphore::new(1).unwrap();
    let bounded = BoundedSemaphore::new(1).unwrap();
    assert!(matches!(
        BoundedSemaphore::attach(&sem.descriptor()),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        Semaphore::attach(&bounded.descriptor()),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        Event::attach(&sem.descriptor()),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        Barrier::attach(&sem.descriptor()),
        Err(Error::KindMismatch { .. })
    ));
    let again = BoundedSemaphore::attach(&bounded.descriptor()).unwrap();
    assert_eq!(again.max_value(), 1);
    again.acquire();
    assert_eq!(bounded.value(), 0);
}

// -------------------------------------------------------------------- Event

/// An event set in one process wakes waiters blocked in three others.
#[test]
fn event_set_wakes_three_processes() {
    let ev = Event::new().unwrap();
    let waiting = AtomicValue::new(0u32).unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| {
            fork(|| {
                waiting.fetch_add(1, SeqCst);
                ev.wait();
                i32::from(!ev.is_set())
            })
        })
        .collect();
    wait_for("three waiters", || waiting.load(SeqCst) == 3);
    for k in &kids {
        k.wait_until_futex_sleep();
    }
    assert!(!ev.is_set());
    ev.set();
    for k in kids {
        assert_eq!(k.join(), 0);
    }
}

/// A set quickly followed by a clear still releases everybody who was
/// waiting (as Python's `threading.Event`).
#[test]
fn event_set_then_clear_releases_waiters() {
    let ev = Event::new().unwrap();
    let waiting = AtomicValue::new(0u32).unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| {
            fork(|| {
                waiting.fetch_add(1, SeqCst);
                ev.wait();
                0
            })
        })
        .collect();
    wait_for("three waiters", || waiting.load(SeqCst) == 3);
    for k in &kids {
        k.wait_until_futex_sleep();
    }
    ev.set();
    ev.clear();
    for k in kids {
        assert_eq!(k.join(), 0);
    }
    assert!(!ev.is_set());
}

/// `wait_timeout` returns false after at least the timeout when never set;
/// true at once when set; `clear` turns the flag off again.
#[test]
fn event_wait_timeout_and_clear() {
    let ev = Event::new().unwrap();
    let timeout = Duration::from_millis(50);
    let t0 = Instant::now();
    assert!(ev.wait_timeout(timeout).is_err());
    assert!(t0.elapsed() >= timeout);

    let kid = fork(|| {
        ev.set();
        0
    });
    assert_eq!(kid.join(), 0);
    assert!(ev.is_set());
    assert!(ev.wait_timeout(timeout).is_ok());
    assert!(ev.wait_timeout(Duration::MAX).is_ok());
    ev.wait();

    ev.clear();
    assert!(!ev.is_set());
    let t0 = Instant::now();
    assert!(ev.wait_timeout(Duration::from_millis(10)).is_err());
    assert!(t0.elapsed() >= Duration::from_millis(10));

    // A timed waiter in a child is woken by a set before its timeout.
    let waiting = AtomicValue::new(0u32).unwrap();
    let kid = fork(|| {
        waiting.store(1, SeqCst);
        i32::from(ev.wait_timeout(common::DEADLINE).is_err())
    });
    wait_for("the timed waiter", || waiting.load(SeqCst) == 1);
    kid.wait_until_futex_sleep();
    ev.set();
    assert_eq!(kid.join(), 0);
}

// ------------------------------------------------------------------ Barrier

/// A party killed (SIGKILL) after it arrived still counts: its round
/// completes when the others arrive, and the barrier goes on whole.
#[test]
fn barrier_party_killed_after_arriving_still_counts() {
    let b = Barrier::new(3).unwrap();
    let victim = fork(|| i32::from(b.wait().is_err()));
    victim.wait_until_futex_sleep();
    assert_eq!(b.n_waiting(), 1, "the victim arrived");
    victim.signal(libc::SIGKILL);
    assert_eq!(victim.join(), -libc::SIGKILL);
    let other = fork(|| i32::from(b.wait_timeout(common::DEADLINE).is_err()));
    let mine = b.wait_timeout(common::DEADLINE);
    assert!(mine.is_ok(), "the round completed: {mine:?}");
    assert_eq!(other.join(), 0);
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 0);
}

/// A party killed before it arrived never comes: the others' plain `wait`
/// would wait for it forever, so they use `wait_timeout`, whose timeout
/// breaks the round; `reset` then makes the barrier whole, and new rounds
/// pass.
#[test]
fn barrier_party_killed_before_arriving_breaks_the_round_and_reset_heals() {
    let b = Barrier::new(2).unwrap();
    let victim = fork(|| {
        std::thread::sleep(common::DEADLINE);
        i32::from(b.wait().is_err())
    });
    victim.signal(libc::SIGKILL);
    assert_eq!(victim.join(), -libc::SIGKILL);
    assert_eq!(
        b.wait_timeout(Duration::from_millis(50)),
        Err(multiproc::BarrierTimeoutError::Timeout)
    );
    assert!(b.is_broken());
    b.reset();
    assert!(!b.is_broken());
    let other = fork(|| i32::from(b.wait_timeout(common::DEADLINE).is_err()));
    assert!(b.wait_timeout(common::DEADLINE).is_ok());
    assert_eq!(other.join(), 0);
}

/// Two forked parties and this process fill a round of a three-party
/// barrier: every wait passes.
fn a_round_of_three_passes(b: &Barrier) {
    let others: Vec<_> = (0..2)
        .map(|_| fork(|| i32::from(b.wait_timeout(common::DEADLINE).is_err())))
        .collect();
    assert!(b.wait_timeout(common::DEADLINE).is_ok());
    for k in others {
        assert_eq!(k.join(), 0);
    }
}

/// A party killed inside a round that then breaks never leaves it; `reset`
/// finds nobody alive left in the round and makes the barrier whole at once.
#[test]
fn barrier_party_killed_inside_a_broken_round_reset_heals() {
    let b = Barrier::new(3).unwrap();
    let victim = fork(|| i32::from(b.wait().is_err()));
    victim.wait_until_futex_sleep();
    victim.signal(libc::SIGKILL);
    assert_eq!(victim.join(), -libc::SIGKILL);
    assert_eq!(
        b.wait_timeout(Duration::from_millis(50)),
        Err(multiproc::BarrierTimeoutError::Timeout)
    );
    assert!(b.is_broken());
    b.reset();
    assert!(!b.is_broken(), "reset healed the dead party's round");
    assert_eq!(b.n_waiting(), 0);
    a_round_of_three_passes(&b);
}

/// A reset while a dead party and a live one are inside: the live one fails
/// and leaves, and, finding only the dead left in the round, heals it; new
/// rounds pass.
#[test]
fn barrier_reset_with_a_dead_and_a_live_waiter_heals_when_the_live_one_leaves() {
    let b = Barrier::new(3).unwrap();
    let victim = fork(|| i32::from(b.wait().is_err()));
    victim.wait_until_futex_sleep();
    victim.signal(libc::SIGKILL);
    assert_eq!(victim.join(), -libc::SIGKILL);
    let live = fork(|| i32::from(b.wait() == Err(multiproc::BrokenBarrier)));
    live.wait_until_futex_sleep();
    assert_eq!(b.n_waiting(), 2);
    b.reset();
    assert_eq!(live.join(), 1, "the live waiter's round was reset");
    wait_for("the barrier to heal", || !b.is_broken());
    a_round_of_three_passes(&b);
}

/// A barrier of 4 processes releases all of them once per round for 200
/// rounds; nobody runs ahead, and every round has exactly one leader.
#[test]
fn barrier_four_processes_many_rounds() {
    const PARTIES: u32 = 4;
    const ROUNDS: usize = 200;
    let b = Barrier::new(PARTIES).unwrap();
    let arrived: Vec<AtomicValue<u32>> =
        (0..=ROUNDS).map(|_| AtomicValue::new(0).unwrap()).collect();
    let leaders: Vec<AtomicValue<u32>> =
        (0..ROUNDS).map(|_| AtomicValue::new(0).unwrap()).collect();
    let indices: Vec<AtomicValue<u32>> =
        (0..ROUNDS).map(|_| AtomicValue::new(0).unwrap()).collect();
    fork_all(PARTIES as usize, |i| {
        for r in 0..ROUNDS {
            arrived[r].fetch_add(1, SeqCst);
            // Round r cannot complete without us, so nobody is in r + 1.
            if arrived[r + 1].load(SeqCst) != 0 {
                return 10;
            }
            if (r + i).is_multiple_of(50) {
                // Make the others sleep on the futex now and then.
                std::thread::sleep(Duration::from_millis(1));
            }
            let Ok(res) = b.wait() else {
                return 11;
            };
            // Everybody of round r arrived before anybody was released.
            if arrived[r].load(SeqCst) != PARTIES {
                return 12;
            }
            if res.is_leader() {
                leaders[r].fetch_add(1, SeqCst);
            }
            indices[r].fetch_or(1 << res.index(), SeqCst);
        }
        0
    });
    for r in 0..ROUNDS {
        assert_eq!(leaders[r].load(SeqCst), 1, "leaders in round {r}");
        assert_eq!(indices[r].load(SeqCst), 0b1111, "indices in round {r}");
        assert_eq!(arrived[r].load(SeqCst), PARTIES);
    }
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 0);
}

/// A waiter that times out breaks the barrier for the others waiting and for
/// every later waiter, until `reset`.
#[test]
fn barrier_timeout_breaks_it_for_everyone() {
    let b = Barrier::new(3).unwrap();
    let kid = fork(|| i32::from(b.wait().is_ok()));
    kid.wait_until_futex_sleep();
    assert_eq!(b.n_waiting(), 1);
    let timeout = Duration::from_millis(50);
    let t0 = Instant::now();
    assert!(b.wait_timeout(timeout).is_err());
    assert!(t0.elapsed() >= timeout);
    assert_eq!(kid.join(), 0, "the child's wait must fail too");
    assert!(b.is_broken());
    assert_eq!(b.n_waiting(), 0);
    // Later waiters fail at once, in any process.
    assert!(b.wait().is_err());
    let kid = fork(|| i32::from(b.wait_timeout(common::DEADLINE).is_ok()));
    assert_eq!(kid.join(), 0);

    b.reset();
    assert!(!b.is_broken());
    let leaders = AtomicValue::new(0u32).unwrap();
    fork_all(3, |_| match b.wait() {
        Ok(r) => {
            if r.is_leader() {
                leaders.fetch_add(1, SeqCst);
            }
            0
        }
        Err(_) => 1,
    });
    assert_eq!(leaders.load(SeqCst), 1);
}

/// `abort` breaks the barrier for a waiter in another process; `reset`
/// makes it usable again.
#[test]
fn barrier_abort_and_reset() {
    let b = Barrier::new(2).unwrap();
    let kid = fork(|| i32::from(b.wait().is_ok()));
    kid.wait_until_futex_sleep();
    assert_eq!(b.n_waiting(), 1);
    b.abort();
    assert_eq!(kid.join(), 0);
    assert!(b.is_broken());
    assert!(b.wait().is_err());

    b.reset();
    assert!(!b.is_broken());
    let kid = fork(|| match b.wait() {
        Ok(r) => i32::from(r.is_leader()) + 10,
        Err(_) => 1,
    });
    let mine = b.wait().unwrap();
    let theirs = kid.join();
    assert!(theirs >= 10, "child failed: {theirs}");
    assert_ne!(mine.is_leader(), theirs == 11, "exactly one leader");
}

/// `reset` while processes wait breaks their round (they fail), and new
/// arrivals fill a fresh round once those have left.
#[test]
fn barrier_reset_with_waiters() {
    let b = Barrier::new(3).unwrap();
    let kids: Vec<_> = (0..2)
        .map(|_| fork(|| i32::from(b.wait().is_ok())))
        .collect();
    for k in &kids {
        k.wait_until_futex_sleep();
    }
    assert_eq!(b.n_waiting(), 2);
    b.reset();
    for k in kids {
        assert_eq!(k.join(), 0, "a waiter of the reset round must fail");
    }
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 0);
    fork_all(3, |_| i32::from(b.wait().is_err()));
}

/// Bad sizes are errors, not panics.
#[test]
fn barrier_bad_parties() {
    assert!(matches!(Barrier::new(0), Err(Error::InvalidSize { .. })));
    assert!(matches!(
        Barrier::new(1 << 20),
        Err(Error::InvalidSize { .. })
    ));
    let b = Barrier::new(1).unwrap();
    let r = b.wait().unwrap();
    assert!(r.is_leader());
    assert_eq!(r.index(), 0);
}

// -------------------------------------------------------------- Descriptors

/// A re-executed, unrelated process attaches a semaphore, an event and a
/// barrier from their descriptors, and meets this one through them: it
/// releases the semaphore we block on, joins our barrier, and waits for our
/// event.
#[test]
fn attach_from_unrelated_process() {
    let sem = Semaphore::new(0).unwrap();
    let ev = Event::new().unwrap();
    let b = Barrier::new(2).unwrap();
    let mut data = Vec::new();
    for d in [sem.descriptor(), ev.descriptor(), b.descriptor()] {
        let bytes = d.to_bytes();
        data.push(u8::try_from(bytes.len()).unwrap());
        data.extend(bytes);
    }
    let child = std::thread::spawn(move || common::run_self("role_attach_sync", &data));
    sem.acquire();
    let mine = b.wait().unwrap();
    ev.set();
    let (code, out) = child.join().unwrap();
    assert_eq!(code, 0, "child output:\n{out}");
    assert!(out.contains("leader="), "child output:\n{out}");
    let theirs = out.contains("leader=true");
    assert_ne!(mine.is_leader(), theirs, "exactly one leader");
    assert_eq!(sem.value(), 0);
}

/// The child side of [`attach_from_unrelated_process`].
#[test]
#[ignore = "child half of a re-exec test: run by common::run_self"]
fn role_attach_sync() {
    let Some(data) = common::role_data("role_attach_sync") else {
        return;
    };
    let mut descs = Vec::new();
    let mut rest = &data[..];
    while let Some((&n, tail)) = rest.split_first() {
        descs.push(Descriptor::from_bytes(&tail[..n as usize]).unwrap());
        rest = &tail[n as usize..];
    }
    // Wrong kinds are refused here too.
    assert!(Event::attach(&descs[0]).is_err());
    assert!(BoundedSemaphore::attach(&descs[0]).is_err());
    assert!(Semaphore::attach(&descs[1]).is_err());
    let sem = Semaphore::attach(&descs[0]).unwrap();
    let ev = Event::attach(&descs[1]).unwrap();
    let b = Barrier::attach(&descs[2]).unwrap();
    assert_eq!(b.parties(), 2);
    sem.release().unwrap();
    let r = b.wait().unwrap();
    println!("leader={}", r.is_leader());
    assert!(ev.wait_timeout(common::DEADLINE).is_ok());
}
