//! `deploy-cell-params` with `--service-socket` against the real service: a deploy ends only
//! when the service serves the new release; a release the service refuses (here: a golden
//! output that is not the one its bundle records) is switched back, the deploy fails with the
//! service's reason, and the service never stopped serving the previous release.

#![allow(clippy::unwrap_used, reason = "test code")]

mod support;

use std::path::{Path, PathBuf};

use cellops_actions::{Env, Runner};
use cellops_deploy_cell_params::{Args, Done, run};
use support::{get, release_named, serve};

/// A lab's repository as the deploy reads it: parameters, the bundle and the service binary.
fn repo(root: &Path) -> PathBuf {
    let r = release_named(root, "repo");
    std::fs::create_dir_all(r.join("bin")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_cellops-serve"), r.join("bin/cellops-serve")).unwrap();
    r
}

fn deploy(repo: &Path, server: &Path, socket: Option<&Path>) -> Result<String, String> {
    let mut args = Args::new(&format!("file://{}", server.display())).unwrap();
    args.root = repo.to_owned();
    args.include = Some("models/**,bin/**".to_owned());
    args.service_socket = socket.map(|s| s.display().to_string());
    args.health_timeout = 20;
    let runner = Runner::new(&Env::default(), Box::new(std::io::sink()), Box::new(std::io::sink()));
    match run(&args, &runner) {
        Ok(Done::Deployed(outcome, _)) => Ok(outcome.id),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn a_deploy_waits_for_the_service_and_one_it_refuses_is_switched_back() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path());
    let server = tmp.path().join("server");
    let first = deploy(&repo, &server, None).unwrap();
    let socket = tmp.path().join("admin.sock");
    let service = serve(&server.join("current"), &["--admin-socket", socket.to_str().unwrap()]);
    let ready = || get(&format!("{}/v2/health/ready", service.base)).1;
    assert_eq!(ready()["release"], first.as_str());
    assert_eq!(
        ready()["verified"],
        true,
        "a deployed release is checked against deploy.json"
    );

    // A new parameter file: the deploy returns once the service serves it.
    let params = repo.join("cell-params/fluorescence-dapi.yaml");
    let text = std::fs::read_to_string(&params).unwrap();
    std::fs::write(&params, text.replacen("description:", "description: v2 -", 1)).unwrap();
    let second = deploy(&repo, &server, Some(&socket)).unwrap();
    assert_ne!(second, first);
    assert_eq!(ready()["release"], second.as_str(), "served when the deploy ended");

    // A golden output that differs from the one bundle.json records: uploaded intact (the
    // deploy's own hashes match), refused by the service, switched back.
    let golden = repo.join("models/nuclei/golden.f32");
    let mut bytes = std::fs::read(&golden).unwrap();
    bytes[0] ^= 0x40;
    std::fs::write(&golden, bytes).unwrap();
    let err = deploy(&repo, &server, Some(&socket)).unwrap_err();
    assert!(
        err.contains("health check failed") && err.contains("golden.f32"),
        "{err}"
    );
    assert!(err.contains(&format!("is back on {second}")), "{err}");
    assert_eq!(
        std::fs::read_link(server.join("current")).unwrap(),
        PathBuf::from(format!("releases/{second}"))
    );
    let body = ready();
    assert_eq!(body["release"], second.as_str(), "{body}");
    assert!(
        body["last_reload_error"].as_str().unwrap().contains("golden.f32"),
        "{body}"
    );
}
