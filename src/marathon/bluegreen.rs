//! Blue/green deploys as Marathon-LB reads them (the apps `zdd.py` deploys): the apps
//! of one `HAPROXY_DEPLOYMENT_GROUP` become one app, `/<group>`, defined by the older
//! colour, whose tasks are the old colour's then the new colour's; while both run,
//! the old colour's tasks beyond what the deploy still needs are kept in maintenance
//! — as many as the new colour has healthy tasks, and no more than the two colours
//! run above `HAPROXY_DEPLOYMENT_TARGET_INSTANCES`, first in task-id order — so that
//! `zdd.py`, seeing them MAINT with no session left, kills them.
//!
//! Pure: the apps as parsed in, the merged apps out.

use super::apps::Task;
use serde_json::Value;

/// One app as `translate` holds it: its fields as one JSON object, and its tasks.
pub(super) type App = (Value, Vec<Task>);

/// The apps with every deployment group merged into one app (plain apps first, in
/// their order, then the groups in the order first seen).
pub(super) fn merge_groups(apps: Vec<App>) -> Vec<App> {
    let mut plain = Vec::new();
    let mut groups: Vec<(String, App)> = Vec::new();
    for (mut app, tasks) in apps {
        let Some(group) = label(&app, "HAPROXY_DEPLOYMENT_GROUP") else {
            plain.push((app, tasks));
            continue;
        };
        let id = if group.starts_with('/') {
            group.to_owned()
        } else {
            format!("/{group}")
        };
        app["id"] = Value::String(id.clone());
        match groups.iter_mut().find(|(g, _)| *g == id) {
            Some((_, prev)) => {
                let taken = std::mem::replace(prev, (Value::Null, Vec::new()));
                *prev = merge_two(taken, (app, tasks));
            }
            None => groups.push((id, (app, tasks))),
        }
    }
    plain.extend(groups.into_iter().map(|(_, app)| app));
    plain
}

/// `prev` (the group so far) and `cur` (the next app of the group, in Marathon's
/// order) as one app.
fn merge_two(prev: App, cur: App) -> App {
    // The health checks counted are those of the app read last, as Marathon-LB does.
    let checked = cur
        .0
        .get("healthChecks")
        .and_then(Value::as_array)
        .is_some_and(|h| !h.is_empty());
    // The older deploy is the old colour; on a tie (or two undated apps) `cur` is.
    let (mut old, mut new) = if started_at(&prev.0) < started_at(&cur.0) {
        (prev, cur)
    } else {
        (cur, prev)
    };
    let target = match label(&new.0, "HAPROXY_DEPLOYMENT_NEW_INSTANCES") {
        Some(n) => {
            // A hybrid deploy (`zdd.py --new-instances`): the colour scaled last is
            // the new one. Marathon-LB means this test (its code compares the label
            // text with 0, which is always true, so it also swaps for a plain deploy
            // between a kill and the next scale, briefly serving the old colour's
            // kept-out tasks again); sluice swaps for hybrid deploys only.
            if n.trim().parse::<u64>().is_ok_and(|n| n != 0)
                && last_scaling_at(&old.0) > last_scaling_at(&new.0)
            {
                std::mem::swap(&mut old, &mut new);
            }
            label(&new.0, "HAPROXY_DEPLOYMENT_TARGET_INSTANCES")
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(1)
        }
        // Apps deployed without NEW_INSTANCES (older zdd.py): a target of one.
        None => 1,
    };
    let healthy_new = if checked {
        new.1.iter().filter(|t| t.any_alive()).count() as u64
    } else {
        instances(&new.0)
    };
    let drainable = (healthy_new + instances(&old.0)).saturating_sub(target);
    let (old_app, mut tasks) = old;
    tasks.sort_by(|a, b| a.id.cmp(&b.id));
    let kept_out = tasks.len().min(healthy_new.min(drainable) as usize);
    for t in &mut tasks[..kept_out] {
        t.maint = true;
    }
    tasks.extend(new.1);
    (old_app, tasks)
}

fn label<'a>(app: &'a Value, key: &str) -> Option<&'a str> {
    app.get("labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

fn instances(app: &Value) -> u64 {
    app.get("instances").and_then(Value::as_u64).unwrap_or(0)
}

fn started_at(app: &Value) -> Option<Stamp> {
    label(app, "HAPROXY_DEPLOYMENT_STARTED_AT").and_then(Stamp::parse)
}

fn last_scaling_at(app: &Value) -> Option<Stamp> {
    app.get("versionInfo")
        .and_then(|v| v.get("lastScalingAt"))
        .and_then(Value::as_str)
        .and_then(Stamp::parse)
}

/// An ISO 8601 date and time (`2016-02-01T14:13:42.499089`, `…42.784Z`) as ordered
/// parts: date and time fields, then the fraction's digits (compared as a decimal
/// fraction). What cannot be read is `None`, before every date, as a missing one.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp([u32; 6], String);

impl Stamp {
    fn parse(s: &str) -> Option<Stamp> {
        let (whole, fraction) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        let mut fields = [0u32; 6];
        let mut parts = whole
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty());
        for f in &mut fields {
            *f = parts.next()?.parse().ok()?;
        }
        let digits: String = fraction.chars().take_while(char::is_ascii_digit).collect();
        Some(Stamp(fields, digits.trim_end_matches('0').to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::Stamp;

    #[test]
    fn stamps_order_as_times() {
        let s = |x: &str| Stamp::parse(x);
        assert!(s("2016-02-01T14:13:42.499089") < s("2016-02-01T14:57:54.371005"));
        assert!(s("2016-02-01T14:13:42.5") > s("2016-02-01T14:13:42.499089"));
        assert!(s("2016-02-01T14:13:42") < s("2016-02-01T14:13:42.1"));
        assert_eq!(s("2016-02-01T14:13:42.50"), s("2016-02-01T14:13:42.5"));
        assert!(s("2016-02-01T22:57:48.784Z") < s("2016-02-01T22:57:54.370Z"));
        assert_eq!(s("yesterday"), None);
        assert!(None < s("2016-02-01T14:13:42"));
    }
}
