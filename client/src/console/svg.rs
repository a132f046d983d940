//! The console's pictures as inline SVG (no chart library, no script): the
//! federation (every known network and link, own and reported by peers), per-day counts as bars, and a message's
//! route. Each has a `<title>` and `role="img"` for screen readers, and the
//! same facts are always in a table beside it.

use std::fmt::Write;

use super::html::esc;

/// One link between two networks, as drawn.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Edge {
    /// The network whose relay reported the link (or this relay's network).
    pub from: String,
    /// The network at the other end.
    pub to: String,
    /// `connected`, `connecting`, `backoff`, `paused`, … or `unknown`.
    pub state: String,
    /// Messages queued on it (by `from`'s relay).
    pub depth: u64,
    /// Age of the oldest, text.
    pub oldest: String,
    /// Where the facts come from: empty for this relay's own links, else
    /// e.g. "as reported by GFP, 3 s ago".
    pub source: String,
}

fn state_colour(state: &str) -> &'static str {
    match state {
        "connected" => "#116329",
        "paused" | "unknown" => "#57606a",
        "connecting" => "#9a6700",
        _ => "#b00020",
    }
}

/// Every known network on an ellipse (`own` first, at the top, filled),
/// one line per known link, coloured by its state (dashed unless
/// connected; grey and dashed when unknown) and labelled with state, queue
/// depth, oldest age and, for links other relays reported, by whom and
/// how long ago. A network no report mentions stands alone.
pub(crate) fn federation(title: &str, own: &str, networks: &[String], edges: &[Edge]) -> String {
    let (w, h) = (1000.0f64, 560.0f64);
    let (cx, cy, rx, ry) = (w / 2.0, h / 2.0, 390.0, 220.0);
    let mut s = format!(
        "<svg role=\"img\" aria-labelledby=\"fedt\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" \
         xmlns=\"http://www.w3.org/2000/svg\" font-family=\"sans-serif\" font-size=\"12\">\
         <title id=\"fedt\">{}</title>",
        esc(title)
    );
    let n = networks.len().max(1) as f64;
    let pos = |net: &str| {
        let i = networks.iter().position(|x| x == net).unwrap_or(0) as f64;
        let a = std::f64::consts::TAU * i / n - std::f64::consts::FRAC_PI_2;
        (cx + rx * a.cos(), cy + ry * a.sin())
    };
    for e in edges {
        let ((x1, y1), (x2, y2)) = (pos(&e.from), pos(&e.to));
        let col = state_colour(&e.state);
        let dash = if e.state == "connected" { "" } else { " stroke-dasharray=\"8 5\"" };
        let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
        let _ = write!(
            s,
            "<g class=\"link\" data-from=\"{}\" data-to=\"{}\" data-state=\"{}\">\
             <line x1=\"{x1:.0}\" y1=\"{y1:.0}\" x2=\"{x2:.0}\" y2=\"{y2:.0}\" stroke=\"{col}\" stroke-width=\"4\"{dash}/>\
             <text x=\"{mx:.0}\" y=\"{:.0}\" text-anchor=\"middle\" fill=\"{col}\" stroke=\"#fff\" stroke-width=\"3\" \
             paint-order=\"stroke\">{} · {} queued · {}</text>",
            esc(&e.from),
            esc(&e.to),
            esc(&e.state),
            my - 4.0,
            esc(&e.state),
            e.depth,
            esc(&e.oldest)
        );
        if !e.source.is_empty() {
            let _ = write!(
                s,
                "<text x=\"{mx:.0}\" y=\"{:.0}\" text-anchor=\"middle\" fill=\"#57606a\" stroke=\"#fff\" \
                 stroke-width=\"3\" paint-order=\"stroke\" font-size=\"11\">{}</text>",
                my + 10.0,
                esc(&e.source)
            );
        }
        s.push_str("</g>");
    }
    for net in networks {
        let (x, y) = pos(net);
        let (fill, text) = if net == own { ("#0d2740", "#fff") } else { ("#fff", "#0d2740") };
        let _ = write!(
            s,
            "<g class=\"network\" data-network=\"{0}\"><rect x=\"{1:.0}\" y=\"{2:.0}\" width=\"120\" height=\"36\" rx=\"6\" \
             fill=\"{fill}\" stroke=\"#0d2740\" stroke-width=\"2\"/><text x=\"{x:.0}\" y=\"{3:.0}\" text-anchor=\"middle\" \
             font-weight=\"bold\" fill=\"{text}\">{4}</text></g>",
            esc(net),
            x - 60.0,
            y - 18.0,
            y + 5.0,
            esc(&net.to_uppercase())
        );
    }
    s.push_str("</svg>");
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
