//! The processes serving this host's traffic, as the admin port reports them
//! (`/_haproxy_getpids`): this one, and during a hot upgrade the other one too — the
//! process being replaced, until it exits, or the one replacing it, once it serves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Debug)]
pub struct Processes {
    /// Ascending; this process's own id always among them.
    pids: Mutex<Vec<u32>>,
    /// This process handed its sockets to a successor that is serving: it drains, but
    /// the host does not (its health check stays 200).
    handed_over: AtomicBool,
}

impl Default for Processes {
    fn default() -> Self {
        Processes {
            pids: Mutex::new(vec![std::process::id()]),
            handed_over: AtomicBool::new(false),
        }
    }
}

impl Processes {
    /// The processes serving, those that have exited since left out (a process this
    /// one heard of from its predecessor, still draining an earlier upgrade, has no
    /// channel to this one that would say when it exits).
    pub fn pids(&self) -> Vec<u32> {
        let me = std::process::id();
        let mut pids = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        pids.retain(|&p| p == me || alive(p));
        pids.clone()
    }

    pub fn add(&self, pid: u32) {
        let mut pids = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(at) = pids.binary_search(&pid) {
            pids.insert(at, pid);
        }
    }

    pub fn remove(&self, pid: u32) {
        if pid != std::process::id() {
            self.pids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|&p| p != pid);
        }
    }

    pub fn hand_over(&self) {
        self.handed_over.store(true, Ordering::Relaxed);
    }

    pub fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Relaxed)
    }
}

/// Whether process `pid` runs (not exited, not a zombie awaiting its parent).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S …`: the state follows the last parenthesis (comm may hold any).
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_pid_stays_and_others_come_and_go_in_order() {
        let p = Processes::default();
        let me = std::process::id();
        // Processes that run: this test's parent and a child of its own.
        let parent = std::os::unix::process::parent_id();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let other = child.id();
        p.add(other);
        p.add(parent);
        p.add(parent);
        let mut expect = vec![parent, me, other];
        expect.sort_unstable();
        assert_eq!(p.pids(), expect);
        p.remove(parent);
        p.remove(me);
        let mut expect = vec![me, other];
        expect.sort_unstable();
        assert_eq!(p.pids(), expect);
        // One that exits leaves the list, a zombie as soon as it is one.
        child.kill().unwrap();
        let mut waited = 0;
        while p.pids().contains(&other) && waited < 2000 {
            std::thread::sleep(std::time::Duration::from_millis(5));
            waited += 1;
        }
        assert_eq!(p.pids(), [me]);
        let _ = child.wait();
        // A pid no process has.
        p.add(u32::MAX);
        assert_eq!(p.pids(), [me]);
    }
}
