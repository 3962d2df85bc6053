//! The harness of the service's tests: releases as a deploy leaves them, the real
//! `cellops-serve` binary on a free loopback port, and a real HTTP client.

#![allow(dead_code, reason = "each test file uses its own part of the harness")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use cellops_formats::release::{DeployRecord, FORMAT, FileEntry, RECORD, sha256_of};
use serde_json::Value;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// A release as a deploy leaves it: the shipped nuclei bundle and one parameter file.
pub fn release(root: &Path) -> PathBuf {
    release_named(root, "release-1")
}

/// A release folder `root/<name>` as a deploy leaves it: the shipped nuclei bundle, one
/// parameter file and `deploy.json` (id `<name>`).
pub fn release_named(root: &Path, name: &str) -> PathBuf {
    let r = root.join(name);
    let bundle = r.join("models/nuclei");
    std::fs::create_dir_all(&bundle).expect("dir");
    std::fs::create_dir_all(r.join("cell-params")).expect("dir");
    for f in [
        "bundle.json",
        "model.safetensors",
        "golden.png",
        "golden.f32",
        "reference.json",
    ] {
        std::fs::copy(repo().join("models/nuclei").join(f), bundle.join(f)).expect("copy the bundle");
    }
    std::fs::copy(
        repo().join("cell-params/fluorescence-dapi.yaml"),
        r.join("cell-params/fluorescence-dapi.yaml"),
    )
    .expect("copy the parameters");
    record(&r, name);
    r
}

/// The server, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// What it printed before it listened.
    pub log: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(release: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cellops-serve"))
        .args([
            "--release",
            &release.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--device",
            "cpu",
        ])
        .args(extra)
        .env_remove("GITHUB_ACTIONS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cellops-serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    let base = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            panic!("cellops-serve stopped before listening:\n{seen}");
        };
        if let Some(addr) = line.split("listening on ").nth(1) {
            break addr.trim().to_owned();
        }
        seen.push_str(&line);
        seen.push('\n');
    };
    // Keep draining its messages so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, base, log: seen }
}

pub fn get(url: &str) -> (u16, Value) {
    answer(ureq::get(url).call())
}

pub fn post(url: &str, body: &[u8]) -> (u16, Value) {
    answer(
        ureq::post(url)
            .set("Content-Type", "application/octet-stream")
            .send_bytes(body),
    )
}

pub fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let response = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("no answer: {e}"),
    };
    let status = response.status();
    (status, response.into_json().expect("a JSON body"))
}

/// Sends a POST's headers announcing `length` bytes, none of them, and reads the answer.
pub fn headers_only(base: &str, path: &str, length: usize) -> (u16, Value) {
    partial_upload(base, path, length, &[])
}

/// Sends a POST's headers announcing `length` bytes and then only `sent` of them (a stalled
/// upload), and reads the answer.
pub fn partial_upload(base: &str, path: &str, length: usize, sent: &[u8]) -> (u16, Value) {
    use std::io::{Read as _, Write as _};
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
    )
    .expect("send headers");
    stream.write_all(sent).expect("send part of the body");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).expect("read the answer");
        got.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let want = cellops_test_support::content_length(head);
            if n == 0 || body.len() >= want {
                let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
                return (status, serde_json::from_str(body).unwrap_or(Value::Null));
            }
        }
        assert!(n > 0, "the connection closed before an answer: {text}");
    }
}

/// Sends half a request's headers and waits (up to 20 s) for the server to close the
/// connection: how long that took, and how the read ended.
pub fn trickle_headers(base: &str) -> (std::time::Duration, std::io::Result<usize>) {
    use std::io::{Read as _, Write as _};
    let mut slow = std::net::TcpStream::connect(base.trim_start_matches("http://")).expect("connect");
    slow.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    slow.write_all(b"POST /v2/models/nuclei/measure HTTP/1.1\r\nHost: x\r\n")
        .expect("part of the headers");
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let ended = slow.read_to_end(&mut rest);
    (started.elapsed(), ended)
}

/// Every file below `dir/rel`, as `/`-separated paths relative to `dir`.
fn files_below(dir: &Path, rel: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir.join(rel)).expect("list the release") {
        let entry = entry.expect("entry");
        let path = rel.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            out.extend(files_below(dir, &path));
        } else {
            out.push(path.to_string_lossy().replace('\\', "/"));
        }
    }
    out
}

/// Writes `deploy.json` for the release folder `dir` (every file in it), as a deploy does.
pub fn record(dir: &Path, id: &str) {
    let mut files = Vec::new();
    for rel in files_below(dir, Path::new("")) {
        if rel == RECORD {
            continue;
        }
        let (size, sha256) = sha256_of(std::fs::File::open(dir.join(&rel)).expect("record")).expect("record");
        files.push(FileEntry {
            path: rel,
            size,
            sha256,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let r = DeployRecord {
        format: FORMAT.into(),
        id: id.into(),
        created: "2026-12-06T00:00:00Z".into(),
        git_sha: None,
        actor: None,
        run: None,
        previous: None,
        bundle_ids: Vec::new(),
        content_sha256: String::new(),
        files,
    };
    std::fs::write(dir.join(RECORD), serde_json::to_vec(&r).expect("record")).expect("record");
}

/// `evaluate`'s `objects.json` rows, `summary.json` and `objects.csv` for the images in `images`.
pub fn evaluate(images: &Path, params: &Path, bundle: &Path, out: &Path) -> (Vec<Value>, Value, String) {
    let mut args = cellops_evaluate::Args::new(images, params, out).expect("evaluate args");
    args.model = Some(bundle.to_owned());
    args.device = cellops_unet::device::Accelerator::Cpu;
    args.geojson = true;
    let runner = cellops_actions::Runner::new(
        &cellops_actions::Env::default(),
        Box::new(std::io::sink()),
        Box::new(std::io::sink()),
    );
    cellops_evaluate::run(&args, &runner).expect("evaluate runs");
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(out.join(name)).expect("report file")).expect("json")
    };
    let Value::Array(rows) = read("objects.json") else {
        panic!("objects.json is a list")
    };
    let csv = std::fs::read_to_string(out.join("objects.csv")).expect("objects.csv");
    (rows, read("summary.json"), csv)
}

/// One synthetic fluorescence image (128×128) under `root/images/original/`: the dataset folder,
/// the image's path and its stem.
pub fn synthetic_image(root: &Path) -> (PathBuf, PathBuf, String) {
    use cellops_dataset::synthetic::{Style, SynthConfig, write_dataset};
    let images = root.join("images");
    let cfg = SynthConfig {
        count: 1,
        seed: 7,
        size: [128, 128],
        style: Style::Fluorescence,
    };
    write_dataset(&cfg, &images).expect("synthetic images");
    let image = std::fs::read_dir(images.join("original"))
        .expect("original/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
        .expect("an image");
    let stem = image.file_stem().expect("stem").to_string_lossy().into_owned();
    (images, image, stem)
}
