//! What travels between the pool and its workers: tasks in each worker's
//! inbox, results (in parts when large) on the pool's one results queue,
//! and the configuration a worker starts with.

use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::TaskError;
use crate::pool::func::{FnRef, Key};
use crate::queue::message::MessageQueue;
use crate::shm::atomic::AtomicValue;

/// Bytes shared by the pool's copy of a task and the message it sends
/// (a re-sent task is not copied again), encoded as postcard bytes (a
/// length and the bytes, copied in one piece both ways).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bytes(pub(crate) Arc<[u8]>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.into()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v.into()))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A task: its id, its function, its encoded input (a chunk of
/// arguments).
#[derive(Serialize, Deserialize)]
pub(crate) struct TaskMsg {
    pub(crate) id: u64,
    pub(crate) func: FnRef,
    pub(crate) input: Bytes,
}

/// What a worker sends back.
#[derive(Serialize, Deserialize)]
pub(crate) enum ResultMsg {
    /// A leading part of task `id`'s encoded output, too large for one
    /// message; the rest follows, then `Done`.
    Part { id: u64, bytes: Bytes },
    /// Task `id` is finished: the (last part of the) encoded output, or
    /// why there is none.
    Done {
        id: u64,
        outcome: Result<Bytes, TaskError>,
    },
    /// The worker's initializer failed; the worker exits.
    InitFailed { message: String },
    /// Nothing: the pool wakes its supervisor with it.
    Wake,
}

/// Room a task message needs besides its input, and a result message
/// besides its bytes (varints of ids and lengths, tags, a function
/// reference).
pub(crate) const TASK_OVERHEAD: usize = 64;
pub(crate) const RESULT_OVERHEAD: usize = 32;

/// What a worker starts with.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerConfig {
    pub(crate) inbox: MessageQueue<TaskMsg>,
    pub(crate) results: MessageQueue<ResultMsg>,
    /// The id of the task the worker runs (or ran last), set before it
    /// calls the task function.
    pub(crate) running: AtomicValue<u64>,
    /// When it started it (`sys::clock::coarse_ms`).
    pub(crate) since: AtomicValue<u64>,
    pub(crate) key: Key,
    /// Device and inode of the pool's executable, which the worker's must
    /// be.
    pub(crate) program: (u64, u64),
    pub(crate) initializer: Option<(FnRef, Bytes)>,
    pub(crate) max_tasks: Option<u64>,
    /// The largest part of a result, in bytes.
    pub(crate) max_part: usize,
    /// How long the worker polls its inbox before it sleeps on it.
    pub(crate) spin: Duration,
}

/// Device and inode of the file this process executes.
pub(crate) fn program_identity() -> (u64, u64) {
    match rustix::fs::stat("/proc/self/exe") {
        Ok(st) => (st.st_dev, st.st_ino),
        Err(_) => (0, 0),
    }
}
