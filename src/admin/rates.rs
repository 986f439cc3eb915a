//! Connection rates (per second) for the stats pages: a sampler thread reads the totals
//! once a second and keeps the last second's differences.

use crate::snapshot::Published;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connections in the last second: by service name, and by `service/backend address`.
#[derive(Debug, Default)]
pub struct Rates {
    last: Mutex<(HashMap<String, u64>, HashMap<String, u64>)>,
}

impl Rates {
    pub fn get(&self, key: &str) -> u64 {
        self.last
            .lock()
            .map(|l| l.1.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

pub fn backend_key(service: &str, addr: std::net::SocketAddr) -> String {
    format!("{service}/{addr}")
}

/// Start the once-a-second sampler.
pub fn spawn(published: Arc<Published>) -> std::io::Result<Arc<Rates>> {
    let rates = Arc::new(Rates::default());
    let r = Arc::clone(&rates);
    std::thread::Builder::new()
        .name("sluice-rates".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let snap = published.load();
            let mut totals = HashMap::new();
            for svc in &snap.services {
                let name = &svc.config.name;
                totals.insert(name.clone(), svc.counters.sum(|c| c.accepted.get()));
                for b in svc.backends.iter() {
                    totals.insert(
                        backend_key(name, b.addr),
                        b.counters.sum(|c| c.connections.get()),
                    );
                }
            }
            let Ok(mut last) = r.last.lock() else { return };
            let rates = totals
                .iter()
                .map(|(k, &v)| {
                    (
                        k.clone(),
                        v.saturating_sub(last.0.get(k).copied().unwrap_or(v)),
                    )
                })
                .collect();
            *last = (totals, rates);
        })?;
    Ok(rates)
}
