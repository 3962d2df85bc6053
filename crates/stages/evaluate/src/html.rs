//! The self-contained HTML report: one file, no scripts, no external resources — figures are
//! inline SVG, overlays are embedded PNGs — so it opens anywhere (an artifact, a droplet, e-mail).

use std::fmt::Write as _;

use base64::Engine as _;

use crate::baseline::Diff;
use crate::report::{self, Evaluation, Figure, ImageMetrics, KEY_FEATURES, Totals};

/// The report's style sheet.
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.figs{display:flex;flex-wrap:wrap;gap:12px}.ov{display:inline-block;margin:6px;text-align:center;font-size:12px}.ov img{max-width:380px;image-rendering:pixelated;border:1px solid #999}.flag{color:#b00;font-weight:bold}.muted{color:#666}";

/// HTML-escapes text.
///
/// ```
/// assert_eq!(cellops_evaluate::html::escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
/// ```
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A histogram of `values` as an inline SVG (`bins` equal-width bins between min and max).
pub fn histogram_svg(title: &str, values: &[f64], bins: usize) -> String {
    let (w, h, pad) = (360.0, 200.0, 30.0);
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\"><title>{}</title>",
        escape(title)
    );
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"14\" font-size=\"12\" text-anchor=\"middle\">{} (n = {})</text>",
        w / 2.0,
        escape(title),
        finite.len()
    );
    if finite.is_empty() || bins == 0 {
        svg.push_str("</svg>");
        return svg;
    }
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut counts = vec![0usize; bins];
    for v in &finite {
        let b = (((v - lo) / span) * bins as f64).floor() as usize;
        counts[b.min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let (x0, y0, pw, ph) = (pad, h - pad, w - 2.0 * pad, h - 2.0 * pad - 10.0);
    let bw = pw / bins as f64;
    for (i, &c) in counts.iter().enumerate() {
        let bh = ph * c as f64 / top;
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#4c78a8\"><title>{c}</title></rect>",
            x0 + i as f64 * bw,
            y0 - bh,
            (bw - 1.0).max(0.5),
            bh
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{}\" y2=\"{y0}\" stroke=\"#333\"/><text x=\"{x0}\" y=\"{}\" font-size=\"10\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text><text x=\"4\" y=\"{}\" font-size=\"10\">{}</text></svg>",
        x0 + pw,
        y0 + 14.0,
        short(lo),
        x0 + pw,
        y0 + 14.0,
        short(hi),
        y0 - ph + 4.0,
        top
    );
    svg
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// What goes into the HTML report besides the evaluation.
#[derive(Debug, Default)]
pub struct Extras<'a> {
    /// Per-feature values over all nuclei (for the histograms).
    pub distributions: Vec<(&'a str, Vec<f64>)>,
    /// Overlays to embed: image id and PNG bytes.
    pub overlays: Vec<(String, Vec<u8>)>,
    /// The model's learning curve (SVG), when evaluating a bundle that has one.
    pub learning_curve: Option<String>,
    /// The baseline comparison.
    pub diff: Option<&'a Diff>,
}

fn figure(f: Figure) -> String {
    match f {
        Figure::Count(n) => n.to_string(),
        Figure::Value(v) => num(v),
    }
}

/// The document's head, title, source line and summary table.
fn head(h: &mut String, e: &Evaluation) {
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>CellOps evaluation: {}</title><style>{}</style></head><body>",
        escape(&e.params.description),
        STYLE
    );
    let _ = write!(
        h,
        "<h1>Evaluation: {}</h1><p class=\"muted\">Parameters <code>{}</code> (sha256 {}…, {}) · segmentation from {} <code>{}</code>{} · cellops {}</p>",
        escape(&e.params.description),
        escape(&e.params.file),
        escape(e.params.sha256.get(..12).unwrap_or(&e.params.sha256)),
        escape(&e.params.pixel_line()),
        escape(&e.source.kind),
        escape(&e.source.path),
        e.source
            .bundle_id
            .as_ref()
            .map(|id| format!(" (bundle {})", escape(id)))
            .unwrap_or_default(),
        escape(&e.tool_version)
    );
    let (names, figures) = report::totals_row(e);
    h.push_str("<h2 id=\"summary\">Summary</h2><table><tr>");
    for n in names {
        let _ = write!(h, "<th>{n}</th>");
    }
    h.push_str("</tr><tr>");
    for f in figures {
        let _ = write!(h, "<td>{}</td>", figure(f));
    }
    h.push_str("</tr></table>");
}

/// Image, size and DAB class counts.
fn classes(h: &mut String, t: &Totals) {
    let counts = |h: &mut String, title: &str, m: &std::collections::BTreeMap<String, usize>| {
        if !m.is_empty() {
            let _ = write!(h, "<p><b>{}:</b> ", escape(title));
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{} {v}", escape(k))).collect();
            h.push_str(&parts.join(" · "));
            h.push_str("</p>");
        }
    };
    counts(h, "Image classes", &t.image_classes);
    counts(h, "Size classes", &t.size_classes);
    if let Some(d) = t.dab_classes {
        let _ = write!(
            h,
            "<p><b>DAB classes:</b> negative {} · 1+ {} · 2+ {} · 3+ {}</p>",
            d[0], d[1], d[2], d[3]
        );
    }
}

/// The comparison with the baseline.
fn baseline(h: &mut String, d: &Diff) {
    h.push_str("<h2 id=\"baseline\">Compared with the baseline</h2><table><tr><th></th><th>before</th><th>after</th><th>change</th></tr>");
    for r in d.totals.iter().chain(&d.features).chain(&d.metrics) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td></tr>",
            escape(&r.name),
            r.before.map_or("–".into(), num),
            r.after.map_or("–".into(), num),
            if r.flagged { " class=\"flag\"" } else { "" },
            r.delta.map_or("–".into(), |v| format!(
                "{}{}",
                if v >= 0.0 { "+" } else { "" },
                num(v)
            ))
        );
    }
    h.push_str("</table>");
}

/// The pooled scores against ground truth at every IoU threshold.
fn scores(h: &mut String, m: &ImageMetrics) {
    h.push_str("<h2 id=\"metrics\">Segmentation against ground truth (pooled)</h2><table><tr><th>IoU τ</th><th>TP</th><th>FP</th><th>FN</th><th>precision</th><th>recall</th><th>F1</th><th>accuracy</th><th>mean matched IoU</th><th>PQ</th></tr>");
    for a in &m.matching {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            a.thresh,
            a.tp,
            a.fp,
            a.fn_,
            num(a.precision),
            num(a.recall),
            num(a.f1),
            num(a.accuracy),
            num(a.mean_matched_score),
            num(a.panoptic_quality)
        );
    }
    let _ = write!(
        h,
        "</table><p>Dice {} · IoU {} · AJI {}</p>",
        num(m.dice),
        num(m.iou),
        num(m.aji)
    );
}

/// Histograms of the distributions and the key features' statistics.
fn distributions(h: &mut String, t: &Totals, distributions: &[(&str, Vec<f64>)]) {
    h.push_str("<h2 id=\"distributions\">Measurement distributions</h2><div class=\"figs\">");
    for (name, values) in distributions {
        h.push_str(&histogram_svg(name, values, 30));
    }
    h.push_str("</div>");
    h.push_str("<table><tr><th>feature</th><th>mean</th><th>median</th><th>std</th></tr>");
    for k in KEY_FEATURES {
        if let Some(s) = t.features.get(k) {
            let _ = write!(
                h,
                "<tr><td>{k}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                num(s.mean),
                num(s.median),
                num(s.std)
            );
        }
    }
    h.push_str("</table>");
}

/// The embedded overlays (of slides: the overview under the density heat map).
fn overlays(h: &mut String, e: &Evaluation, overlays: &[(String, Vec<u8>)]) {
    if e.images.iter().any(|r| r.slide.is_some()) {
        slides(h, e, overlays);
        return;
    }
    let _ = write!(
        h,
        "<h2 id=\"overlays\">Overlays</h2><p class=\"muted\">Contours coloured by class{}; ground truth in white. {} of {} images shown; all are in <code>overlays/</code>.</p>",
        if e.totals.dab_classes.is_some() {
            " (blue negative, yellow 1+, orange 2+, red 3+)"
        } else {
            ""
        },
        overlays.len(),
        e.images.len()
    );
    for (id, png) in overlays {
        let _ = write!(
            h,
            "<figure class=\"ov\"><img alt=\"overlay of {0}\" src=\"data:image/png;base64,{1}\"><figcaption>{0}</figcaption></figure>",
            escape(id),
            base64::engine::general_purpose::STANDARD.encode(png)
        );
    }
}

/// Each slide at low resolution under its nuclei's density, with what was measured.
fn slides(h: &mut String, e: &Evaluation, overlays: &[(String, Vec<u8>)]) {
    h.push_str(
        "<h2 id=\"overlays\">Slides</h2><p class=\"muted\">Each slide at low resolution under the density of its nuclei (cells of 50 µm, from dark purple for few to yellow for the most; none: no colour).</p>",
    );
    for (id, png) in overlays {
        let Some(s) = e
            .images
            .iter()
            .find(|r| &r.summary.image == id)
            .and_then(|r| r.slide.as_ref())
        else {
            continue;
        };
        let [x, y, w, ht] = s.region;
        let _ = write!(
            h,
            "<figure class=\"ov\"><img alt=\"density over {0}\" src=\"data:image/png;base64,{1}\"><figcaption>{0}: {2} of {3}×{4} px, {5}×{6} at {7},{8}; {9} tiles; {10:.2} mm²; at most {11:.0} nuclei / mm²</figcaption></figure>",
            escape(id),
            base64::engine::general_purpose::STANDARD.encode(png),
            escape(&s.area),
            s.size[0],
            s.size[1],
            w,
            ht,
            x,
            y,
            s.tiles,
            s.area_mm2,
            s.peak_density_per_mm2,
        );
    }
}

/// One row per image.
fn images(h: &mut String, e: &Evaluation) {
    h.push_str("<h2 id=\"images\">Images</h2><table><tr><th>image</th><th>nuclei</th><th>density / mm²</th><th>class</th><th>tags</th>");
    let ihc = e.totals.positive_percent.is_some();
    if ihc {
        h.push_str("<th>positive %</th><th>H-score</th>");
    }
    if e.metrics.is_some() {
        h.push_str("<th>F1@0.5</th><th>Dice</th>");
    }
    h.push_str("</tr>");
    for r in &e.images {
        let s = &r.summary;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            escape(&s.image),
            s.count,
            num(s.density_per_mm2),
            escape(s.class.as_deref().unwrap_or("")),
            escape(&s.tags.join(", "))
        );
        if ihc {
            let _ = write!(
                h,
                "<td>{}</td><td>{}</td>",
                s.positive_percent.map_or("–".into(), num),
                s.h_score.map_or("–".into(), num)
            );
        }
        if e.metrics.is_some() {
            let m = r.metrics.as_ref();
            let _ = write!(
                h,
                "<td>{}</td><td>{}</td>",
                m.and_then(|m| m.at(0.5)).map_or("–".into(), |a| num(a.f1)),
                m.map_or("–".into(), |m| num(m.dice))
            );
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

/// The end of every report; [`add_section`] inserts before it.
const END: &str = "</body></html>\n";

/// `page` (a report from [`report`]) with a section added at its end: a heading with `id`, then
/// `body`, HTML the caller built (escape its text with [`escape`]). `None` when `page` is not a
/// report. Later stages use it to put what they measured beside the evaluation (the pipeline's
/// serve check adds the service's latency).
///
/// ```
/// use cellops_evaluate::html::add_section;
/// let page = "<html><body><h1>r</h1></body></html>\n";
/// let added = add_section(page, "serve", "Serve check", "<p>12 ms</p>").unwrap();
/// assert_eq!(added, "<html><body><h1>r</h1><h2 id=\"serve\">Serve check</h2><p>12 ms</p></body></html>\n");
/// assert_eq!(add_section("not a report", "x", "X", ""), None);
/// ```
pub fn add_section(page: &str, id: &str, heading: &str, body: &str) -> Option<String> {
    let start = page.strip_suffix(END)?;
    Some(format!(
        "{start}<h2 id=\"{}\">{}</h2>{body}{END}",
        escape(id),
        escape(heading)
    ))
}

/// The report as one HTML document.
pub fn report(e: &Evaluation, x: &Extras<'_>) -> String {
    let mut h = String::new();
    head(&mut h, e);
    classes(&mut h, &e.totals);
    if let Some(d) = x.diff {
        baseline(&mut h, d);
    }
    if let Some(m) = &e.metrics {
        scores(&mut h, m);
    }
    if !x.distributions.is_empty() {
        distributions(&mut h, &e.totals, &x.distributions);
    }
    if let Some(svg) = &x.learning_curve {
        h.push_str("<h2 id=\"training\">Model learning curve</h2>");
        h.push_str(svg);
    }
    if !x.overlays.is_empty() {
        overlays(&mut h, e, &x.overlays);
    }
    images(&mut h, e);
    h.push_str(END);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_every_value() {
        let svg = histogram_svg("a<b", &[1.0, 2.0, 2.0, 3.0, f64::NAN], 3);
        assert!(svg.contains("a&lt;b (n = 4)"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("<title>2</title>"), "{svg}");
    }
}
