//! The HTTP routes: the Open Inference Protocol's metadata and health endpoints, `infer`, and the
//! `measure` extension that analyses one uploaded image under an image type's parameter file.
//!
//! Every route that runs the model goes through [`work`]: a worker of the bounded pool (503 with
//! `Retry-After` when the queue is full) under the request deadline (504); bodies are read under
//! the size limit (413) and the upload deadline (408). A request takes the live release once and
//! finishes on it, whatever a reload does meanwhile.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path as UrlPath, Request, State};
use axum::http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::{get, post};
use cellops_analysis::{AnalysisError, Image, Input};
use cellops_formats::params::Channel;
use cellops_measure::table::Table;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admission::Full;
use crate::release::{Model, Release};
use crate::service::Service;
use crate::watch::Report;

mod measure;
mod page;

pub use measure::Measured;

/// The extension `GET /v2` lists for `POST /v2/models/{name}/measure`.
pub const MEASURE_EXTENSION: &str = "cellops-measure";
/// The Monitor stage's report: drift per image type, SLO burn rates, the evidence's counts.
pub const MONITOR_ROUTE: &str = "/v2/monitor";

/// The service's routes over `service`.
pub fn router(service: Arc<Service>) -> Router {
    let model = |p: &str| format!("/v2/models/{{name}}{p}");
    let version = |p: &str| format!("/v2/models/{{name}}/versions/{{version}}{p}");
    let mut r = Router::new()
        .route("/", get(page::index))
        .route("/page/app.js", get(page::script))
        .route("/page/app.css", get(page::style))
        .route("/metrics", get(metrics))
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route(MONITOR_ROUTE, get(monitor));
    for path in [model(""), version("")] {
        r = r.route(&path, get(model_metadata));
    }
    for path in [model("/ready"), version("/ready")] {
        r = r.route(&path, get(model_ready));
    }
    for path in [model("/golden"), version("/golden")] {
        r = r.route(&path, get(golden_again));
    }
    for path in [model("/infer"), version("/infer")] {
        r = r.route(&path, post(infer));
    }
    for path in [model("/measure"), version("/measure")] {
        r = r.route(&path, post(measure::measure));
    }
    r.layer(middleware::from_fn_with_state(
        Arc::clone(&service),
        refuse_announced_oversize,
    ))
    .layer(middleware::from_fn_with_state(Arc::clone(&service), track))
    .with_state(service)
}

/// A refusal: the status and a JSON body `{"error": …}` that says why.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.message }));
        match self.retry_after {
            Some(s) => (self.status, [(RETRY_AFTER, s.to_string())], body).into_response(),
            None => (self.status, body).into_response(),
        }
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
        retry_after: None,
    }
}

/// The refusal of a body over `max_request_bytes`.
fn too_large(limit: u64) -> Refusal {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over max_request_bytes ({limit} bytes)"),
    )
}

/// Refuses a request whose `Content-Length` is over the limit before reading any of its body
/// (bodies without one are cut off by [`read_body`] as they arrive).
async fn refuse_announced_oversize(State(s): State<Arc<Service>>, request: Request, next: Next) -> Response {
    let limit = s.limits.max_request_bytes;
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return too_large(limit).into_response();
    }
    next.run(request).await
}

/// Counts, times and sizes every request by its route.
async fn track(State(s): State<Arc<Service>>, request: Request, next: Next) -> Response {
    use crate::metrics::{RequestLabels, RouteLabels};
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
    let seconds = started.elapsed().as_secs_f64();
    m.duration.get_or_create(&labels).observe(seconds);
    let code = response.status().as_u16();
    if route.ends_with("/infer") || route.ends_with("/measure") {
        s.watch.slo.record(crate::watch::now(), code, seconds);
    }
    m.requests.get_or_create(&RequestLabels { route, code }).inc();
    response
}

/// The whole body, read under `max_request_bytes` (413) and `upload_timeout_s` (408).
async fn read_body(s: &Service, body: Body) -> Result<Bytes, Refusal> {
    use http_body_util::BodyExt as _;
    let limit = s.limits.max_request_bytes;
    let upload = s.limits.upload_timeout_s;
    let capped = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match tokio::time::timeout(Duration::from_secs_f64(upload), capped.collect()).await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within upload_timeout_s ({upload} s)"),
        )),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large(limit)),
        Ok(Err(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("the body could not be read: {e}"),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Runs `job` on a worker of the pool, within `request_timeout_s` of now: 503 with `Retry-After`
/// when every worker is busy and the queue is full, 504 past the deadline (the job still
/// finishes on its worker, so the pool's bound holds).
async fn work<T: Send + 'static>(
    s: &Service,
    job: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    let deadline = s.limits.request_timeout_s;
    let run = async {
        let worker = s.pool.admit().await.map_err(busy)?;
        let joined = tokio::task::spawn_blocking(move || {
            let _worker = worker;
            job()
        })
        .await;
        joined.map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("the analysis stopped: {e}")))?
    };
    tokio::time::timeout(Duration::from_secs_f64(deadline), run)
        .await
        .map_err(|_| {
            error(
                StatusCode::GATEWAY_TIMEOUT,
                format!("no answer within request_timeout_s ({deadline} s)"),
            )
        })?
}

fn busy(full: Full) -> Refusal {
    Refusal {
        retry_after: Some(1),
        ..error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "busy: all {} workers are analysing and the queue (queue = {}) is full; retry",
                full.workers, full.queue
            ),
        )
    }
}

/// The golden check run again now, on a worker, from the files of the served bundle: what the
/// Monitor stage asks to learn that the model still gives what it gave when it was bundled.
/// `passed` says how it went (`absent` for a bundle recorded without one).
async fn golden_again(
    State(s): State<Arc<Service>>,
    UrlPath(at): UrlPath<ModelPath>,
) -> Result<Json<serde_json::Value>, Refusal> {
    let (release, model) = pick(&s, &at)?;
    let checked = work(&s, move || {
        Ok(cellops_unet::golden::check(&model.predictor, &model.dir).map_err(|e| e.to_string()))
    })
    .await?;
    Ok(Json(match checked {
        Ok(Some(r)) => json!({
            "release": release.id, "golden": "passed", "passed": true,
            "max_abs_diff": r.max_abs_diff, "iou": r.iou,
        }),
        Ok(None) => json!({ "release": release.id, "golden": "absent", "passed": true }),
        Err(why) => json!({ "release": release.id, "golden": "failed", "passed": false, "error": why }),
    }))
}

/// The monitor report of the live release (503 while none is loaded).
async fn monitor(State(s): State<Arc<Service>>) -> Result<Json<Report>, Refusal> {
    let Some(release) = s.current() else {
        let why = s.readiness().reason.unwrap_or_default();
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")));
    };
    let report = tokio::task::spawn_blocking(move || s.watch.report(&release, crate::watch::now()))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("the report stopped: {e}")))?;
    Ok(Json(report))
}

async fn metrics(State(s): State<Arc<Service>>) -> Response {
    if let Some(release) = s.current() {
        let service = Arc::clone(&s);
        let report = tokio::task::spawn_blocking(move || service.watch.report(&release, crate::watch::now())).await;
        if let Ok(report) = report {
            s.metrics.set_monitor(&report);
        }
    }
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

async fn ready(State(s): State<Arc<Service>>) -> Response {
    let r = s.readiness();
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r)).into_response()
}

/// A model in a URL: `/v2/models/{name}` or `/v2/models/{name}/versions/{version}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelPath {
    name: String,
    version: Option<String>,
}

/// The release that serves the model (and version) the URL names: the live one, or for an
/// older version the previous release, still loaded. 503 while nothing is loaded, 404 for a
/// model or version not served.
fn pick(s: &Service, at: &ModelPath) -> Result<(Arc<Release>, Model), Refusal> {
    let Some(current) = s.current() else {
        let why = s.readiness().reason.unwrap_or_default();
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")));
    };
    let Some(model) = current.model(&at.name).cloned() else {
        let names: Vec<_> = current.models().map(|m| m.name.as_str()).collect();
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no model `{}`; this release serves: {}", at.name, names.join(", ")),
        ));
    };
    let Some(version) = &at.version else {
        return Ok((current, model));
    };
    if &model.version == version {
        return Ok((current, model));
    }
    let previous = s.previous();
    let old = previous
        .as_ref()
        .and_then(|p| p.model(&at.name).filter(|m| &m.version == version).cloned());
    match (previous, old) {
        (Some(p), Some(m)) => Ok((p, m)),
        _ => Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "model `{}` has no version `{version}` loaded (live: {})",
                at.name, model.version
            ),
        )),
    }
}

async fn model_metadata(State(s): State<Arc<Service>>, UrlPath(at): UrlPath<ModelPath>) -> Result<Response, Refusal> {
    let (release, model) = pick(&s, &at)?;
    let channels = model.input_channels as i64;
    let versions: Vec<_> = [Some(&release), s.previous().as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|r| r.model(&model.name).map(|m| m.version.clone()))
        .collect();
    Ok(Json(json!({
        "name": model.name,
        "versions": versions,
        "platform": "cellops-burn",
        "inputs": [{ "name": "image", "datatype": "FP32", "shape": [-1, channels, -1, -1] }],
        "outputs": [{ "name": "probabilities", "datatype": "FP32", "shape": [-1, model.outputs.len() as i64, -1, -1] }],
        "parameters": {
            "version": model.version,
            "outputs": model.outputs,
            "image_types": release.types_of(&model.name),
            "release": release.id,
        },
    }))
    .into_response())
}

async fn model_ready(State(s): State<Arc<Service>>, UrlPath(at): UrlPath<ModelPath>) -> Result<Response, Refusal> {
    let (release, m) = pick(&s, &at)?;
    Ok(Json(json!({ "name": m.name, "version": m.version, "release": release.id, "ready": true })).into_response())
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

/// What [`parse_infer`] takes from a request: its id, its input's values and `[C, H, W]`.
pub type InferInput = (Option<String>, Vec<f32>, [usize; 3]);

/// An `infer` request's body: its id, its one input's values and `[C, H, W]`, or why it is not
/// one (the service answers 400 with it). The values are checked against the shape and the
/// model by `Predictor::probabilities`.
pub fn parse_infer(bytes: &[u8]) -> Result<InferInput, String> {
    let InferRequest { id, mut inputs } =
        serde_json::from_slice(bytes).map_err(|e| format!("not an infer request: {e}"))?;
    if inputs.len() != 1 {
        return Err("send exactly one input tensor (the image)".into());
    }
    let input = inputs.remove(0);
    let shape = input_shape(&input)?;
    Ok((id, input.data, shape))
}

/// The `[C, H, W]` of an input, or why it does not fit.
fn input_shape(t: &InferTensor) -> Result<[usize; 3], String> {
    if t.datatype != "FP32" {
        return Err(format!("input `{}` is {}; the model takes FP32", t.name, t.datatype));
    }
    match t.shape.as_slice() {
        [1, c, h, w] | [c, h, w] => Ok([*c, *h, *w]),
        other => Err(format!(
            "input `{}` has shape {other:?}; the model takes [1, C, H, W]",
            t.name
        )),
    }
}

/// `POST /v2/models/{name}[/versions/{version}]/infer`: the model's probabilities for a prepared
/// input (no preprocessing, no separation): `probabilities`, `[1, K, H, W]`, one channel per
/// output.
async fn infer(
    State(s): State<Arc<Service>>,
    UrlPath(at): UrlPath<ModelPath>,
    body: Body,
) -> Result<Response, Refusal> {
    let (release, model) = pick(&s, &at)?;
    let bytes = read_body(&s, body).await?;
    let (id, data, shape) = parse_infer(&bytes).map_err(|m| error(StatusCode::BAD_REQUEST, m))?;
    let predictor = model.predictor.clone();
    let prediction = work(&s, move || {
        predictor
            .probabilities(&data, shape)
            .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))
    })
    .await?;
    Ok(Json(json!({
        "model_name": model.name,
        "model_version": model.version,
        "id": id,
        "parameters": { "release": release.id, "outputs": model.outputs },
        "outputs": [InferTensor {
            name: "probabilities".into(),
            shape: vec![1, prediction.channels, prediction.height, prediction.width],
            datatype: "FP32".into(),
            data: prediction.probabilities,
        }],
    }))
    .into_response())
}

/// The headers that name the release and bundle behind an answer.
fn provenance(release: &str, version: &str) -> [(HeaderName, String); 2] {
    [
        (HeaderName::from_static("x-cellops-release"), release.to_owned()),
        (HeaderName::from_static("x-cellops-model-version"), version.to_owned()),
    ]
}

/// Whether the client asked for CSV.
fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"))
}

/// Decodes an upload under the pixel limit (checked from the header before decoding), keeping
/// the image type's nuclear channel of a multi-channel image.
fn decode(id: &str, body: &[u8], max_pixels: u64, channel: Option<&Channel>) -> Result<Input, Refusal> {
    let image = Image::decode_channel(Path::new(id), body, max_pixels, channel).map_err(|e| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{e} (max_pixels is {max_pixels})"),
        )
    })?;
    Ok(Input {
        id: id.to_owned(),
        image,
        mask: None,
        truth: None,
    })
}

/// An analysis error as a refusal: the model failing is ours (500), the rest is the image's (422).
fn analysis_refusal(e: AnalysisError) -> Refusal {
    match e {
        AnalysisError::Model { .. } => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        e => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

/// A table's CSV answer.
fn csv_response(table: &Table, names: [(HeaderName, String); 2]) -> Response {
    let mut h = vec![(CONTENT_TYPE, "text/csv; charset=utf-8".to_owned())];
    h.extend(names);
    (AppendHeaders(h), table.csv()).into_response()
}
