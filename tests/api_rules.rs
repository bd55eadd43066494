//! The crate's one rule for blocking calls, checked across real processes:
//! `try_*` fails with `WouldBlock`, `Full` or `Empty`, `*_timeout` with a
//! timeout, and every error converts into `multiproc::Error` with `?`. Also
//! the Python-shaped calls the rule brought (`Condition::wait_for`,
//! `notify(n)`, `Lock::new()`, fork targets that never return).
#![cfg(not(loom))]

mod common;

use std::time::Duration;

use common::{DEADLINE, fork};
use multiproc::{
    Barrier, BarrierTimeoutError, BoundedSemaphore, Condition, Error, Event, GetTimeoutError,
    JoinableQueue, Lock, LockTimeoutError, MessageQueue, Mutex, PutTimeoutError, Queue, RecvError,
    Semaphore, SendError, TimedOut, TryGetError, TryLockError, TryPutError, WouldBlock, pipe, spsc,
};

const SOON: Duration = Duration::from_millis(20);

/// Each flavour of each queue says full or empty its own way: `Full`/`Empty`
/// without waiting, `Timeout` after a wait, with the value handed back.
#[test]
fn try_and_timeout_outcomes_of_every_queue() {
    let q = Queue::<u32>::new(1).unwrap();
    q.put(1).unwrap();
    assert_eq!(q.try_put(2), Err(TryPutError::Full(2)));
    assert_eq!(q.put_timeout(3, SOON), Err(PutTimeoutError::Timeout(3)));
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    assert_eq!(q.get_timeout(SOON), Err(GetTimeoutError::Timeout));
    q.close();
    assert_eq!(q.get_timeout(SOON), Err(GetTimeoutError::Closed));
    assert_eq!(q.put_timeout(4, SOON), Err(PutTimeoutError::Closed(4)));

    let (mut tx, mut rx) = spsc::channel::<u32>(1).unwrap();
    tx.push(1).unwrap();
    assert_eq!(tx.try_push(2), Err(TryPutError::Full(2)));
    assert_eq!(tx.push_timeout(3, SOON), Err(PutTimeoutError::Timeout(3)));
    assert_eq!(rx.pop().unwrap(), 1);
    assert_eq!(rx.try_pop(), Err(TryGetError::Empty));
    assert_eq!(rx.pop_timeout(SOON), Err(GetTimeoutError::Timeout));

    let m = MessageQueue::<String>::new(1, 32).unwrap();
    m.put("a".into()).unwrap();
    assert!(matches!(m.try_put("b".into()), Err(SendError::Full(s)) if s == "b"));
    assert!(matches!(m.put_timeout("c".into(), SOON), Err(SendError::Timeout(s)) if s == "c"));
    assert_eq!(m.get().unwrap(), "a");
    assert_eq!(m.try_get(), Err(RecvError::Empty));
    assert_eq!(m.get_timeout(SOON), Err(RecvError::Timeout));

    let (a, b) = pipe::<u8>().unwrap();
    assert_eq!(b.try_recv(), Err(RecvError::Empty));
    assert_eq!(b.recv_timeout(SOON), Err(RecvError::Timeout));
    a.send(7).unwrap();
    assert_eq!(b.recv_timeout(SOON), Ok(7));

    let j = JoinableQueue::<u8>::new(2, 8).unwrap();
    j.put(1).unwrap();
    assert_eq!(
        j.join_timeout(SOON),
        Err(multiproc::JoinTimeoutError::Timeout)
    );
    j.get().unwrap();
    j.task_done().unwrap();
    assert_eq!(j.join_timeout(SOON), Ok(()));
}

/// A timed get in another process ends with `Timeout` when nothing comes,
/// and with the item when it comes in time.
#[test]
fn timed_get_across_processes() {
    let q = Queue::<u64>::new(4).unwrap();
    let m = MessageQueue::<u64>::new(4, 16).unwrap();
    let child = fork(|| {
        if q.get_timeout(SOON) != Err(GetTimeoutError::Timeout) {
            return 1;
        }
        if m.get_timeout(SOON) != Err(RecvError::Timeout) {
            return 2;
        }
        match (q.get_timeout(DEADLINE), m.get_timeout(DEADLINE)) {
            (Ok(5), Ok(6)) => 0,
            _ => 3,
        }
    });
    std::thread::sleep(SOON * 5);
    q.put(5).unwrap();
    m.put(6).unwrap();
    assert_eq!(child.join(), 0);
}

/// The lock family: `WouldBlock` from `try_lock`, `Timeout` from
/// `lock_timeout`, while another process holds the lock.
#[test]
fn lock_outcomes_while_another_process_holds_it() {
    let lock = Lock::new().unwrap();
    let m = Mutex::new(0u32).unwrap();
    let held = Event::new().unwrap();
    let release = Event::new().unwrap();
    let holder = fork(|| {
        let _g = lock.lock().unwrap();
        let _h = m.lock().unwrap();
        held.set();
        i32::from(release.wait_timeout(DEADLINE).is_err())
    });
    held.wait_timeout(DEADLINE).unwrap();
    assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(matches!(
        lock.lock_timeout(SOON),
        Err(LockTimeoutError::Timeout)
    ));
    assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(matches!(
        m.lock_timeout(SOON),
        Err(LockTimeoutError::Timeout)
    ));
    assert!(lock.is_locked());
    release.set();
    assert_eq!(holder.join(), 0);
    lock.acquire().unwrap();
    lock.release().unwrap();
    assert!(lock.release().is_err(), "released twice");
}

/// Semaphores: `WouldBlock`, `TimedOut`, and a release past the bound (the
/// initial value of a bounded one, `u32::MAX` permits of a plain one)
/// refused with nothing changed.
#[test]
fn semaphore_outcomes_and_bounds() {
    let sem = Semaphore::new(0).unwrap();
    assert_eq!(sem.try_acquire(), Err(WouldBlock));
    assert_eq!(sem.acquire_timeout(SOON), Err(TimedOut));
    assert!(sem.try_access().is_err());
    sem.release_n(u32::MAX).unwrap();
    assert_eq!(sem.release().unwrap_err().max, u32::MAX);
    assert_eq!(sem.value(), u32::MAX);

    let b = BoundedSemaphore::new(1).unwrap();
    let child = fork(|| {
        // The bound travels with the object: a forked handle enforces it.
        match (b.acquire_timeout(DEADLINE), b.release(), b.release()) {
            (Ok(()), Ok(()), Err(e)) if e.max == 1 => 0,
            _ => 1,
        }
    });
    assert_eq!(child.join(), 0);
    assert_eq!((b.value(), b.max_value()), (1, 1));
}

/// A timed barrier wait says whether its own time ran out or the barrier
/// was broken by someone else.
#[test]
fn barrier_timeout_or_broken() {
    let bar = Barrier::new(3).unwrap();
    let waiting = Event::new().unwrap();
    let other = fork(|| {
        waiting.set();
        match bar.wait_timeout(DEADLINE) {
            Err(BarrierTimeoutError::Broken) => 0,
            _ => 1,
        }
    });
    waiting.wait_timeout(DEADLINE).unwrap();
    // Wait until the other process has arrived, then time out here.
    let end = std::time::Instant::now() + DEADLINE;
    while bar.n_waiting() < 1 {
        assert!(
            std::time::Instant::now() < end,
            "the other party never arrived"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(bar.wait_timeout(SOON), Err(BarrierTimeoutError::Timeout));
    assert_eq!(other.join(), 0);
    assert!(bar.is_broken());
    // Broken before the wait, even with no time left: `Broken`, not a
    // timeout of this waiter.
    let aborted = Barrier::new(2).unwrap();
    aborted.abort();
    assert_eq!(
        aborted.wait_timeout(Duration::ZERO),
        Err(BarrierTimeoutError::Broken)
    );
}

/// `Condition::wait_for` has Python's sense (the predicate to wait for, the
/// result `true` once it holds), and `notify(n)` wakes `n` waiters.
#[test]
fn wait_for_and_notify_n_across_processes() {
    let count = Mutex::new(0u32).unwrap();
    let cond = Condition::new().unwrap();
    let woke = Queue::<u32>::new(8).unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let (count, cond, woke) = (&count, &cond, &woke);
            fork(move || {
                let (g, ok) = cond
                    .wait_for(count.lock().unwrap(), |c| *c > i, DEADLINE)
                    .unwrap();
                drop(g);
                if !ok {
                    return 1;
                }
                i32::from(woke.put(i).is_err())
            })
        })
        .collect();
    let (g, ok) = cond
        .wait_for(count.lock().unwrap(), |c| *c > 0, SOON)
        .unwrap();
    assert!(!ok, "nothing was produced, so the time ran out");
    drop(g);
    for k in 1..=3 {
        *count.lock().unwrap() = k;
        cond.notify(3);
        let got = woke.get_timeout(DEADLINE).unwrap();
        assert_eq!(got, k - 1, "the waiter for {k} woke");
    }
    for w in waiters {
        assert_eq!(w.join(), 0);
    }
}

/// Every per-operation error goes into `multiproc::Error` with `?`.
#[test]
fn errors_convert_with_question_mark() {
    fn run() -> multiproc::Result<()> {
        let q = Queue::<u8>::new(1)?;
        q.put(1)?;
        q.try_put(2)?;
        Ok(())
    }
    assert!(matches!(run(), Err(Error::Full)));
    fn timed() -> multiproc::Result<u8> {
        Ok(Queue::<u8>::new(1)?.get_timeout(SOON)?)
    }
    assert!(matches!(timed(), Err(Error::Timeout)));
    fn closed() -> multiproc::Result<()> {
        let (a, b) = pipe::<u8>()?;
        a.close();
        b.recv()?;
        Ok(())
    }
    assert!(matches!(closed(), Err(Error::Closed)));
    fn locks() -> multiproc::Result<()> {
        let l = Lock::new()?;
        let _g = l.lock()?;
        let _again = l.try_lock()?;
        Ok(())
    }
    assert!(matches!(locks(), Err(Error::WouldBlock)));
    fn sems() -> multiproc::Result<()> {
        BoundedSemaphore::new(0)?.release()?;
        Ok(())
    }
    assert!(matches!(sems(), Err(Error::OverRelease { max: 0 })));
    fn too_large() -> multiproc::Result<()> {
        MessageQueue::<String>::new(1, 8)?.put("x".repeat(100))?;
        Ok(())
    }
    assert!(matches!(too_large(), Err(Error::TooLarge { .. })));
    fn barrier() -> multiproc::Result<()> {
        Barrier::new(2)?.wait_timeout(SOON)?;
        Ok(())
    }
    assert!(matches!(barrier(), Err(Error::Timeout)));
    fn task_done() -> multiproc::Result<()> {
        JoinableQueue::<u8>::new(1, 8)?.task_done()?;
        Ok(())
    }
    assert!(matches!(task_done(), Err(Error::TaskDone)));
}

/// A fork target that never returns (it exits or panics: type `!`) is a
/// target like any other.
#[test]
fn never_returning_fork_targets() {
    let mut exits = multiproc::Process::fork(|| std::process::exit(5));
    exits.start().unwrap();
    assert_eq!(exits.join_timeout(DEADLINE).unwrap(), 5);
    let mut panics = multiproc::Process::fork(|| panic!("on purpose"));
    panics.start().unwrap();
    assert_eq!(
        panics.join_timeout(DEADLINE).unwrap(),
        multiproc::PANIC_EXIT_CODE
    );
    assert!(panics.failure().unwrap().message().contains("on purpose"));
}
