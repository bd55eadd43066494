//! A pool worker: runs the initializer, then takes tasks from its inbox
//! one at a time, says which one it runs before it calls it, and sends the
//! result (in parts when large) on the results queue, until its inbox is
//! closed or it has run `max_tasks`.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::TaskError;
use crate::pool::func::WorkerCx;
use crate::pool::wire::{Bytes, ResultMsg, TaskMsg, WorkerConfig, program_identity};
use crate::process::spawn::Entry;
use crate::queue::message::{RecvError, SendError};
use crate::sys::clock::coarse_ms;

/// Exit codes of a worker that stopped on its own for a reason the pool
/// does not see otherwise.
pub(crate) const EXIT_INIT_FAILED: i32 = 3;
pub(crate) const EXIT_BAD_INBOX: i32 = 4;

/// The spawned worker's entry, registered by [`crate::init`] itself.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerEntry(pub(crate) WorkerConfig);

impl Entry for WorkerEntry {
    type Output = i32;
    fn run(self) -> i32 {
        run(self.0)
    }
    fn name() -> &'static str {
        "multiproc::pool::worker"
    }
}

thread_local! {
    /// The last panic's report ("panicked at file:line:col:\nmessage"),
    /// kept by the worker's panic hook instead of printed.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

thread_local! {
    /// Set in a worker's thread: its panics are kept, not printed.
    static IN_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs, once per process, a panic hook that keeps the report of a
/// worker's panic (as Python's pool prints nothing of a task's exception)
/// and hands every other panic to the hook that was there before.
///
/// The pool calls it in the parent before it forks a worker, so a forked
/// worker never takes the hook's lock itself: another thread of the
/// parent could have held it at the fork (a test thread panicking, say),
/// and the worker would wait on it forever.
pub(crate) fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_WORKER.with(|w| w.get()) {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

fn panic_report() -> String {
    LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .unwrap_or_else(|| "a panic with no report".to_owned())
}

/// The worker's main loop; its exit code.
pub(crate) fn run(cfg: WorkerConfig) -> i32 {
    // A task's panic comes back to the pool as its error: the report is
    // kept, not printed. (Installed already in a forked worker's parent.)
    install_quiet_hook();
    IN_WORKER.with(|w| w.set(true));
    let mut cx = WorkerCx::default();
    if program_identity() != cfg.program {
        let _ = cfg.results.put(ResultMsg::InitFailed {
            message: "the worker does not run the pool's executable".to_owned(),
        });
        return EXIT_INIT_FAILED;
    }
    if let Some((init, arg)) = &cfg.initializer {
        let failure = match catch_unwind(AssertUnwindSafe(|| init.call(&cfg.key, &arg.0, &mut cx)))
        {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(panic_report()),
        };
        if let Some(message) = failure {
            let _ = cfg.results.put(ResultMsg::InitFailed { message });
            return EXIT_INIT_FAILED;
        }
    }
    let mut done = 0u64;
    loop {
        let task = match next_task(&cfg) {
            Ok(task) => task,
            Err(RecvError::Closed) => return 0,
            // Overwritten shared memory: the pool sees this worker exit
            // with the task not started, and sends it to another.
            Err(_) => return EXIT_BAD_INBOX,
        };
        // SYNC: the pool's check of a dead worker reads `running`
        // (Acquire) after its exit: a task named there had started.
        cfg.since.store(coarse_ms(), Ordering::Relaxed);
        cfg.running.store(task.id, Ordering::Release);
        let outcome = match catch_unwind(AssertUnwindSafe(|| {
            task.func.call(&cfg.key, &task.input.0, &mut cx)
        })) {
            Ok(outcome) => outcome,
            Err(payload) => {
                // The payload's destructor is user code: keep it from
                // unwinding here.
                let _ = catch_unwind(AssertUnwindSafe(|| drop(payload)));
                Err(TaskError::Panicked {
                    message: panic_report(),
                })
            }
        };
        if !send(&cfg, task.id, outcome) {
            return 0; // the pool is gone
        }
        done += 1;
        if cfg.max_tasks.is_some_and(|m| done >= m) {
            return 0;
        }
    }
}

/// One pause of a poll loop, at its `polls`th poll: a spin hint for the
/// first few, then the core given away, so that on a machine with more
/// busy threads than cores the poller does not hold up the thread it
/// waits for.
pub(crate) fn pause(polls: u32) {
    if polls < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Takes the next task: polls the inbox for up to `cfg.spin` (a task
/// that follows soon is taken without a wake-up on either side), then
/// sleeps on it.
fn next_task(cfg: &WorkerConfig) -> Result<TaskMsg, RecvError> {
    if !cfg.spin.is_zero() {
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            match cfg.inbox.try_get() {
                Err(RecvError::Empty) => {}
                got => return got,
            }
            polls += 1;
            pause(polls);
            if polls.is_multiple_of(16) && start.elapsed() >= cfg.spin {
                break;
            }
        }
    }
    cfg.inbox.get()
}

/// Sends task `id`'s outcome, in parts if needed; false if the results
/// queue is closed.
fn send(cfg: &WorkerConfig, id: u64, outcome: Result<Vec<u8>, TaskError>) -> bool {
    let put = |msg| match cfg.results.put(msg) {
        Ok(()) => Ok(true),
        Err(SendError::Closed(_)) => Ok(false),
        Err(e) => Err(e),
    };
    let outcome = match outcome {
        Ok(bytes) => {
            let mut rest = &bytes[..];
            while rest.len() > cfg.max_part {
                let (part, tail) = rest.split_at(cfg.max_part);
                match put(ResultMsg::Part {
                    id,
                    bytes: Bytes(part.into()),
                }) {
                    Ok(true) => {}
                    Ok(false) => return false,
                    Err(e) => {
                        return put(ResultMsg::Done {
                            id,
                            outcome: Err(TaskError::Encode {
                                reason: format!("cannot send a part of the result: {e}"),
                            }),
                        })
                        .unwrap_or(false);
                    }
                }
                rest = tail;
            }
            Ok(Bytes(rest.into()))
        }
        Err(e) => Err(e),
    };
    match put(ResultMsg::Done { id, outcome }) {
        Ok(open) => open,
        // Too long for one message (a huge panic message, say): cut it.
        Err(e) => {
            let mut reason = match e.into_inner() {
                ResultMsg::Done { outcome: Err(e), .. } => e.to_string(),
                _ => "the result's last part could not be sent".to_owned(),
            };
            let mut cut = cfg.max_part / 2;
            while !reason.is_char_boundary(cut.min(reason.len())) {
                cut -= 1;
            }
            reason.truncate(cut);
            put(ResultMsg::Done {
                id,
                outcome: Err(TaskError::Encode { reason }),
            })
            .unwrap_or(false)
        }
    }
}
