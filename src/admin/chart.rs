//! Small inline SVG charts for the stats page: one pixel a second over the sampler's
//! five minutes, newest on the right. Plain SVG in the page: nothing is fetched.

use super::rates::SECONDS;
use std::fmt::Write;

const WIDTH: usize = SECONDS;
const HEIGHT: u32 = 36;
/// Room above and below the line, so a flat line at zero or at the top stays visible.
const PAD: f64 = 2.0;

/// A line through `(age_s, value)` points (a `None` value breaks it), scaled to the
/// highest value. `metric` names it for styling and tests; `label` is its tooltip.
pub fn line(
    out: &mut String,
    metric: &str,
    label: &str,
    points: impl Iterator<Item = (u32, Option<f64>)> + Clone,
) {
    let top = points.clone().filter_map(|(_, v)| v).fold(0.0f64, f64::max);
    let scale = if top > 0.0 {
        (f64::from(HEIGHT) - 2.0 * PAD) / top
    } else {
        0.0
    };
    let mut d = String::new();
    let (mut n, mut pen_down) = (0usize, false);
    for (age_s, v) in points {
        let Some(v) = v else {
            pen_down = false;
            continue;
        };
        let x = WIDTH.saturating_sub(age_s as usize);
        let y = f64::from(HEIGHT) - PAD - v * scale;
        // A segment's first point also gets a line of no length: with round caps it
        // shows as a dot, so a second alone between gaps is still seen.
        let _ = if pen_down {
            write!(d, " L{x} {y:.1}")
        } else {
            write!(d, " M{x} {y:.1}l0 0")
        };
        pen_down = true;
        n += 1;
    }
    let _ = write!(
        out,
        "<svg class=\"chart\" data-metric=\"{metric}\" data-points=\"{n}\" data-top=\"{top}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"{label}\"><title>{label}</title>\
         <line x1=\"0\" y1=\"{base}\" x2=\"{WIDTH}\" y2=\"{base}\" class=\"axis\"/>",
        base = f64::from(HEIGHT) - PAD,
    );
    if n > 0 {
        let _ = write!(out, "<path d=\"{}\"/>", d.trim_start());
    }
    out.push_str("</svg>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_point_a_second_broken_where_there_is_no_value() {
        let mut out = String::new();
        let points = [(3, Some(1.0)), (2, Some(2.0)), (1, None), (0, Some(4.0))];
        line(&mut out, "p99", "p99", points.into_iter());
        assert!(out.contains("data-points=\"3\""), "{out}");
        assert!(
            out.contains("d=\"M297 26.0l0 0 L298 18.0 M300 2.0l0 0\""),
            "{out}"
        );
    }

    #[test]
    fn nothing_to_draw_draws_the_axis_alone() {
        let mut out = String::new();
        line(&mut out, "sessions", "none", std::iter::empty());
        assert!(out.contains("data-points=\"0\""));
        assert!(!out.contains("<path"));
    }
}
