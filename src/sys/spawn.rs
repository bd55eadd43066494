//! `posix_spawn` of this program (`/proc/self/exe`) with exactly the
//! descriptors a spawned child must inherit: the FFI behind
//! `process/spawn`.

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use rustix::process::Pid;

/// `posix_spawn` of `/proc/self/exe`: `keep` descriptors are inherited at
/// their numbers (`dup2(fd, fd)` clears close-on-exec in the child), the
/// signal mask is emptied and SIGPIPE reset to default (as
/// `std::process::Command` does), and with `null_stdout` descriptor 1 is
/// `/dev/null`.
pub(crate) fn posix_spawn(
    argv: &[CString],
    envp: &[CString],
    keep: &[RawFd],
    null_stdout: bool,
) -> std::io::Result<Pid> {
    fn check(r: libc::c_int) -> std::io::Result<()> {
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(r))
        }
    }
    /// Destroys the file actions and attributes however we leave.
    struct Guard {
        fa: *mut libc::posix_spawn_file_actions_t,
        attr: *mut libc::posix_spawnattr_t,
    }
    impl Drop for Guard {
        fn drop(&mut self) {
            // SAFETY: both were initialised before the guard was made, and
            // are destroyed once, here.
            unsafe {
                libc::posix_spawn_file_actions_destroy(self.fa);
                libc::posix_spawnattr_destroy(self.attr);
            }
        }
    }

    let mut argv_p: Vec<*mut libc::c_char> = argv.iter().map(|s| s.as_ptr().cast_mut()).collect();
    argv_p.push(std::ptr::null_mut());
    let mut envp_p: Vec<*mut libc::c_char> = envp.iter().map(|s| s.as_ptr().cast_mut()).collect();
    envp_p.push(std::ptr::null_mut());

    let mut fa = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
    let mut attr = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
    // SAFETY: the file actions and attributes are initialised before use
    // and destroyed by the guard; they stay in place (never moved) while
    // initialised. argv and envp are NUL-terminated arrays of pointers to
    // NUL-terminated strings that outlive the call. The child is a
    // vfork-style clone that only applies the actions and execs.
    unsafe {
        check(libc::posix_spawn_file_actions_init(fa.as_mut_ptr()))?;
        if let Err(e) = check(libc::posix_spawnattr_init(attr.as_mut_ptr())) {
            libc::posix_spawn_file_actions_destroy(fa.as_mut_ptr());
            return Err(e);
        }
        let g = Guard {
            fa: fa.as_mut_ptr(),
            attr: attr.as_mut_ptr(),
        };
        for &fd in keep {
            check(libc::posix_spawn_file_actions_adddup2(g.fa, fd, fd))?;
        }
        if null_stdout {
            check(libc::posix_spawn_file_actions_addopen(
                g.fa,
                1,
                c"/dev/null".as_ptr(),
                libc::O_WRONLY,
                0,
            ))?;
        }
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        check(libc::posix_spawnattr_setsigmask(g.attr, set.as_ptr()))?;
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        check(libc::posix_spawnattr_setsigdefault(g.attr, set.as_ptr()))?;
        check(libc::posix_spawnattr_setflags(
            g.attr,
            (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
        ))?;
        let mut pid: libc::pid_t = 0;
        check(libc::posix_spawn(
            &mut pid,
            c"/proc/self/exe".as_ptr(),
            g.fa,
            g.attr,
            argv_p.as_ptr(),
            envp_p.as_ptr(),
        ))?;
        Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("posix_spawn returned pid 0"))
    }
}
