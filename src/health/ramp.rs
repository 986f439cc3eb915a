//! Slow start: after a backend comes UP, its weight ramps up over `slowstart_ms` in
//! [`STEPS`] steps. The control thread rebuilds the service's selector (its Maglev
//! table) at each step; a shard never builds one. Pure.

/// A ramp's steps: a quarter of the weight, a half, three quarters, all.
pub const STEPS: u32 = 4;

/// The step (1 to [`STEPS`]) at `now_ms` of a backend that came up at `up_since_ms`
/// (0: never went down, so never ramps) with a ramp of `slowstart_ms`.
pub fn step(now_ms: u64, up_since_ms: u64, slowstart_ms: u64) -> u32 {
    if up_since_ms == 0 || slowstart_ms == 0 {
        return STEPS;
    }
    let elapsed = now_ms.saturating_sub(up_since_ms);
    if elapsed >= slowstart_ms {
        return STEPS;
    }
    1 + (elapsed * u64::from(STEPS) / slowstart_ms) as u32
}

/// When the step after the one at `now_ms` begins, while ramping.
pub fn next_step_ms(now_ms: u64, up_since_ms: u64, slowstart_ms: u64) -> Option<u64> {
    let s = step(now_ms, up_since_ms, slowstart_ms);
    (s < STEPS).then(|| up_since_ms + slowstart_ms * u64::from(s) / u64::from(STEPS))
}

/// The weights of a service whose backends are at `steps`: while one ramps, every
/// weight is scaled by [`STEPS`] and the ramping ones take their step's share, so the
/// others keep their proportions. None when nothing ramps (the configured weights).
pub fn weights(configured: &[u32], steps: &[u32]) -> Option<Vec<u32>> {
    if steps.iter().all(|&s| s >= STEPS) {
        return None;
    }
    Some(
        configured
            .iter()
            .zip(steps)
            .map(|(&w, &s)| (w.saturating_mul(s.min(STEPS))).max(1))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_climbs_in_quarters_and_ends_at_the_full_weight() {
        assert_eq!(step(5_000, 0, 10_000), STEPS, "never down: no ramp");
        assert_eq!(step(5_000, 1_000, 0), STEPS, "no slow start");
        let steps: Vec<u32> = [1_000, 3_499, 3_500, 6_000, 8_500, 10_999, 11_000]
            .iter()
            .map(|&t| step(t, 1_000, 10_000))
            .collect();
        assert_eq!(steps, [1, 1, 2, 3, 4, 4, 4]);
        assert_eq!(next_step_ms(1_000, 1_000, 10_000), Some(3_500));
        assert_eq!(next_step_ms(9_000, 1_000, 10_000), None);
    }

    #[test]
    fn others_keep_their_proportions_while_one_ramps() {
        assert_eq!(weights(&[1, 1, 1], &[4, 4, 4]), None);
        assert_eq!(weights(&[1, 1, 1], &[4, 1, 4]), Some(vec![4, 1, 4]));
        assert_eq!(weights(&[3, 1], &[2, 4]), Some(vec![6, 4]));
    }
}
