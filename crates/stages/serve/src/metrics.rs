//! `/metrics`: Prometheus metrics in the OpenMetrics text format, with Prometheus naming (base
//! units in the name, `_total` on counters): HTTP requests by route and status, their duration
//! and size, requests in flight and waiting for a worker, the models being served, refused
//! reloads, and per image type the signals a lab watches — nuclei per image, nucleus area and
//! form factor, the share of DAB-positive nuclei, the share of pixels the model was unsure of.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// A request's route (the pattern, not the path, so that labels stay few) and status code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route, e.g. `/v2/models/{name}/measure`.
    pub route: String,
    /// The HTTP status code.
    pub code: u16,
}

/// A route.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route.
    pub route: String,
}

/// The model a release serves.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    release: String,
    model: String,
    bundle_id: String,
    params_sha256: String,
}

/// An image type (a parameter file).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    /// The image type.
    pub image_type: String,
}

/// A feature of an image type.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    /// The image type.
    pub image_type: String,
    /// `input` or `prediction`.
    pub kind: String,
    /// The feature.
    pub feature: String,
}

/// An objective over a window.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BurnLabels {
    /// `availability` or `latency`.
    pub objective: String,
    /// The window (`5m`, `1h`, …).
    pub window: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Every metric of the service.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to answer.
    pub duration: Histograms<RouteLabels>,
    /// Request body sizes.
    pub request_size: Histograms<RouteLabels>,
    /// Requests being answered.
    pub in_flight: Gauge,
    /// Requests waiting for a worker of the inference pool.
    pub queue_depth: Gauge,
    /// Reloads refused (the live release kept serving).
    pub reload_failures: Counter,
    info: Family<InfoLabels, Gauge>,
    /// Nuclei found per image.
    pub nuclei: Histograms<TypeLabels>,
    /// Nucleus areas.
    pub area: Histograms<TypeLabels>,
    /// Nucleus form factors.
    pub form_factor: Histograms<TypeLabels>,
    /// Share of DAB-positive nuclei per image (IHC types).
    pub positive: Histograms<TypeLabels>,
    /// Share of pixels per image whose foreground probability is between 0.3 and 0.7.
    pub uncertain: Histograms<TypeLabels>,
    /// The Monitor's gauges (set from its report at each scrape).
    monitor: MonitorGauges,
}

/// The gauges of the monitor report.
#[derive(Debug, Default)]
struct MonitorGauges {
    score: Family<FeatureLabels, FloatGauge>,
    status: Family<TypeLabels, Gauge>,
    window: Family<TypeLabels, Gauge>,
    burn: Family<BurnLabels, FloatGauge>,
    dropped: Gauge,
    write_errors: Gauge,
}

impl MonitorGauges {
    fn register(&self, r: &mut Registry) {
        r.register(
            "cellops_drift_score",
            "Kolmogorov-Smirnov statistic of the drift window against the model's reference, by image type and feature",
            self.score.clone(),
        );
        r.register(
            "cellops_drift_status",
            "Drift verdict per image type: -1 not enough data or no reference, 0 none, 1 warn, 2 alert",
            self.status.clone(),
        );
        r.register(
            "cellops_drift_window_images",
            "Images in the drift window, by image type",
            self.window.clone(),
        );
        r.register(
            "cellops_slo_burn_rate",
            "Burn rate of the error budget, by objective and window (1 spends it exactly)",
            self.burn.clone(),
        );
        r.register(
            "cellops_drift_rows_dropped_today",
            "Images measured today past monitor.max_rows_per_day (counted, not kept)",
            self.dropped.clone(),
        );
        r.register(
            "cellops_drift_write_errors",
            "Feature rows that could not be written to the state folder since the start",
            self.write_errors.clone(),
        );
    }
}

fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn bytes() -> Histogram {
    Histogram::new(exponential_buckets(1024.0, 4.0, 12))
}

fn counts() -> Histogram {
    Histogram::new([0.0, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0])
}

fn areas() -> Histogram {
    Histogram::new(exponential_buckets(4.0, 1.5, 14))
}

fn ratios() -> Histogram {
    Histogram::new((1..=10).map(|i| f64::from(i) / 10.0))
}

fn small_ratios() -> Histogram {
    Histogram::new([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The metrics of a service with nothing loaded yet ([`Metrics::set_models`] names what it
    /// serves).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: Histograms<RouteLabels> = Family::new_with_constructor(seconds);
        let request_size: Histograms<RouteLabels> = Family::new_with_constructor(bytes);
        let in_flight = Gauge::default();
        let info = Family::<InfoLabels, Gauge>::default();
        let nuclei: Histograms<TypeLabels> = Family::new_with_constructor(counts);
        let area: Histograms<TypeLabels> = Family::new_with_constructor(areas);
        let form_factor: Histograms<TypeLabels> = Family::new_with_constructor(ratios);
        let positive: Histograms<TypeLabels> = Family::new_with_constructor(ratios);
        let uncertain: Histograms<TypeLabels> = Family::new_with_constructor(small_ratios);
        let queue_depth = Gauge::default();
        let reload_failures = Counter::default();
        let monitor = MonitorGauges::default();
        let r = &mut registry;
        monitor.register(r);
        r.register(
            "cellops_http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        r.register_with_unit(
            "cellops_http_request_duration",
            "Time to answer a request",
            Unit::Seconds,
            duration.clone(),
        );
        r.register_with_unit(
            "cellops_http_request_size",
            "Request body size",
            Unit::Bytes,
            request_size.clone(),
        );
        r.register(
            "cellops_http_requests_in_flight",
            "Requests being answered",
            in_flight.clone(),
        );
        r.register(
            "cellops_queue_depth",
            "Requests waiting for a worker of the inference pool",
            queue_depth.clone(),
        );
        r.register(
            "cellops_reload_failures",
            "Reloads refused (the live release kept serving; readiness says why)",
            reload_failures.clone(),
        );
        r.register(
            "cellops_model_info",
            "The release and models being served, with the sha256 of their parameter files (value 1)",
            info.clone(),
        );
        r.register(
            "cellops_nuclei_per_image",
            "Nuclei found per measured image",
            nuclei.clone(),
        );
        r.register_with_unit(
            "cellops_nucleus_area",
            "Area of each measured nucleus",
            Unit::Other("square_micrometers".into()),
            area.clone(),
        );
        r.register(
            "cellops_nucleus_form_factor",
            "Form factor (4π·area/perimeter²) of each measured nucleus",
            form_factor.clone(),
        );
        r.register_with_unit(
            "cellops_dab_positive",
            "Share of DAB-positive nuclei per image",
            Unit::Ratios,
            positive.clone(),
        );
        r.register_with_unit(
            "cellops_uncertain_pixels",
            "Share of pixels per image whose foreground probability is between 0.3 and 0.7",
            Unit::Ratios,
            uncertain.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            request_size,
            in_flight,
            queue_depth,
            reload_failures,
            info,
            nuclei,
            area,
            form_factor,
            positive,
            uncertain,
            monitor,
        }
    }

    /// Sets the Monitor's gauges from its report (image types and windows not in it disappear).
    pub fn set_monitor(&self, report: &crate::watch::Report) {
        let g = &self.monitor;
        g.score.clear();
        g.status.clear();
        g.window.clear();
        g.burn.clear();
        for t in &report.drift {
            let labels = TypeLabels {
                image_type: t.image_type.clone(),
            };
            g.status.get_or_create(&labels).set(t.status.gauge());
            g.window.get_or_create(&labels).set(t.window_images as i64);
            for f in &t.features {
                if let Some(score) = f.score {
                    g.score
                        .get_or_create(&FeatureLabels {
                            image_type: t.image_type.clone(),
                            kind: f.kind.as_str().to_owned(),
                            feature: f.name.to_owned(),
                        })
                        .set(score);
                }
            }
        }
        for b in &report.slo.burn_rates {
            if let Some(rate) = b.burn_rate {
                g.burn
                    .get_or_create(&BurnLabels {
                        objective: b.objective.to_owned(),
                        window: b.window.to_owned(),
                    })
                    .set(rate);
            }
        }
        g.dropped.set(report.evidence.dropped_today as i64);
        g.write_errors.set(report.evidence.write_errors as i64);
    }

    /// Names the release now served in `cellops_model_info` (the one before disappears).
    pub fn set_models(&self, release: &crate::release::Release) {
        self.info.clear();
        for m in release.models() {
            self.info
                .get_or_create(&InfoLabels {
                    release: release.id.clone(),
                    model: m.name.clone(),
                    bundle_id: m.version.clone(),
                    params_sha256: release.params_sha256(&m.name),
                })
                .set(1);
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
