//! `POST /v2/models/{name}[/versions/{version}]/measure?params=<image type>`: one raw image in
//! (PNG, TIFF, JPEG, BMP), the per-image summary and one row per nucleus out — JSON, CSV with
//! `Accept: text/csv`, the nuclei as QuPath's GeoJSON with `Accept: application/geo+json`, or the
//! contour overlay with `overlay=png` — by the same analysis as `evaluate`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Response};
use cellops_analysis::{Analysed, Input};
use cellops_dataset::ops::features::image_features;
use cellops_measure::objects::{Cell, ImageSummary};
use cellops_measure::table::Table;
use serde::{Deserialize, Serialize};

use super::{
    ModelPath, Refusal, analysis_refusal, csv_response, decode, error, pick, provenance, read_body, wants_csv, work,
};
use crate::evidence::Row;
use crate::metrics::{Metrics, TypeLabels};
use crate::release::Release;
use crate::service::Service;
use crate::shadow::Segmentation;

/// `?params=<image type>[&name=<image name>][&overlay=png]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MeasureQuery {
    params: Option<String>,
    /// The image's name in the rows (as `evaluate` names an image by its file stem).
    name: Option<String>,
    /// Answer with the contour overlay instead of the numbers.
    overlay: Option<OverlayFormat>,
}

/// The formats an overlay comes in.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OverlayFormat {
    Png,
}

/// The answer of `measure`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Measured {
    /// The model.
    pub model_name: String,
    /// The bundle id that segmented the image.
    pub model_version: String,
    /// The release that answered.
    pub release: String,
    /// The image type (parameter file) it was measured under.
    pub params: String,
    /// The share of pixels the model was unsure of (foreground probability in (0.3, 0.7)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertain_pixels: Option<f64>,
    /// The per-image summary.
    pub summary: ImageSummary,
    /// One object per nucleus, with `objects.csv`'s column names (as `objects.json`).
    pub objects: serde_json::Value,
}

/// What one analysis gives the handler.
enum Answer {
    Numbers(Box<Measured>, Table),
    Overlay(Vec<u8>),
    GeoJson(serde_json::Value),
}

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// The numbers (JSON, or CSV by `Accept`).
    Numbers,
    /// The contour overlay (`overlay=png`).
    Overlay,
    /// The nuclei as GeoJSON polygons (`Accept: application/geo+json`), as `evaluate --geojson`
    /// writes them.
    GeoJson,
}

/// The media type of GeoJSON (RFC 7946).
const GEOJSON: &str = "application/geo+json";

pub(crate) async fn measure(
    State(s): State<Arc<Service>>,
    UrlPath(at): UrlPath<ModelPath>,
    query: Result<Query<MeasureQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let Query(q) = query.map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))?;
    let (release, model) = pick(&s, &at)?;
    let types = release.types_of(&model.name).join(", ");
    let Some(image_type) = q.params else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("say which image type with ?params=<type> (one of: {types})"),
        ));
    };
    if release.image_type(&image_type).is_none_or(|t| t.model != model.name) {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "no image type `{image_type}` for model `{}` (one of: {types})",
                model.name
            ),
        ));
    }
    image_content_type(&headers)?;
    let body = read_body(&s, body).await?;
    if body.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the body is empty: send the image's bytes",
        ));
    }
    let names = provenance(&release.id, &model.version);
    let id = q.name.unwrap_or_else(|| "upload".to_owned());
    let state = Arc::clone(&s);
    let wants_geojson = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(GEOJSON));
    let wanted = match (q.overlay, wants_geojson) {
        (Some(_), _) => Wanted::Overlay,
        (None, true) => Wanted::GeoJson,
        (None, false) => Wanted::Numbers,
    };
    let answer = work(&s, move || analyse(&state, &release, &image_type, &id, &body, wanted)).await?;
    Ok(match answer {
        Answer::Overlay(png) => (AppendHeaders(names), [(CONTENT_TYPE, "image/png")], png).into_response(),
        Answer::GeoJson(v) => {
            let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
            bytes.push(b'\n');
            (AppendHeaders(names), [(CONTENT_TYPE, GEOJSON)], bytes).into_response()
        }
        Answer::Numbers(_, table) if wants_csv(&headers) => csv_response(&table, names),
        Answer::Numbers(m, _) => (AppendHeaders(names), Json(*m)).into_response(),
    })
}

/// Refuses a body that says it is something other than an image (no `Content-Type` is fine:
/// the bytes say what they are).
fn image_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(kind) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let kind = kind.to_str().unwrap_or("").trim().to_ascii_lowercase();
    let essence = kind.split(';').next().unwrap_or("").trim();
    if essence.starts_with("image/") || essence == "application/octet-stream" {
        return Ok(());
    }
    let hint = if essence == "application/x-www-form-urlencoded" {
        " (curl --data-binary sends that by default: add -H 'Content-Type: image/png')"
    } else {
        ""
    };
    Err(error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "Content-Type {essence} is not an image: send image/png, image/tiff, image/jpeg or application/octet-stream{hint}"
        ),
    ))
}

/// Decodes and analyses one uploaded image (on a worker); the answer and its rows as a table
/// (for CSV), its overlay, or its nuclei as GeoJSON.
fn analyse(
    s: &Arc<Service>,
    release: &Arc<Release>,
    image_type: &str,
    id: &str,
    body: &[u8],
    wanted: Wanted,
) -> Result<Answer, Refusal> {
    let t = release
        .image_type(image_type)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no image type `{image_type}`")))?;
    let input = decode(id, body, s.limits.max_pixels, t.analyzer.channel())?;
    let analysed = t.analyzer.analyse(&input).map_err(analysis_refusal)?;
    if wanted == Wanted::Overlay {
        let drawn = t.analyzer.overlay(&input, &analysed);
        let png = cellops_dataset::io::encode_png(&drawn)
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("drawing the overlay: {e}")))?;
        return Ok(Answer::Overlay(png));
    }
    let geojson = (wanted == Wanted::GeoJson).then(|| t.analyzer.geojson(&input, &analysed));
    shadow(s, release, image_type, &input, &analysed);
    let uncertain = analysed.uncertain();
    let version = release.model(&t.model).map(|m| m.version.clone()).unwrap_or_default();
    let features = image_features(&input.image.raster);
    s.watch.keep(Row {
        at: crate::watch::now(),
        image_type: image_type.to_owned(),
        model: version.clone(),
        input: features.values().to_vec(),
        histogram: features.histogram.map(|h| h.to_vec()),
        prediction: analysed.prediction.map(|p| p.values().to_vec()),
    });
    let m = analysed.measurement;
    observe(&s.metrics, image_type, &m.summary, &m.rows, uncertain);
    if let Some(v) = geojson {
        return Ok(Answer::GeoJson(v));
    }
    let mut table = Table::default();
    for row in m.rows {
        table.push(row);
    }
    let measured = Measured {
        model_name: t.model.clone(),
        model_version: version,
        release: release.id.clone(),
        params: image_type.to_owned(),
        uncertain_pixels: uncertain,
        summary: m.summary,
        objects: table.json(),
    };
    Ok(Answer::Numbers(Box::new(measured), table))
}

/// Runs the shadow model on `input` too, when this image is one of its share and it is free: on a
/// blocking thread of its own, after which the answer is not waited for.
fn shadow(s: &Arc<Service>, release: &Arc<Release>, image_type: &str, input: &Input, answer: &Analysed) {
    let Some(sh) = &release.shadow else { return };
    if !s.watch.shadow.take(sh.share, &sh.version, image_type) {
        return;
    }
    let (s, release, input) = (Arc::clone(s), Arc::clone(release), input.clone());
    let (image_type, labels) = (image_type.to_owned(), answer.measurement.segmentation.clone());
    let (count, area) = (answer.measurement.nuclei.len(), mean_area(answer));
    let job = move || {
        let Some(sh) = &release.shadow else { return };
        match sh.analyzer(&image_type).map(|a| a.analyse(&input)) {
            Some(Ok(candidate)) => {
                let them = Segmentation {
                    labels: &candidate.measurement.segmentation,
                    count: candidate.measurement.nuclei.len(),
                    mean_area: mean_area(&candidate),
                };
                let us = Segmentation {
                    labels: &labels,
                    count,
                    mean_area: area,
                };
                s.watch.shadow.record(&sh.version, &image_type, &us, &them);
            }
            _ => s.watch.shadow.release(),
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn_blocking(job)),
        Err(_) => drop(std::thread::spawn(job)),
    }
}

/// The mean nucleus area of an analysis, pixels.
fn mean_area(a: &Analysed) -> Option<f64> {
    let n = &a.measurement.nuclei;
    (!n.is_empty()).then(|| n.iter().map(|x| x.shape.area as f64).sum::<f64>() / n.len() as f64)
}

/// The domain signals of one measured image.
fn observe(
    metrics: &Metrics,
    image_type: &str,
    summary: &ImageSummary,
    rows: &[Vec<(String, Cell)>],
    uncertain: Option<f64>,
) {
    let labels = TypeLabels {
        image_type: image_type.to_owned(),
    };
    metrics.nuclei.get_or_create(&labels).observe(summary.count as f64);
    if let Some(p) = summary.positive_percent {
        metrics.positive.get_or_create(&labels).observe(p / 100.0);
    }
    if let Some(u) = uncertain {
        metrics.uncertain.get_or_create(&labels).observe(u);
    }
    let (area, form) = (
        metrics.area.get_or_create(&labels),
        metrics.form_factor.get_or_create(&labels),
    );
    for row in rows {
        for (name, cell) in row {
            let value = cell.as_f64().filter(|v| v.is_finite());
            match (name.as_str(), value) {
                ("AreaShape_Area_um2", Some(v)) => area.observe(v),
                ("AreaShape_FormFactor", Some(v)) => form.observe(v),
                _ => {}
            }
        }
    }
}
