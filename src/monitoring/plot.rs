//! A quantity as a picture: paired bars per bin (reference grey, window blue), drawn as SVG on
//! the server so the page needs no JavaScript, with a `<title>` on every bar for its figures.

use std::fmt::Write;

use handlebars::html_escape as escape;

use super::report::QuantityReport;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 80.0;
const BOTTOM: f64 = 78.0;
const TOP: f64 = 14.0;

/// The bars of one quantity, scaled to the larger share of either side.
pub fn bars(q: &QuantityReport) -> String {
    let against = q.against.label();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="plot" overflow="visible" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}: {against} (grey, {} values) and this window (blue, {} values)">"#,
        escape(q.title),
        q.reference_n,
        q.live_n
    );
    let plot_w = WIDTH - LEFT - 8.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let top = q.bins.iter().flat_map(|b| [b.reference_share, b.live_share]).fold(0.0f64, f64::max).max(0.05);
    // The share axis: a line at 0, half and the top.
    for frac in [0.0, 0.5, 1.0] {
        let y = TOP + plot_h * (1.0 - frac);
        let _ = write!(svg, r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ccc"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{:.0} %</text>"##, WIDTH - 8.0, LEFT - 4.0, y + 3.0, top * frac * 100.0);
    }
    let n = q.bins.len().max(1) as f64;
    let slot = plot_w / n;
    let bar = (slot * 0.38).min(28.0);
    for (i, b) in q.bins.iter().enumerate() {
        let x0 = LEFT + slot * i as f64 + slot / 2.0;
        for (share, count, dx, colour, side) in [(b.reference_share, b.reference, -bar, "#9e9e9e", against), (b.live_share, b.live, 0.0, "#1565c0", "this window")] {
            let h = plot_h * share / top;
            let _ = write!(
                svg,
                r#"<rect class="{}" x="{:.1}" y="{:.1}" width="{bar:.1}" height="{h:.1}" fill="{colour}"><title>{}: {side} {:.1} % ({count})</title></rect>"#,
                if dx < 0.0 { "reference" } else { "live" },
                x0 + dx,
                TOP + plot_h - h,
                escape(&b.label),
                share * 100.0
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{x0:.1}" y="{:.1}" font-size="10" text-anchor="end" transform="rotate(-30 {x0:.1} {:.1})">{}</text>"#,
            TOP + plot_h + 12.0,
            TOP + plot_h + 12.0,
            escape(&b.label)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::{drift::Bin, report::Against};

    #[test]
    fn each_bin_has_a_reference_and_a_live_bar_and_labels_are_escaped() {
        let bin = |label: &str, r, l| Bin { label: label.into(), reference: r, live: l, reference_share: r as f64 / 4.0, live_share: l as f64 / 2.0 };
        let q = QuantityReport {
            name: "vendor",
            title: "Scanner vendor (T1c)",
            against: Against::Baseline,
            bins: vec![bin("siemens", 3, 1), bin("<other>", 1, 1)],
            reference_n: 4,
            live_n: 2,
            psi: Some(0.2),
            ks: None,
            outside_training_range: None,
            status: "too-few",
        };
        let svg = bars(&q);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches(r#"<rect class="reference""#).count(), 2);
        assert_eq!(svg.matches(r#"<rect class="live""#).count(), 2);
        assert!(svg.contains("&lt;other&gt;") && !svg.contains("<other>"), "{svg}");
        assert!(svg.contains("siemens: baseline period 75.0 % (3)"), "{svg}");
    }
}
