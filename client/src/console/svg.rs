//! The console's pictures as inline SVG (no chart library, no script): the
//! federation seen from one relay, per-day counts as bars, and a message's
//! route. Each has a `<title>` and `role="img"` for screen readers, and the
//! same facts are always in a table beside it.

use std::fmt::Write;

use super::html::esc;

/// One link of the relay, as drawn.
pub(crate) struct Link<'a> {
    /// Peer name.
    pub name: &'a str,
    /// Networks it serves.
    pub networks: String,
    /// `connected`, `connecting`, `backoff`, `paused`, …
    pub state: &'a str,
    /// Messages queued for it.
    pub depth: u64,
    /// Age of the oldest, text.
    pub oldest: String,
}

fn state_colour(state: &str) -> &'static str {
    match state {
        "connected" => "#116329",
        "paused" => "#57606a",
        "connecting" => "#9a6700",
        _ => "#b00020",
    }
}

/// The relay in the middle, its peers around it; each line is coloured by
/// the link state and labelled with its queue depth and oldest age.
pub(crate) fn federation(title: &str, centre: &str, links: &[Link<'_>]) -> String {
    let (w, h) = (900.0f64, 460.0f64);
    let (cx, cy, r) = (w / 2.0, h / 2.0, 170.0);
    let mut s = format!(
        "<svg role=\"img\" aria-labelledby=\"fedt\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" \
         xmlns=\"http://www.w3.org/2000/svg\" font-family=\"sans-serif\" font-size=\"13\">\
         <title id=\"fedt\">{}</title>",
        esc(title)
    );
    let n = links.len().max(1) as f64;
    let mut nodes = String::new();
    for (i, l) in links.iter().enumerate() {
        let a = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
        let (x, y) = (cx + r * 1.9 * a.cos(), cy + r * a.sin());
        let col = state_colour(l.state);
        let dash = if l.state == "connected" { "" } else { " stroke-dasharray=\"8 5\"" };
        let _ = write!(
            s,
            "<line x1=\"{cx:.0}\" y1=\"{cy:.0}\" x2=\"{x:.0}\" y2=\"{y:.0}\" stroke=\"{col}\" stroke-width=\"4\"{dash}/>\
             <text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\" fill=\"{col}\">{} · {} queued · {}</text>",
            (cx + x) / 2.0,
            (cy + y) / 2.0 - 6.0,
            esc(l.state),
            l.depth,
            esc(&l.oldest)
        );
        let _ = write!(
            nodes,
            "<rect x=\"{:.0}\" y=\"{:.0}\" width=\"170\" height=\"44\" rx=\"6\" fill=\"#fff\" stroke=\"{col}\" stroke-width=\"2\"/>\
             <text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\
             <text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{}</text>",
            x - 85.0,
            y - 22.0,
            y - 4.0,
            esc(l.name),
            y + 14.0,
            esc(&l.networks)
        );
    }
    s.push_str(&nodes);
    let _ = write!(
        s,
        "<rect x=\"{:.0}\" y=\"{:.0}\" width=\"200\" height=\"48\" rx=\"8\" fill=\"#0d2740\"/>\
         <text x=\"{cx:.0}\" y=\"{:.0}\" text-anchor=\"middle\" fill=\"#fff\" font-weight=\"bold\">{}</text></svg>",
        cx - 100.0,
        cy - 24.0,
        cy + 5.0,
        esc(centre)
    );
    s
}

/// Vertical bars, one per (label, value).
pub(crate) fn bars(title: &str, data: &[(String, u64)]) -> String {
    let max = data.iter().map(|d| d.1).max().unwrap_or(0).max(1) as f64;
    let bw = 48.0;
    let w = (data.len() as f64 * (bw + 16.0) + 60.0).max(300.0);
    let (h, base) = (240.0, 200.0);
    let mut s = format!(
        "<svg role=\"img\" aria-labelledby=\"bart\" viewBox=\"0 0 {w:.0} {h}\" width=\"{w:.0}\" height=\"{h}\" \
         xmlns=\"http://www.w3.org/2000/svg\" font-family=\"sans-serif\" font-size=\"12\">\
         <title id=\"bart\">{}</title><line x1=\"30\" y1=\"{base}\" x2=\"{:.0}\" y2=\"{base}\" stroke=\"#57606a\"/>",
        esc(title),
        w - 10.0
    );
    for (i, (label, v)) in data.iter().enumerate() {
        let bh = 170.0 * *v as f64 / max;
        let x = 40.0 + i as f64 * (bw + 16.0);
        let _ = write!(
            s,
            "<rect x=\"{x:.0}\" y=\"{:.0}\" width=\"{bw}\" height=\"{bh:.0}\" fill=\"#0b5cad\"/>\
             <text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{v}</text>\
             <text x=\"{:.0}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            base - bh,
            x + bw / 2.0,
            base - bh - 4.0,
            x + bw / 2.0,
            base + 16.0,
            esc(label.get(5..).unwrap_or(label))
        );
    }
    s.push_str("</svg>");
    s
}

/// One stop of a route.
pub(crate) struct Stop {
    /// Upper line (who / where).
    pub place: String,
    /// Middle line (what happened).
    pub what: String,
    /// Lower line (when).
    pub when: String,
}

/// Stops left to right (wrapping every four), joined by arrows.
pub(crate) fn route(title: &str, stops: &[Stop]) -> String {
    let per_row = 4usize;
    let (bw, bh, gap) = (190.0, 70.0, 40.0);
    let rows = stops.len().div_ceil(per_row).max(1);
    let w = per_row as f64 * (bw + gap) + 20.0;
    let h = rows as f64 * (bh + 40.0) + 20.0;
    let mut s = format!(
        "<svg role=\"img\" aria-labelledby=\"routet\" viewBox=\"0 0 {w:.0} {h:.0}\" width=\"{w:.0}\" height=\"{h:.0}\" \
         xmlns=\"http://www.w3.org/2000/svg\" font-family=\"sans-serif\" font-size=\"12\">\
         <title id=\"routet\">{}</title>\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" \
         orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#0b5cad\"/></marker></defs>",
        esc(title)
    );
    let pos = |i: usize| {
        let (row, col) = (i / per_row, i % per_row);
        (10.0 + col as f64 * (bw + gap), 10.0 + row as f64 * (bh + 40.0))
    };
    for i in 1..stops.len() {
        let ((x0, y0), (x1, y1)) = (pos(i - 1), pos(i));
        let (ax, ay, bx, by) = if y0 == y1 {
            (x0 + bw, y0 + bh / 2.0, x1, y1 + bh / 2.0)
        } else {
            (x0 + bw / 2.0, y0 + bh, x1 + bw / 2.0, y1)
        };
        let _ = write!(
            s,
            "<line x1=\"{ax:.0}\" y1=\"{ay:.0}\" x2=\"{bx:.0}\" y2=\"{by:.0}\" stroke=\"#0b5cad\" stroke-width=\"2\" marker-end=\"url(#arrow)\"/>"
        );
    }
    for (i, st) in stops.iter().enumerate() {
        let (x, y) = pos(i);
        let _ = write!(
            s,
            "<rect x=\"{x:.0}\" y=\"{y:.0}\" width=\"{bw}\" height=\"{bh}\" rx=\"6\" fill=\"#f3f5f7\" stroke=\"#0d2740\"/>\
             <text x=\"{:.0}\" y=\"{:.0}\" font-weight=\"bold\">{}</text>\
             <text x=\"{:.0}\" y=\"{:.0}\">{}</text><text x=\"{:.0}\" y=\"{:.0}\" fill=\"#57606a\">{}</text>",
            x + 8.0,
            y + 20.0,
            esc(&clip(&st.place)),
            x + 8.0,
            y + 40.0,
            esc(&clip(&st.what)),
            x + 8.0,
            y + 60.0,
            esc(&st.when)
        );
    }
    s.push_str("</svg>");
    s
}

fn clip(s: &str) -> String {
    if s.chars().count() <= 27 { s.to_owned() } else { s.chars().take(26).chain(['…']).collect() }
}
