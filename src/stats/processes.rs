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
    pub fn pids(&self) -> Vec<u32> {
        self.pids.lock().unwrap_or_else(|e| e.into_inner()).clone()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_pid_stays_and_others_come_and_go_in_order() {
        let p = Processes::default();
        let me = std::process::id();
        p.add(u32::MAX);
        p.add(1);
        p.add(1);
        assert_eq!(p.pids(), [1, me, u32::MAX]);
        p.remove(1);
        p.remove(me);
        assert_eq!(p.pids(), [me, u32::MAX]);
    }
}
