//! The learning curve as a self-contained SVG (no fonts or scripts to fetch): training loss on the
//! left, validation Dice and IoU on the right, the best epoch marked.

use std::fmt::Write as _;

use cellops_unet::EpochRecord;

const PANEL_W: f64 = 360.0;
const PANEL_H: f64 = 240.0;
const MARGIN_L: f64 = 52.0;
const MARGIN_R: f64 = 16.0;
const MARGIN_T: f64 = 30.0;
const MARGIN_B: f64 = 40.0;

struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    values: Vec<f64>,
}

/// "Nice" tick values covering `lo..=hi`.
fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    (0..)
        .map(|i| first + i as f64 * step)
        .take_while(|v| *v <= hi + step * 1e-9)
        // 3 × 0.2 is 0.6000000000000001 in floating point; labels and tests want 0.6.
        .map(|v| format!("{v:.12}").parse().unwrap_or(v))
        .collect()
}

fn label(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// One panel of the figure: where it starts, its title, its lines and its y range (none: fitted to
/// the values).
struct Panel<'a> {
    x0: f64,
    title: &'a str,
    series: &'a [Series<'a>],
    range: Option<(f64, f64)>,
}

fn panel(svg: &mut String, p: &Panel<'_>, epochs: &[usize], best_epoch: usize) {
    let Panel {
        x0,
        title,
        series,
        range,
    } = *p;
    let (lo, hi) = range.unwrap_or_else(|| fitted_range(series));
    let (first, last) = (
        epochs.first().copied().unwrap_or(1) as f64,
        epochs.last().copied().unwrap_or(1) as f64,
    );
    let px = |e: f64| {
        let span = (last - first).max(1.0);
        x0 + MARGIN_L + (e - first) / span * (PANEL_W - MARGIN_L - MARGIN_R)
    };
    let py = |v: f64| MARGIN_T + (hi - v) / (hi - lo).max(1e-12) * (PANEL_H - MARGIN_T - MARGIN_B);
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="18" font-size="13" font-weight="bold">{title}</text>"#,
        x0 + MARGIN_L
    );
    for t in ticks(lo, hi, 5) {
        let y = py(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            x0 + MARGIN_L,
            x0 + PANEL_W - MARGIN_R,
            x0 + MARGIN_L - 4.0,
            y + 3.5,
            label(t)
        );
    }
    for t in ticks(first, last, 6) {
        if t.fract() != 0.0 {
            continue;
        }
        let x = px(t);
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle">{t}</text>"#,
            PANEL_H - MARGIN_B + 14.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">epoch</text>"#,
        x0 + (PANEL_W + MARGIN_L - MARGIN_R) / 2.0,
        PANEL_H - 8.0
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{:.1}" y="{MARGIN_T}" width="{:.1}" height="{:.1}" fill="none" stroke="#888"/>"##,
        x0 + MARGIN_L,
        PANEL_W - MARGIN_L - MARGIN_R,
        PANEL_H - MARGIN_T - MARGIN_B
    );
    if best_epoch > 0 {
        let x = px(best_epoch as f64);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{MARGIN_T}" y2="{:.1}" stroke="#2a9d8f" stroke-dasharray="4 3"/>"##,
            PANEL_H - MARGIN_B
        );
    }
    draw_series(svg, series, epochs, x0, px, py);
}

/// The y range of a panel fitted to its series' finite values, padded by 5% and kept at or above
/// 0; 0..1 when there are none.
fn fitted_range(series: &[Series<'_>]) -> (f64, f64) {
    let all = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if lo.is_finite() {
        let pad = ((hi - lo) * 0.05).max(1e-6);
        ((lo - pad).max(0.0), hi + pad)
    } else {
        (0.0, 1.0)
    }
}

/// Each series of the panel at `x0` as a line with dots at its finite values, and its name in the
/// legend; `px` and `py` map an epoch and a value to the panel's coordinates.
fn draw_series(
    svg: &mut String,
    series: &[Series<'_>],
    epochs: &[usize],
    x0: f64,
    px: impl Fn(f64) -> f64,
    py: impl Fn(f64) -> f64,
) {
    for (k, s) in series.iter().enumerate() {
        let points: Vec<String> = epochs
            .iter()
            .zip(&s.values)
            .filter(|(_, v)| v.is_finite())
            .map(|(e, v)| format!("{:.1},{:.1}", px(*e as f64), py(*v)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            s.colour,
            points.join(" ")
        );
        for p in &points {
            if let Some((x, y)) = p.split_once(',') {
                let _ = writeln!(svg, r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{}"/>"#, s.colour);
            }
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" fill="{}">{}</text>"#,
            x0 + PANEL_W - MARGIN_R - 70.0,
            MARGIN_T + 14.0 + 14.0 * k as f64,
            s.colour,
            s.name
        );
    }
}

/// The learning curve of `history` as an SVG document.
///
/// ```
/// let svg = cellops_train_unet::plot::learning_curve_svg(&[], 0);
/// assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
/// ```
pub fn learning_curve_svg(history: &[EpochRecord], best_epoch: usize) -> String {
    let epochs: Vec<usize> = history.iter().map(|r| r.epoch).collect();
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
"#,
        w = 2.0 * PANEL_W,
        h = PANEL_H
    );
    let loss = [Series {
        name: "BCE + Dice",
        colour: "#e76f51",
        values: history.iter().map(|r| r.train_loss).collect(),
    }];
    let loss = Panel {
        x0: 0.0,
        title: "Training loss",
        series: &loss,
        range: None,
    };
    panel(&mut svg, &loss, &epochs, best_epoch);
    let validation = [
        Series {
            name: "Dice",
            colour: "#264653",
            values: history.iter().map(|r| r.val_dice).collect(),
        },
        Series {
            name: "IoU",
            colour: "#e9c46a",
            values: history.iter().map(|r| r.val_iou).collect(),
        },
    ];
    let validation = Panel {
        x0: PANEL_W,
        title: "Validation (best epoch dashed)",
        series: &validation,
        range: Some((0.0, 1.0)),
    };
    panel(&mut svg, &validation, &epochs, best_epoch);
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, loss: f64, dice: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: loss,
            val_dice: dice,
            val_iou: dice * 0.8,
            val_f1: None,
            learning_rate: 1e-3,
            patches_per_second: 10.0,
            seconds: 1.0,
        }
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 1.0, 5), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        let t = ticks(0.37, 0.91, 5);
        assert!(t.iter().all(|v| (0.37..=0.91).contains(v)) && t.len() >= 3, "{t:?}");
    }

    #[test]
    fn the_plot_has_one_point_per_epoch_and_series() {
        let h: Vec<_> = (1..=4)
            .map(|e| record(e, 1.0 / e as f64, 0.5 + 0.1 * e as f64))
            .collect();
        let svg = learning_curve_svg(&h, 3);
        assert_eq!(svg.matches("<circle").count(), 4 * 3);
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("stroke-dasharray"), "best epoch marked");
        // A NaN never reaches the document.
        let bad = learning_curve_svg(&[record(1, f64::NAN, 0.5)], 1);
        assert!(!bad.contains("NaN"));
    }
}
