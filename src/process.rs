//! Child processes that never outlive hwrun: a killed `hwrun` (even `kill -9`, which runs no
//! cleanup) must not leave a worker or a student's training script computing into a staging
//! directory nobody will commit.

use std::process::{Child, Command};

/// Makes the child receive SIGKILL when the thread that spawns it ends, as happens when hwrun
/// dies. The signal is set between fork and exec, so it covers the child from its first
/// instruction, and it survives `exec` (a `sh -c` that execs its last command passes it on).
pub fn dies_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure only calls prctl, which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                Ok(())
            });
        }
    }
}

/// Starts the child as the leader of a new process group, so that [`kill_group`] reaches
/// everything it starts in turn (a shell's pipeline, a launcher's workers).
pub fn in_own_group(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
}

/// Kills the process group led by `child` (see [`in_own_group`]) and reaps the child.
pub fn kill_group(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill takes a process-group id and a signal number, no pointers.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
