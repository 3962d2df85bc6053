//! The HTTP routes: the Open Inference Protocol's metadata and health endpoints, and the `measure`
//! extension that analyses one uploaded image under an image type's parameter file.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path as UrlPath, Query, Request, State};
use axum::http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::{get, post};
use cellops_analysis::{AnalysisError, Image, Input};
use cellops_measure::objects::{Cell, ImageSummary};
use cellops_measure::table::Table;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::metrics::{Metrics, RequestLabels, RouteLabels, TypeLabels};
use crate::release::Release;

/// The extension `GET /v2` lists for `POST /v2/models/{name}/measure`.
pub const MEASURE_EXTENSION: &str = "cellops-measure";

/// Limits of the service.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest request body, in bytes.
    pub max_request_bytes: usize,
    /// The most pixels an uploaded image may have (checked from its header before decoding).
    pub max_pixels: u64,
}

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The release being served.
    pub release: Release,
    /// The limits.
    pub limits: Limits,
    /// The metrics.
    pub metrics: Metrics,
}

/// The service's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.limits.max_request_bytes;
    Router::new()
        .route("/metrics", get(metrics))
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/measure", post(measure))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            refuse_announced_oversize,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), track))
        .with_state(state)
}

/// A refusal: the status and a JSON body `{"error": …}` that says why.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// The refusal of a body over `max_request_bytes`.
fn too_large(limit: usize) -> Refusal {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over max_request_bytes ({limit} bytes)"),
    )
}

/// Refuses a request whose `Content-Length` is over the limit before reading any of its body
/// (bodies without one are cut off by the body limit as they arrive).
async fn refuse_announced_oversize(State(s): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let limit = s.limits.max_request_bytes;
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return too_large(limit).into_response();
    }
    next.run(request).await
}

/// Counts, times and sizes every request by its route.
async fn track(State(s): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let size = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<f64>().ok());
    let m = &s.metrics;
    let labels = RouteLabels { route: route.clone() };
    if let Some(size) = size {
        m.request_size.get_or_create(&labels).observe(size);
    }
    m.in_flight.inc();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    m.in_flight.dec();
    m.duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    let code = response.status().as_u16();
    m.requests.get_or_create(&RequestLabels { route, code }).inc();
    response
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn server_metadata() -> Json<serde_json::Value> {
    Json(json!({
        "name": "cellops",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [MEASURE_EXTENSION],
    }))
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

async fn ready(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({ "ready": true, "release": s.release.id, "model_version": s.release.model.version }))
}

/// The model named in the URL, or a 404 that names the one served.
fn served<'a>(s: &'a AppState, name: &str) -> Result<&'a crate::release::Model, Refusal> {
    let model = &s.release.model;
    if model.name == name {
        Ok(model)
    } else {
        Err(error(
            StatusCode::NOT_FOUND,
            format!("no model `{name}`; this release serves `{}`", model.name),
        ))
    }
}

async fn model_metadata(State(s): State<Arc<AppState>>, UrlPath(name): UrlPath<String>) -> Result<Response, Refusal> {
    let model = served(&s, &name)?;
    let channels = model.input_channels as i64;
    Ok(Json(json!({
        "name": model.name,
        "versions": [model.version],
        "platform": "cellops-burn",
        "inputs": [{ "name": "image", "datatype": "FP32", "shape": [-1, channels, -1, -1] }],
        "outputs": [{ "name": "probabilities", "datatype": "FP32", "shape": [-1, model.outputs.len() as i64, -1, -1] }],
        "parameters": { "outputs": model.outputs, "image_types": s.release.types(), "release": s.release.id },
    }))
    .into_response())
}

async fn model_ready(State(s): State<Arc<AppState>>, UrlPath(name): UrlPath<String>) -> Result<Response, Refusal> {
    let m = served(&s, &name)?;
    Ok(Json(json!({ "name": m.name, "ready": true })).into_response())
}

/// `?params=<image type>[&name=<image name>]`.
#[derive(Debug, Deserialize)]
struct MeasureQuery {
    params: Option<String>,
    /// The image's name in the rows (as `evaluate` names an image by its file stem).
    name: Option<String>,
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
    /// The per-image summary.
    pub summary: ImageSummary,
    /// One object per nucleus, with `objects.csv`'s column names (as `objects.json`).
    pub objects: serde_json::Value,
}

async fn measure(
    State(s): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<MeasureQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let csv = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    served(&s, &name)?;
    let types = s.release.types().join(", ");
    let Some(image_type) = q.params else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("say which image type with ?params=<type> (one of: {types})"),
        ));
    };
    if s.release.analyzer(&image_type).is_none() {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no image type `{image_type}` (one of: {types})"),
        ));
    }
    let body = match body {
        Ok(b) if b.is_empty() => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "the body is empty: send the image's bytes",
            ));
        }
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large(s.limits.max_request_bytes)),
        Err(e) => return Err(error(e.status(), e.body_text())),
    };
    let state = Arc::clone(&s);
    let id = q.name.unwrap_or_else(|| "upload".to_owned());
    match tokio::task::spawn_blocking(move || analyse(&state, &image_type, &id, &body)).await {
        Ok(Ok((m, table))) => {
            let names = [
                (HeaderName::from_static("x-cellops-release"), m.release.clone()),
                (
                    HeaderName::from_static("x-cellops-model-version"),
                    m.model_version.clone(),
                ),
            ];
            if csv {
                let mut h = vec![(CONTENT_TYPE, "text/csv; charset=utf-8".to_owned())];
                h.extend(names);
                Ok((AppendHeaders(h), table.csv()).into_response())
            } else {
                Ok((AppendHeaders(names), Json(m)).into_response())
            }
        }
        Ok(Err(r)) => Err(r),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the analysis stopped: {e}"),
        )),
    }
}

/// Decodes and analyses one uploaded image (on a blocking thread); the answer and its rows as a
/// table (for CSV).
fn analyse(s: &AppState, image_type: &str, id: &str, body: &[u8]) -> Result<(Measured, Table), Refusal> {
    let upload = Path::new(id);
    let image = Image::decode(upload, body, s.limits.max_pixels).map_err(|e| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{e} (max_pixels is {})", s.limits.max_pixels),
        )
    })?;
    let input = Input {
        id: id.to_owned(),
        image,
        mask: None,
        truth: None,
    };
    let analyzer = s
        .release
        .analyzer(image_type)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no image type `{image_type}`")))?;
    let analysed = analyzer.analyse(&input).map_err(|e| match e {
        AnalysisError::Model { .. } => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        e => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    })?;
    let m = analysed.measurement;
    observe(&s.metrics, image_type, &m.summary, &m.rows);
    let mut table = Table::default();
    for row in m.rows {
        table.push(row);
    }
    let measured = Measured {
        model_name: s.release.model.name.clone(),
        model_version: s.release.model.version.clone(),
        release: s.release.id.clone(),
        params: image_type.to_owned(),
        summary: m.summary,
        objects: table.json(),
    };
    Ok((measured, table))
}

/// An Open Inference Protocol `infer` request: one FP32 input, `[1, C, H, W]` or `[C, H, W]`,
/// its data flat in row-major order.
#[derive(Debug, Deserialize)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<InferTensor>,
}

/// A tensor of a request or response.
#[derive(Debug, Serialize, Deserialize)]
struct InferTensor {
    name: String,
    shape: Vec<usize>,
    datatype: String,
    data: Vec<f32>,
}

/// The `[C, H, W]` of an input, or why it does not fit.
fn input_shape(t: &InferTensor) -> Result<[usize; 3], Refusal> {
    if t.datatype != "FP32" {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("input `{}` is {}; the model takes FP32", t.name, t.datatype),
        ));
    }
    match t.shape.as_slice() {
        [1, c, h, w] | [c, h, w] => Ok([*c, *h, *w]),
        other => Err(error(
            StatusCode::BAD_REQUEST,
            format!("input `{}` has shape {other:?}; the model takes [1, C, H, W]", t.name),
        )),
    }
}

/// `POST /v2/models/{name}/infer`: the model's probabilities for a prepared input (no
/// preprocessing, no separation): `probabilities`, `[1, K, H, W]`, one channel per output.
async fn infer(
    State(s): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    body: Result<Json<InferRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Refusal> {
    served(&s, &name)?;
    let Json(InferRequest { id, mut inputs }) = body.map_err(|e| error(e.status(), e.body_text()))?;
    if inputs.len() != 1 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "send exactly one input tensor (the image)",
        ));
    }
    let input = inputs.remove(0);
    let shape = input_shape(&input)?;
    let (state, data) = (Arc::clone(&s), input.data);
    let run = move || state.release.predictor.probabilities(&data, shape);
    let prediction = match tokio::task::spawn_blocking(run).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Err(error(StatusCode::BAD_REQUEST, e.to_string())),
        Err(e) => {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("inference stopped: {e}"),
            ));
        }
    };
    let model = &s.release.model;
    Ok(Json(json!({
        "model_name": model.name,
        "model_version": model.version,
        "id": id,
        "parameters": { "release": s.release.id, "outputs": model.outputs },
        "outputs": [InferTensor {
            name: "probabilities".into(),
            shape: vec![1, prediction.channels, prediction.height, prediction.width],
            datatype: "FP32".into(),
            data: prediction.probabilities,
        }],
    }))
    .into_response())
}

/// The domain signals of one measured image.
fn observe(metrics: &Metrics, image_type: &str, summary: &ImageSummary, rows: &[Vec<(String, Cell)>]) {
    let labels = TypeLabels {
        image_type: image_type.to_owned(),
    };
    metrics.nuclei.get_or_create(&labels).observe(summary.count as f64);
    if let Some(p) = summary.positive_percent {
        metrics.positive.get_or_create(&labels).observe(p / 100.0);
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
