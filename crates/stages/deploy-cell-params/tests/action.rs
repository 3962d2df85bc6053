//! `cellops-deploy-cell-params` run the way a workflow runs it: inputs from `INPUT_*` (the key from
//! a secret), outputs and summary in the runner's files, a real sshd on 127.0.0.1 or a local
//! `file://` folder.

use std::path::{Path, PathBuf};

use cellops_test_support::action::{self as harness, ActionRun};
use cellops_test_support::sshd::Sshd;

fn run_action(dir: &Path, inputs: &[(&str, &str)]) -> ActionRun {
    let env = [
        ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
        ("GITHUB_ACTOR", "octocat"),
    ];
    harness::run_action(
        Path::new(env!("CARGO_BIN_EXE_cellops-deploy-cell-params")),
        dir,
        inputs,
        &env,
    )
    .expect("run")
}

/// The shipped nuclei model's `bundle.json` (a real bundle header).
fn shipped_bundle_json() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../models/nuclei/bundle.json")
}

/// The id recorded in [`shipped_bundle_json`].
fn shipped_bundle_id() -> String {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shipped_bundle_json()).expect("read")).expect("json");
    meta["id"].as_str().expect("id").to_owned()
}

/// A repository checkout with valid parameter files and a model bundle.
fn repo(root: &Path) -> PathBuf {
    let r = root.join("repo");
    std::fs::create_dir_all(r.join("cell-params")).expect("dir");
    std::fs::create_dir_all(r.join("models/unet/bundle")).expect("dir");
    std::fs::write(r.join("cell-params/he.yaml"), "description: H&E\npixel_size_um: 0.25\n").expect("write");
    std::fs::write(
        r.join("cell-params/ki67.yaml"),
        "description: Ki-67\npixel_size_um: 0.5\n",
    )
    .expect("write");
    std::fs::copy(shipped_bundle_json(), r.join("models/unet/bundle/bundle.json")).expect("copy bundle.json");
    std::fs::write(r.join("models/unet/bundle/model.safetensors"), vec![1u8; 5000]).expect("write");
    r
}

#[test]
fn deploys_to_a_folder_incrementally_and_records_provenance() {
    let tmp = tempfile::tempdir().expect("tmp");
    let r = repo(tmp.path());
    let server = tmp.path().join("server");
    let target = format!("file://{}", server.display());
    let inputs = [("target", target.as_str()), ("include", "models/unet/bundle/**")];
    let first = run_action(&r, &inputs);
    assert_eq!(first.code(), 0, "{}", first.stdout());
    assert_eq!(first.outputs["files-sent"], "4");
    let id = first.outputs["release-id"].clone();
    assert!(id.ends_with("-0123456"), "{id}");
    assert_eq!(first.outputs["path"], format!("{}/releases/{id}", server.display()));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(server.join(format!("releases/{id}/deploy.json"))).expect("deploy.json"))
            .expect("json");
    assert_eq!(record["bundle_ids"], serde_json::json!([shipped_bundle_id()]));
    assert_eq!(record["actor"], "octocat");
    assert_eq!(record["git_sha"], "0123456789abcdef0123456789abcdef01234567");
    assert!(server.join("current/cell-params/he.yaml").is_file());
    assert!(first.summary.contains("## Deployed release"), "{}", first.summary);
    // Nothing changed: no release, nothing sent, the attempt logged.
    let same = run_action(&r, &inputs);
    assert_eq!(same.code(), 0, "{}", same.stdout());
    assert_eq!(
        (same.outputs["release-id"].as_str(), same.outputs["bytes-sent"].as_str()),
        (id.as_str(), "0")
    );
    assert!(
        same.stdout().contains(&format!("unchanged, release {id}")),
        "{}",
        same.stdout()
    );
    assert!(same.summary.contains("## Unchanged"), "{}", same.summary);
    assert_eq!(std::fs::read_dir(server.join("releases")).expect("releases").count(), 1);
    let log = std::fs::read_to_string(server.join("deployments.jsonl")).expect("log");
    let last: serde_json::Value = serde_json::from_str(log.lines().last().expect("a line")).expect("json");
    assert_eq!(
        (&last["event"], &last["release"], &last["actor"]),
        (
            &serde_json::json!("unchanged"),
            &serde_json::json!(id),
            &serde_json::json!("octocat")
        )
    );
    // Forced: a new release of the same files, nothing sent but the release record.
    let mut forced = inputs.to_vec();
    forced.push(("force", "true"));
    let again = run_action(&r, &forced);
    assert_eq!(again.code(), 0, "{}", again.stdout());
    assert_ne!(again.outputs["release-id"], id);
    assert_eq!(again.outputs["files-sent"], "0");
    let bytes: u64 = again.outputs["bytes-sent"].parse().expect("bytes");
    assert!(bytes > 0 && bytes < 4096, "{bytes}");
    // list and rollback.
    let list = run_action(&r, &[("target", target.as_str()), ("command", "list")]);
    assert_eq!(list.code(), 0, "{}", list.stdout());
    assert_eq!(list.outputs["release-id"], again.outputs["release-id"]);
    let back = run_action(&r, &[("target", target.as_str()), ("command", "rollback")]);
    assert_eq!(back.code(), 0, "{}", back.stdout());
    assert_eq!(back.outputs["release-id"], id);
    assert_eq!(
        std::fs::read_link(server.join("current")).expect("link"),
        PathBuf::from(format!("releases/{id}"))
    );
}

#[test]
fn invalid_parameters_are_annotated_and_never_uploaded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let r = repo(tmp.path());
    std::fs::write(
        r.join("cell-params/bad.yaml"),
        "description: broken\npixel_size_um: 0.5\nfilters:\n  min_area_um2: 3\n  max_aera_um2: 4\n",
    )
    .expect("write");
    let server = tmp.path().join("server");
    let run = run_action(&r, &[("target", &format!("file://{}", server.display()))]);
    assert_eq!(run.code(), 2, "{}", run.stdout());
    let out = run.stdout();
    assert!(out.contains("::error file=cell-params/bad.yaml,line=5,col=3"), "{out}");
    assert!(out.contains("nothing was uploaded"), "{out}");
    assert!(!server.exists(), "nothing was written to the server");
    // From another folder with --root (as the pull-request workflow checks out head/): the
    // annotation still names the repository's path.
    let run = harness::run_action(
        Path::new(env!("CARGO_BIN_EXE_cellops-deploy-cell-params")),
        tmp.path(),
        &[("target", &format!("file://{}", server.display())), ("root", "repo")],
        &[],
    )
    .expect("run");
    assert_eq!(run.code(), 2, "{}", run.stdout());
    assert!(
        run.stdout().contains("::error file=cell-params/bad.yaml,line=5,col=3"),
        "{}",
        run.stdout()
    );
}

/// A secret outside the checkout, as `/etc/shadow` is.
const SECRET: &str = "root:$6$saltsaltsalt$hashhashhashhashhash:19000:0:99999:7:::";

#[cfg(unix)]
#[test]
fn links_out_of_the_checkout_are_refused_by_name_and_never_followed() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().expect("tmp");
    let r = repo(tmp.path());
    std::fs::write(tmp.path().join("shadow"), SECRET).expect("secret");
    let server = tmp.path().join("server");
    let target = format!("file://{}", server.display());
    // A parameter file, then a file an include glob picks, each a link out of the checkout.
    for (link, include) in [
        ("cell-params/x.yaml", None),
        ("models/unet/bundle/notes.txt", Some("models/**")),
    ] {
        symlink(tmp.path().join("shadow"), r.join(link)).expect("link");
        let mut inputs = vec![("target", target.as_str())];
        inputs.extend(include.map(|g| ("include", g)));
        let run = run_action(&r, &inputs);
        let out = format!("{}{}", run.stdout(), String::from_utf8_lossy(&run.output.stderr));
        assert_ne!(run.code(), 0, "{out}");
        assert!(out.contains(link) && out.contains("resolves outside"), "{out}");
        assert!(!out.contains("saltsalt"), "the secret is never read: {out}");
        assert!(!server.exists(), "nothing was deployed");
        std::fs::remove_file(r.join(link)).expect("unlink");
    }
    // The source folder itself a link out of the checkout: its files are refused too.
    std::fs::create_dir_all(tmp.path().join("elsewhere")).expect("dir");
    std::fs::write(
        tmp.path().join("elsewhere/a.yaml"),
        "description: a\npixel_size_um: 1\n",
    )
    .expect("a");
    symlink(tmp.path().join("elsewhere"), r.join("linked")).expect("link");
    let run = run_action(&r, &[("target", target.as_str()), ("source", "linked")]);
    assert_ne!(run.code(), 0, "{}", run.stdout());
    assert!(
        run.stdout().contains("reached through a symbolic link"),
        "{}",
        run.stdout()
    );
    assert!(!server.exists(), "nothing was deployed");
    // A link out that no include pattern picks does not stop a deploy.
    let run = run_action(&r, &[("target", target.as_str()), ("include", "models/**")]);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    std::fs::remove_dir_all(&server).expect("reset the server");
    // A link that stays inside the checkout is deployed as the file it points to.
    symlink(r.join("cell-params/he.yaml"), r.join("cell-params/he-copy.yaml")).expect("link");
    let run = run_action(&r, &[("target", target.as_str())]);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    let current = server.join("current/cell-params/he-copy.yaml");
    assert_eq!(
        std::fs::read_to_string(current).expect("deployed"),
        "description: H&E\npixel_size_um: 0.25\n"
    );
}

#[test]
fn a_parameter_file_s_contents_are_quoted_as_short_excerpts_only() {
    let tmp = tempfile::tempdir().expect("tmp");
    let r = repo(tmp.path());
    // Not YAML settings at all: the whole file is one value that the parser quotes.
    std::fs::write(r.join("cell-params/x.yaml"), format!("{SECRET}\n{SECRET}\n")).expect("write");
    let server = tmp.path().join("server");
    let run = run_action(&r, &[("target", &format!("file://{}", server.display()))]);
    let out = format!("{}{}", run.stdout(), String::from_utf8_lossy(&run.output.stderr));
    assert_eq!(run.code(), 2, "{out}");
    assert!(out.contains("cell-params/x.yaml"), "{out}");
    assert!(
        !out.contains("saltsaltsalt$hash"),
        "at most an excerpt of the value: {out}"
    );
    assert!(!server.exists(), "nothing was written to the server");
}

#[test]
fn a_broken_bundle_header_is_refused_by_name_and_never_uploaded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let r = repo(tmp.path());
    std::fs::write(
        r.join("models/unet/bundle/bundle.json"),
        "{\"format\": \"cellops.unet-bundle/1\", \"id\":",
    )
    .expect("write");
    let server = tmp.path().join("server");
    let target = format!("file://{}", server.display());
    let run = run_action(&r, &[("target", target.as_str()), ("include", "models/unet/bundle/**")]);
    assert_eq!(run.code(), 2, "{}", run.stdout());
    assert!(
        run.stdout().contains("models/unet/bundle/bundle.json"),
        "{}",
        run.stdout()
    );
    assert!(!server.exists(), "nothing was written to the server");
}

#[test]
fn deploys_over_ssh_with_the_key_from_a_secret_masked() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sshd = Sshd::start(&tmp.path().join("sshd")).expect("sshd");
    let r = repo(tmp.path());
    let server = tmp.path().join("server");
    let port = sshd.port.to_string();
    let known = sshd.known_hosts_line();
    let base = server.display().to_string();
    let inputs = [
        ("host", "127.0.0.1"),
        ("port", port.as_str()),
        ("username", sshd.user.as_str()),
        ("key", sshd.client_key.as_str()),
        ("known-hosts", known.as_str()),
        ("target", base.as_str()),
        ("health-check", "test -f cell-params/he.yaml"),
    ];
    let run = run_action(&r, &inputs);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    assert_eq!(run.outputs["files-sent"], "2");
    assert!(server.join("current/cell-params/ki67.yaml").is_file());
    // Every line of the key is masked before anything else is printed, and never shown.
    let out = run.stdout();
    let body: Vec<&str> = sshd
        .client_key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 4)
        .collect();
    for line in &body {
        assert!(out.contains(&format!("::add-mask::{line}")), "{line} not masked");
        assert_eq!(out.matches(line).count(), 1, "{line} printed outside its mask command");
    }
    assert!(!run.summary.contains(body[0]));
    // Without a pin, the action refuses and shows the key to pin.
    let unpinned: Vec<(&str, &str)> = inputs.iter().copied().filter(|(k, _)| *k != "known-hosts").collect();
    let run = run_action(&r, &unpinned);
    assert_eq!(run.code(), 1, "{}", run.stdout());
    let out = run.stdout();
    assert!(out.contains("unknown host key") && out.contains("SHA256:"), "{out}");
    // The explicit opt-out works, loudly.
    let mut insecure = unpinned.clone();
    insecure.push(("insecure-skip-host-key-check", "true"));
    let run = run_action(&r, &insecure);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    assert!(run.stdout().contains("::warning title=INSECURE"), "{}", run.stdout());
}

#[test]
fn several_targets_get_one_release_and_a_hosts_file_adds_to_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let r = repo(tmp.path());
    let servers = Sshd::fleet(tmp.path(), 3).expect("sshd");
    let url = |i: usize| {
        let s = &servers[i];
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            s.user,
            s.port,
            tmp.path().join(format!("host-{i}")).display()
        )
    };
    // Two targets as the input's lines, the third from a hosts file (as Terraform writes it).
    let hosts_file = tmp.path().join("hosts.txt");
    std::fs::write(&hosts_file, format!("# deploy targets\n{}\n", url(2))).expect("hosts");
    let known: Vec<String> = servers.iter().map(Sshd::known_hosts_line).collect();
    let (targets, known, hosts) = (
        format!("{}\n{}\n", url(0), url(1)),
        known.join("\n"),
        hosts_file.display().to_string(),
    );
    let inputs = [
        ("key", servers[0].client_key.as_str()),
        ("known-hosts", known.as_str()),
        ("target", targets.as_str()),
        ("hosts-file", hosts.as_str()),
        ("health-check", "test -f cell-params/he.yaml"),
    ];
    let run = run_action(&r, &inputs);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    assert_eq!(run.outputs["hosts"], "3");
    let id = &run.outputs["release-id"];
    for i in 0..3 {
        let current = std::fs::read_link(tmp.path().join(format!("host-{i}/current"))).expect("current");
        assert_eq!(current, Path::new("releases").join(id), "host {i}");
    }
    assert_eq!(run.outputs["files-sent"], "6", "two parameter files on each host");
    assert!(run.summary.contains("on 3 hosts"), "{}", run.summary);
    // The registry's read-only commands go over every host.
    let mut list = inputs.to_vec();
    list.push(("command", "list"));
    let run = run_action(&r, &list);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    for i in 0..3 {
        assert!(run.summary.contains(&format!("### {}", url(i))), "{}", run.summary);
    }
    assert_eq!(run.summary.matches(id.as_str()).count(), 3, "{}", run.summary);
    // A second release everywhere, then a rollback of the whole fleet to the first.
    std::fs::write(
        r.join("cell-params/he.yaml"),
        "description: H&E v2\npixel_size_um: 0.25\n",
    )
    .expect("write");
    let second = run_action(&r, &inputs);
    assert_eq!(second.code(), 0, "{}", second.stdout());
    assert_ne!(&second.outputs["release-id"], id);
    let mut rollback = inputs.to_vec();
    rollback.push(("command", "rollback"));
    let run = run_action(&r, &rollback);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    assert_eq!(&run.outputs["release-id"], id);
    for i in 0..3 {
        let current = std::fs::read_link(tmp.path().join(format!("host-{i}/current"))).expect("current");
        assert_eq!(current, Path::new("releases").join(id), "host {i} rolled back");
    }
    // A promotion reaches every host, or none: one host's lock held leaves no alias behind.
    let mut promote = inputs.to_vec();
    promote.extend([("command", "promote"), ("alias", "staging"), ("release", id.as_str())]);
    let lock = tmp.path().join("host-1/.lock");
    cellops_test_support::hold_deploy_lock(&tmp.path().join("host-1")).expect("lock");
    let run = run_action(&r, &promote);
    assert_ne!(run.code(), 0, "{}", run.stdout());
    assert!(
        run.stdout().contains(&format!("{} failed to promote", url(1))),
        "{}",
        run.stdout()
    );
    let staging = |i: usize| std::fs::read_link(tmp.path().join(format!("host-{i}/aliases/staging"))).ok();
    assert_eq!((0..3).map(staging).collect::<Vec<_>>(), vec![None; 3]);
    std::fs::remove_dir_all(&lock).expect("unlock");
    let run = run_action(&r, &promote);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    assert_eq!(run.outputs["hosts"], "3");
    for i in 0..3 {
        assert_eq!(staging(i), Some(Path::new("../releases").join(id)), "host {i}");
    }
}

#[test]
fn a_full_disk_on_the_server_fails_the_deploy_before_anything_is_switched() {
    use cellops_test_support::tmpfs::Tmpfs;
    let tmp = tempfile::tempdir().expect("tmp");
    let r = repo(tmp.path());
    std::fs::write(r.join("models/unet/bundle/model.safetensors"), vec![7u8; 400_000]).expect("write");
    let Some(disk) = Tmpfs::mount(tmp.path(), "full", 128 * 1024) else {
        return;
    };
    let server = disk.path.join("server");
    let target = format!("file://{}", server.display());
    let run = run_action(&r, &[("target", target.as_str()), ("include", "models/unet/bundle/**")]);
    assert_eq!(run.code(), 1, "{}", run.stdout());
    assert!(run.stdout().contains("not enough space"), "{}", run.stdout());
    assert!(!server.join("current").exists(), "nothing switched");
    let releases: Vec<_> = std::fs::read_dir(server.join("releases"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(releases.is_empty(), "no release, no partial upload left: {releases:?}");
}

#[test]
fn a_deploy_user_without_write_permission_changes_nothing_on_the_server() {
    use cellops_test_support::unprivileged::open_up;
    let tmp = tempfile::tempdir().expect("tmp");
    let r = repo(tmp.path());
    open_up(&r).expect("open up");
    let server = tmp.path().join("server");
    let target = format!("file://{}", server.display());
    let first = run_action(&r, &[("target", target.as_str())]);
    assert_eq!(first.code(), 0, "{}", first.stdout());
    let current = std::fs::read_link(server.join("current")).expect("current");
    std::fs::write(
        r.join("cell-params/he.yaml"),
        "description: H&E v2\npixel_size_um: 0.25\n",
    )
    .expect("write");
    // The server's folders belong to another user: this one may read them, not write.
    let env = [("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")];
    let bin = Path::new(env!("CARGO_BIN_EXE_cellops-deploy-cell-params"));
    let denied = harness::run_action_unprivileged(bin, &[], &r, &[("target", target.as_str())], &env).expect("run");
    assert_ne!(denied.code(), 0, "{}", denied.stdout());
    assert!(
        denied.stdout().contains("Permission denied") && denied.stdout().contains(&server.display().to_string()),
        "{}",
        denied.stdout()
    );
    assert_eq!(
        std::fs::read_link(server.join("current")).expect("current"),
        current,
        "current untouched"
    );
    let releases = std::fs::read_dir(server.join("releases")).expect("releases").count();
    assert_eq!(releases, 1, "no new or partial release");
    assert!(!server.join(".lock").exists(), "no lock left behind");
}
