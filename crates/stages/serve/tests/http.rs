//! The real server on 127.0.0.1, asked by a real HTTP client: the Open Inference Protocol's
//! metadata and health endpoints, `measure` equal to `evaluate` for the same image, bundle and
//! parameter file, and bad requests refused with a JSON error while the server stays up.

mod support;

use cellops_dataset::synthetic::{Style, SynthConfig};
use serde_json::Value;
use support::{answer, evaluate, get, headers_only, partial_upload, post, release, serve, synthetic_image};

#[test]
fn measure_answers_what_evaluate_reports_and_metadata_follows_the_protocol() {
    let tmp = tempfile::tempdir().expect("tmp");
    let release = release(tmp.path());
    let (images, image, stem) = synthetic_image(tmp.path());
    let server = serve(&release, &[]);
    let base = &server.base;

    let (status, meta) = get(&format!("{base}/v2"));
    assert_eq!(status, 200);
    assert!(
        meta["extensions"]
            .as_array()
            .expect("list")
            .contains(&Value::from("cellops-measure"))
    );
    assert_eq!(get(&format!("{base}/v2/health/live")).0, 200);
    let (status, ready) = get(&format!("{base}/v2/health/ready"));
    assert_eq!((status, ready["release"].as_str()), (200, Some("release-1")));
    let bundle_id = ready["models"]["nuclei"]["version"]
        .as_str()
        .expect("version")
        .to_owned();
    assert_eq!(ready["models"]["nuclei"]["golden"], "passed", "{ready}");
    let (status, model) = get(&format!("{base}/v2/models/nuclei"));
    assert_eq!(status, 200, "{model}");
    assert_eq!(model["versions"][0].as_str(), Some(bundle_id.as_str()));
    assert_eq!(get(&format!("{base}/v2/models/nuclei/ready")).0, 200);
    assert_eq!(get(&format!("{base}/v2/models/other")).0, 404);

    let bytes = std::fs::read(&image).expect("image");
    let url = format!("{base}/v2/models/nuclei/measure?params=fluorescence-dapi&name={stem}");
    let (status, measured) = post(&url, &bytes);
    assert_eq!(status, 200, "{measured}");
    assert_eq!(measured["release"], "release-1");
    assert_eq!(measured["model_version"].as_str(), Some(bundle_id.as_str()));

    let (rows, summary, csv) = evaluate(
        &images.join("original"),
        &release.join("cell-params/fluorescence-dapi.yaml"),
        &release.join("models/nuclei"),
        &tmp.path().join("eval"),
    );
    let served = measured["objects"].as_array().expect("objects");
    assert!(!served.is_empty(), "nuclei were found");
    assert_eq!(served, &rows, "the same rows as evaluate's objects.json");
    let answer = ureq::post(&url)
        .set("Accept", "text/csv")
        .send_bytes(&bytes)
        .expect("CSV answer");
    assert_eq!(answer.header("x-cellops-release"), Some("release-1"));
    assert_eq!(answer.header("x-cellops-model-version"), Some(bundle_id.as_str()));
    assert_eq!(
        answer.into_string().expect("text"),
        csv,
        "the same CSV as evaluate's objects.csv"
    );
    // Two measure requests answered (JSON and CSV): the metrics count them and what they found.
    let metrics = ureq::get(&format!("{base}/metrics"))
        .call()
        .expect("metrics")
        .into_string()
        .expect("text");
    let nuclei = served.len();
    let params_sha256 = cellops_formats::release::sha256_of(
        std::fs::read(release.join("cell-params/fluorescence-dapi.yaml"))
            .expect("params")
            .as_slice(),
    )
    .expect("hash")
    .1;
    for line in [
        "cellops_http_requests_total{route=\"/v2/models/{name}/measure\",code=\"200\"} 2".to_owned(),
        format!(
            "cellops_model_info{{release=\"release-1\",model=\"nuclei\",bundle_id=\"{bundle_id}\",params_sha256=\"{params_sha256}\"}} 1"
        ),
        "cellops_nuclei_per_image_count{image_type=\"fluorescence-dapi\"} 2".to_owned(),
        format!(
            "cellops_nucleus_area_square_micrometers_count{{image_type=\"fluorescence-dapi\"}} {}",
            2 * nuclei
        ),
        "cellops_http_request_duration_seconds_count{route=\"/v2/models/{name}/measure\"} 2".to_owned(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }
    // The nuclei as GeoJSON: what evaluate --geojson wrote.
    let answer = ureq::post(&url)
        .set("Accept", "application/geo+json")
        .send_bytes(&bytes)
        .expect("GeoJSON answer");
    assert_eq!(answer.header("content-type"), Some("application/geo+json"));
    let served: serde_json::Value = serde_json::from_str(&answer.into_string().expect("text")).expect("json");
    let written: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join(format!("eval/geojson/{stem}.geojson"))).expect("evaluate's GeoJSON"),
    )
    .expect("json");
    assert_eq!(served, written, "the same polygons as evaluate's");
    assert_eq!(served["features"].as_array().map(Vec::len), Some(nuclei));
    // summary.json's image records hold the summary's fields flattened, beside the overlay's path.
    let summary_fields = measured["summary"].as_object().expect("summary");
    assert!(summary_fields.len() > 5, "{summary_fields:?}");
    for (k, v) in summary_fields {
        assert_eq!(v, &summary["images"][0][k], "summary field {k}");
    }
}

#[test]
fn bad_requests_get_a_json_error_and_the_server_stays_up() {
    let tmp = tempfile::tempdir().expect("tmp");
    let release = release(tmp.path());
    let server = serve(
        &release,
        &[
            "--max-request-bytes",
            "100000",
            "--upload-timeout",
            "1",
            "--header-timeout",
            "1",
        ],
    );
    let url = |q: &str| format!("{}/v2/models/nuclei/measure{q}", server.base);
    let png = {
        let r = cellops_dataset::Raster::from_u8(4, 4, 1, vec![0; 16]);
        cellops_dataset::io::encode_png(&r).expect("png")
    };
    let cases: [(&str, Vec<u8>, u16, &str); 5] = [
        ("", png.clone(), 400, "?params=<type>"),
        ("?params=histology", png.clone(), 404, "fluorescence-dapi"),
        ("?params=fluorescence-dapi", Vec::new(), 400, "empty"),
        (
            "?params=fluorescence-dapi",
            b"not an image at all".to_vec(),
            422,
            "upload",
        ),
        (
            "?params=fluorescence-dapi",
            png[..png.len() / 2].to_vec(),
            422,
            "upload",
        ),
    ];
    for (query, body, code, says) in cases {
        let (status, answer) = post(&url(query), &body);
        assert_eq!(status, code, "{query}: {answer}");
        let message = answer["error"].as_str().expect("an error message");
        assert!(message.contains(says), "{query}: {message}");
    }
    // A body over the limit is refused from its Content-Length, before it is read (a client
    // that sent it all could meet a closed connection, so this one waits for the answer).
    let (status, answer) = headers_only(
        &server.base,
        "/v2/models/nuclei/measure?params=fluorescence-dapi",
        200_000,
    );
    assert_eq!(status, 413, "{answer}");
    let message = answer["error"].as_str().expect("an error message");
    assert!(message.contains("max_request_bytes (100000 bytes)"), "{message}");
    // A header that claims 40000×40000 pixels is refused before decoding.
    let mut huge = png.clone();
    huge[16..20].copy_from_slice(&40_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&40_000u32.to_be_bytes());
    let (status, answer) = post(&url("?params=fluorescence-dapi"), &huge);
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"].as_str().expect("error").contains("max_pixels"),
        "{answer}"
    );
    // A body that says it is text is refused before it is read.
    let (status, answer) = support::answer(
        ureq::post(&url("?params=fluorescence-dapi"))
            .set("Content-Type", "application/x-www-form-urlencoded")
            .send_bytes(&png),
    );
    assert_eq!(status, 415, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .expect("error")
            .contains("Content-Type: image/png"),
        "{answer}"
    );
    // An upload that stalls is answered 408 once upload_timeout_s has passed.
    let (status, answer) = partial_upload(
        &server.base,
        "/v2/models/nuclei/measure?params=fluorescence-dapi",
        png.len(),
        &png[..10],
    );
    assert_eq!(status, 408, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .expect("error")
            .contains("upload_timeout_s (1 s)"),
        "{answer}"
    );
    // Headers that trickle in are cut off once header_timeout_s has passed.
    let (waited, ended) = support::trickle_headers(&server.base);
    assert!(
        waited >= std::time::Duration::from_millis(900) && waited < std::time::Duration::from_secs(15),
        "closed after {waited:?} ({ended:?})"
    );
    assert_eq!(get(&format!("{}/v2/health/live", server.base)).0, 200, "still up");
}

#[test]
fn infer_returns_the_models_probabilities_and_refuses_shapes_that_do_not_fit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let release = release(tmp.path());
    let server = serve(&release, &[]);
    let url = format!("{}/v2/models/nuclei/infer", server.base);
    let send = |body: Value| answer(ureq::post(&url).send_json(body));
    let (h, w) = (24usize, 40usize);
    // A bright disc on a dark background, as the model's preprocessing would give it.
    let data: Vec<f32> = (0..h * w)
        .map(|i| {
            let (y, x) = ((i / w) as f32, (i % w) as f32);
            if (y - 12.0).powi(2) + (x - 20.0).powi(2) < 36.0 {
                0.9
            } else {
                0.05
            }
        })
        .collect();
    let request = |shape: Vec<usize>, datatype: &str, data: &[f32]| serde_json::json!({ "id": "r1", "inputs": [{ "name": "image", "shape": shape, "datatype": datatype, "data": data }] });
    let (status, out) = send(request(vec![1, 1, h, w], "FP32", &data));
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["id"], "r1");
    let t = &out["outputs"][0];
    let channels = out["parameters"]["outputs"].as_array().expect("outputs").len();
    assert_eq!(t["shape"], serde_json::json!([1, channels, h, w]));
    let values = t["data"].as_array().expect("data");
    assert_eq!(values.len(), channels * h * w);
    assert!(
        values
            .iter()
            .all(|v| v.as_f64().is_some_and(|p| (0.0..=1.0).contains(&p)))
    );
    // The disc's centre is more likely foreground than the corner.
    let p = |y: usize, x: usize| values[y * w + x].as_f64().expect("number");
    assert!(p(12, 20) > p(0, 0), "centre {} corner {}", p(12, 20), p(0, 0));

    for (body, says) in [
        (
            request(vec![1, 3, h, w], "FP32", &vec![0.0; 3 * h * w]),
            "input channel",
        ),
        (request(vec![1, 1, h, w], "FP32", &data[1..]), "do not fill"),
        (request(vec![1, 1, h, w], "INT8", &data), "FP32"),
        (request(vec![h, w], "FP32", &data), "shape"),
        (serde_json::json!({ "inputs": [] }), "exactly one input"),
    ] {
        let (status, answer) = send(body);
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"].as_str().expect("error").contains(says), "{answer}");
    }
}

#[test]
fn the_page_is_self_contained_and_what_it_reads_is_served() {
    let tmp = tempfile::tempdir().expect("tmp");
    let release = release(tmp.path());
    let server = serve(&release, &[]);
    let base = &server.base;
    let fetch = |path: &str| ureq::get(&format!("{base}{path}")).call().expect(path);
    let page = fetch("/");
    assert_eq!(page.content_type(), "text/html");
    let policy = page.header("content-security-policy").expect("a CSP").to_owned();
    assert!(
        policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"),
        "{policy}"
    );
    let html = page.into_string().expect("html");
    for (asset, kind) in [("/page/app.js", "text/javascript"), ("/page/app.css", "text/css")] {
        assert!(html.contains(asset), "the page loads {asset}");
        let a = fetch(asset);
        assert_eq!(a.content_type(), kind);
        let text = a.into_string().expect("text");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{asset} reaches nowhere else"
        );
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN, no external fonts"
    );
    // What the script reads: the models and their image types, then measure's fields.
    let script = fetch("/page/app.js").into_string().expect("js");
    for used in [
        "/v2/health/ready",
        "/v2/models/",
        "parameters.image_types",
        "answer.objects",
        "overlay: \"png\"",
    ] {
        assert!(script.contains(used), "the script uses {used}");
    }
    let (_, ready) = get(&format!("{base}/v2/health/ready"));
    let name = ready["models"]
        .as_object()
        .expect("models")
        .keys()
        .next()
        .expect("a model")
        .clone();
    let (_, meta) = get(&format!("{base}/v2/models/{name}"));
    let types = meta["parameters"]["image_types"].as_array().expect("image types");
    assert_eq!(types, &[Value::from("fluorescence-dapi")]);
    let cfg = SynthConfig {
        count: 1,
        seed: 5,
        size: [96, 80],
        style: Style::Fluorescence,
    };
    let (image, _) = cellops_dataset::synthetic::generate_one(&cfg, 0);
    let png = cellops_dataset::io::encode_png(&image).expect("png");
    let url = format!("{base}/v2/models/{name}/measure?params=fluorescence-dapi&name=cells&overlay=png");
    let overlay = ureq::post(&url)
        .set("Content-Type", "image/png")
        .send_bytes(&png)
        .expect("overlay");
    assert_eq!(overlay.content_type(), "image/png");
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut overlay.into_reader(), &mut bytes).expect("bytes");
    let drawn = cellops_dataset::io::decode(&bytes, 1 << 20).expect("a PNG").raster;
    assert_eq!(
        (drawn.width, drawn.height, drawn.channels),
        (96, 80, 3),
        "the image, in colour"
    );
}

#[test]
fn the_public_and_private_listeners_need_the_token_and_loopback_does_not() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().expect("tmp");
    let release = release(tmp.path());
    let token = tmp.path().join("token");
    std::fs::write(&token, "correct-horse-battery-staple\n").expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let server = serve(
        &release,
        &[
            "--public-listen",
            "127.0.0.1:0",
            "--private-listen",
            "127.0.0.1:0",
            "--token-file",
            token.to_str().expect("utf-8"),
        ],
    );
    let address = |which: &str| {
        server
            .log
            .split(&format!("{which} listener on "))
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the address is printed")
            .to_owned()
    };
    let (public, private) = (address("public"), address("private"));
    assert!(!server.log.contains("correct-horse"), "the token is never printed");
    let ready = |base: &str, auth: Option<&str>| {
        let mut r = ureq::get(&format!("{base}/v2/health/ready"));
        if let Some(a) = auth {
            r = r.set("Authorization", a);
        }
        support::answer(r.call())
    };
    assert_eq!(ready(&server.base, None).0, 200, "loopback: no token");
    let (status, body) = ready(&public, None);
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().expect("error").contains("Bearer"), "{body}");
    assert_eq!(ready(&public, Some("Bearer wrong-horse-battery-staple")).0, 401);
    assert_eq!(ready(&public, Some("Bearer correct-horse-battery-staple")).0, 200);
    assert_eq!(get(&format!("{public}/v2/health/live")).0, 200, "liveness stays open");
    // The private listener (a load balancer's health check): health open, work behind the token.
    assert_eq!(ready(&private, None).0, 200, "readiness without the token");
    assert_eq!(get(&format!("{private}/v2/health/live")).0, 200);
    let (status, body) = get(&format!("{private}/v2/models/nuclei"));
    assert_eq!(status, 401, "{body}");
}

#[test]
fn a_folder_without_deploy_json_is_refused_unless_unverified_is_asked_for() {
    let tmp = tempfile::tempdir().expect("tmp");
    let release = release(tmp.path());
    std::fs::remove_file(release.join("deploy.json")).expect("remove the record");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cellops-serve"))
        .args([
            "--release",
            release.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
            "--device",
            "cpu",
        ])
        .env_remove("GITHUB_ACTIONS")
        .output()
        .expect("run cellops-serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("deploy.json") && stderr.contains("--allow-unverified"),
        "{stderr}"
    );
    let server = serve(&release, &["--allow-unverified"]);
    let (status, ready) = get(&format!("{}/v2/health/ready", server.base));
    assert_eq!((status, &ready["verified"]), (200, &Value::Bool(false)), "{ready}");
}
