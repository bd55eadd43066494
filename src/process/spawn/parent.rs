//! The parent's side of a spawn: encode the entry, write the boot record,
//! `posix_spawn` this program, and wait for the child's handshake.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use rustix::fs::MemfdFlags;
use rustix::pipe::PipeFlags;

use crate::error::{Error, Result, SpawnFailure};
use crate::process::child::Child;
use crate::process::current;
use crate::process::spawn::boot::{Boot, MAX_BOOT_RECORD, file_id};
use crate::process::spawn::{DEFAULT_START_TIMEOUT, SPAWN_ENV, WIRE_VERSION};
use crate::shm::segment::collect_memfds;
use crate::sys::spawn::posix_spawn;

/// How to spawn: from `Process`'s builder methods.
#[derive(Clone, Debug)]
pub(crate) struct SpawnConfig {
    /// Arguments after `argv[0]` (none by default).
    pub(crate) exec_args: Vec<OsString>,
    /// Stdout on `/dev/null` until `init` (test harness chatter).
    pub(crate) hide_stdout_until_init: bool,
    pub(crate) start_timeout: Duration,
}

impl Default for SpawnConfig {
    fn default() -> Self {
        SpawnConfig {
            exec_args: Vec::new(),
            hide_stdout_until_init: false,
            start_timeout: DEFAULT_START_TIMEOUT,
        }
    }
}

/// Encodes a spawn's entry. Also hands back the entry itself, to be kept
/// until the child has inherited the descriptors: shared objects that only
/// the entry holds would otherwise close their memfds first.
pub(crate) type Encode<'a> =
    Box<dyn FnOnce() -> (std::result::Result<Vec<u8>, String>, Box<dyn Send + 'a>) + Send + 'a>;

/// What the new child is called and where it sits.
pub(crate) struct ChildSetup<'s> {
    pub(crate) name: &'s str,
    pub(crate) path: &'s [u32],
    pub(crate) daemon: bool,
}

/// Spawns a child that runs entry `entry`, and waits for its handshake.
pub(crate) fn start(
    entry: &str,
    encode: Encode<'_>,
    setup: &ChildSetup<'_>,
    cfg: &SpawnConfig,
) -> Result<Child> {
    let fail = |failure: SpawnFailure| Error::Spawn {
        entry: entry.to_owned(),
        failure,
    };
    // 1. The arguments, and the memfds they name.
    let ((encoded, _keep_until_spawned), noted) = collect_memfds(encode);
    let args = encoded.map_err(|reason| fail(SpawnFailure::Encode { reason }))?;
    let mut inherited: Vec<RawFd> = Vec::new();
    for (fd, dev, ino) in noted {
        // Only a descriptor that is still that file (a bare `Descriptor`
        // does not keep its segment open).
        if !inherited.contains(&fd) && file_id(fd) == Some((dev, ino)) {
            inherited.push(fd);
        }
    }

    // 2. The boot record and the status pipe.
    let stdout_copy = if cfg.hide_stdout_until_init {
        Some(
            rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 3)
                .map_err(|e| Error::io("fcntl(F_DUPFD_CLOEXEC)", e))?,
        )
    } else {
        None
    };
    let boot = Boot {
        version: WIRE_VERSION,
        entry: entry.to_owned(),
        name: setup.name.to_owned(),
        path: setup.path.to_vec(),
        daemon: setup.daemon,
        parent_pid: std::process::id(),
        parent_name: current::name(),
        stdout: stdout_copy.as_ref().map(AsRawFd::as_raw_fd),
        inherited: inherited.clone(),
        args,
    };
    let bytes = postcard::to_allocvec(&boot)
        .map_err(|e| {
            fail(SpawnFailure::Encode {
                reason: format!("the boot record: {e}"),
            })
        })?;
    if bytes.len() > MAX_BOOT_RECORD {
        return Err(fail(SpawnFailure::Encode {
            reason: format!(
                "the arguments encode to {} bytes, more than a spawn hands over ({MAX_BOOT_RECORD}): \
                 put large data in a shared object",
                bytes.len()
            ),
        }));
    }
    let boot_fd = rustix::fs::memfd_create("multiproc-spawn", MemfdFlags::CLOEXEC)
        .map_err(|e| Error::io("memfd_create", e))?;
    write_all(&boot_fd, &bytes)?;
    let st = rustix::fs::fstat(&boot_fd).map_err(|e| Error::io("fstat", e))?;
    let (status_r, status_w) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::io("pipe2", e))?;

    // 3. Environment and command line.
    let env_value = format!(
        "{WIRE_VERSION}:{}:{}:{}:{}:{}",
        std::process::id(),
        boot_fd.as_raw_fd(),
        st.st_dev,
        st.st_ino,
        status_w.as_raw_fd()
    );
    let envp = child_env(&env_value).ok_or_else(|| fail(SpawnFailure::NulArgument))?;
    let mut argv = Vec::with_capacity(cfg.exec_args.len() + 1);
    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("/proc/self/exe"));
    for a in std::iter::once(argv0).chain(cfg.exec_args.iter().cloned()) {
        argv.push(
            CString::new(a.into_vec())
                .map_err(|_| fail(SpawnFailure::NulArgument))?,
        );
    }

    // 4. Exactly these descriptors reach the child.
    let mut keep = inherited;
    keep.push(boot_fd.as_raw_fd());
    keep.push(status_w.as_raw_fd());
    if let Some(fd) = &stdout_copy {
        keep.push(fd.as_raw_fd());
    }
    let pid = posix_spawn(&argv, &envp, &keep, cfg.hide_stdout_until_init)
        .map_err(|e| fail(SpawnFailure::Exec(e)))?;
    drop((status_w, boot_fd, stdout_copy));

    // 5. The handshake.
    let child = Child::new(pid, status_r, setup.name.to_owned(), setup.daemon);
    child.handshake(cfg.start_timeout).map_err(fail)?;
    Ok(child)
}

fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io("write", e)),
        }
    }
    Ok(())
}

/// This process's environment, minus any [`SPAWN_ENV`], plus ours (`None`
/// if ours would hold a NUL byte).
fn child_env(value: &str) -> Option<Vec<CString>> {
    let mut env = Vec::new();
    for (k, v) in std::env::vars_os() {
        if k == SPAWN_ENV {
            continue;
        }
        let mut kv = k.into_vec();
        kv.push(b'=');
        kv.extend_from_slice(&v.into_vec());
        // The environment cannot hold NUL bytes; skip one that does.
        if let Ok(c) = CString::new(kv) {
            env.push(c);
        }
    }
    env.push(CString::new(format!("{SPAWN_ENV}={value}")).ok()?);
    Some(env)
}
