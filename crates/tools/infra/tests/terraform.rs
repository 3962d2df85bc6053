//! Checks of `infra/`, the Terraform configuration of the deploy droplet, without a `terraform`
//! binary: every `infra/*.tf` file is parsed with hcl-rs and the parts the deployment relies on are
//! checked (pinned providers, droplet size, firewall, pinned host key, outputs, descriptions); the
//! cloud-init template is rendered with hcl-rs's template evaluator and parsed as YAML; and every
//! file is checked for the layout `terraform fmt -check` demands (indentation, `=` alignment).
//!
//! The workflow `.github/workflows/terraform.yml` runs the real `terraform fmt` and `validate`.

#![allow(clippy::too_many_lines, reason = "a test reads top to bottom as one scenario")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::expr::{Expression, ObjectKey};
use hcl::template::Template;
use hcl::{Block, Body};
use serde_json::Value as Json;

fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../infra")
}

fn read(name: &str) -> String {
    let path = infra().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The files Terraform reads plus the ones that document and feed it.
const EXPECTED_FILES: [&str; 7] = [
    "versions.tf",
    "variables.tf",
    "main.tf",
    "outputs.tf",
    "cloud-init.yaml.tftpl",
    "terraform.tfvars.example",
    "README.md",
];

/// The outputs the repository secrets and the deploy action are filled from.
const REQUIRED_OUTPUTS: [&str; 6] = [
    "ipv4_address",
    "host_key_fingerprint",
    "known_hosts_line",
    "ssh_target",
    "deploy_user",
    "base_path",
];

/// Droplet sizes as DigitalOcean publishes them: slug, RAM in GB, disk in GB.
const KNOWN_SIZES: [(&str, u32, u32); 9] = [
    ("s-2vcpu-4gb", 4, 80),
    ("s-2vcpu-4gb-amd", 4, 80),
    ("s-2vcpu-4gb-120gb-intel", 4, 120),
    ("s-4vcpu-8gb", 8, 160),
    ("s-4vcpu-8gb-amd", 8, 160),
    ("s-4vcpu-8gb-240gb-intel", 8, 240),
    ("s-8vcpu-16gb", 16, 320),
    ("s-8vcpu-16gb-amd", 16, 320),
    ("s-8vcpu-16gb-480gb-intel", 16, 480),
];

/// The project's minimum droplet.
const MIN_RAM_GB: u32 = 4;
const MIN_DISK_GB: u32 = 25;

// ---------------------------------------------------------------------------------------------
// Loading and navigating the configuration

/// Every `infra/*.tf` file, parsed, in file-name order.
struct Config {
    files: Vec<(String, Body)>,
}

impl Config {
    fn load() -> Config {
        let mut names: Vec<String> = std::fs::read_dir(infra())
            .expect("read infra/")
            .map(|entry| entry.expect("infra/ entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tf"))
            .collect();
        names.sort();
        for required in ["versions.tf", "variables.tf", "main.tf", "outputs.tf"] {
            assert!(names.iter().any(|n| n == required), "infra/{required} is missing");
        }
        let files = names
            .into_iter()
            .map(|name| {
                let body = hcl::parse(&read(&name)).unwrap_or_else(|e| panic!("infra/{name} is not valid HCL: {e}"));
                (name, body)
            })
            .collect();
        Config { files }
    }

    fn blocks<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Block> + 'a {
        let kind = kind.to_owned();
        self.files.iter().flat_map(move |(_, body)| {
            let kind = kind.clone();
            body.blocks().filter(move |b| b.identifier() == kind)
        })
    }

    /// The one top-level block `kind "labels[0]" "labels[1]" …`.
    fn block(&self, kind: &str, labels: &[&str]) -> &Block {
        let found: Vec<&Block> = self.blocks(kind).filter(|b| labels_of(b) == labels).collect();
        assert_eq!(
            found.len(),
            1,
            "expected exactly one {kind} {labels:?} block in infra/*.tf"
        );
        found[0]
    }

    /// Top-level blocks of `kind` by their single label (variables, outputs).
    fn named(&self, kind: &str) -> BTreeMap<String, &Block> {
        let mut map = BTreeMap::new();
        for block in self.blocks(kind) {
            let labels = labels_of(block);
            assert_eq!(labels.len(), 1, "{kind} blocks have one label: {labels:?}");
            assert!(
                map.insert(labels[0].to_owned(), block).is_none(),
                "{kind} {:?} is declared twice",
                labels[0]
            );
        }
        map
    }

    fn variables(&self) -> BTreeMap<String, &Block> {
        self.named("variable")
    }

    fn outputs(&self) -> BTreeMap<String, &Block> {
        self.named("output")
    }

    fn local(&self, name: &str) -> &Expression {
        let found: Vec<&Expression> = self
            .blocks("locals")
            .flat_map(|b| b.body().attributes())
            .filter(|a| a.key() == name)
            .map(|a| a.expr())
            .collect();
        assert_eq!(found.len(), 1, "expected local.{name} to be defined once");
        found[0]
    }

    fn droplet(&self) -> &Block {
        let droplets: Vec<&Block> = self
            .blocks("resource")
            .filter(|b| labels_of(b)[0] == "digitalocean_droplet")
            .collect();
        assert_eq!(droplets.len(), 1, "expected exactly one digitalocean_droplet");
        droplets[0]
    }

    fn firewall(&self) -> &Block {
        let firewalls: Vec<&Block> = self
            .blocks("resource")
            .filter(|b| labels_of(b)[0] == "digitalocean_firewall")
            .collect();
        assert_eq!(firewalls.len(), 1, "expected exactly one digitalocean_firewall");
        firewalls[0]
    }
}

fn labels_of(block: &Block) -> Vec<&str> {
    block.labels().iter().map(|l| l.as_str()).collect()
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

fn required_attr<'a>(block: &'a Block, key: &str) -> &'a Expression {
    attr(block.body(), key).unwrap_or_else(|| panic!("{} {:?} has no {key}", block.identifier(), labels_of(block)))
}

fn string_attr<'a>(block: &'a Block, key: &str) -> &'a str {
    match required_attr(block, key) {
        Expression::String(s) => s,
        other => panic!(
            "{} {:?}: {key} should be a literal string, is {other}",
            block.identifier(),
            labels_of(block)
        ),
    }
}

/// The expression as HCL source, normalised by hcl-rs's formatter (`var.x`, `["a", "b"]`, …).
fn src(expr: &Expression) -> String {
    expr.to_string()
}

fn sub_blocks<'a>(block: &'a Block, kind: &str) -> impl Iterator<Item = &'a Block> + 'a {
    let kind = kind.to_owned();
    block.body().blocks().filter(move |b| b.identifier() == kind)
}

fn object_entries(expr: &Expression) -> BTreeMap<String, &Expression> {
    match expr {
        Expression::Object(object) => object
            .iter()
            .map(|(k, v): (&ObjectKey, &Expression)| (k.to_string(), v))
            .collect(),
        other => panic!("expected an object, got {other}"),
    }
}

fn strings(expr: &Expression) -> Vec<String> {
    match expr {
        Expression::Array(items) => items
            .iter()
            .map(|item| match item {
                Expression::String(s) => s.clone(),
                other => panic!("expected a literal string, got {other}"),
            })
            .collect(),
        other => panic!("expected a list of literal strings, got {other}"),
    }
}

/// A slug's RAM: its first `<n>gb` segment (`s-2vcpu-4gb-120gb-intel` → 4).
fn slug_ram_gb(slug: &str) -> Option<u32> {
    slug.split('-')
        .find_map(|part| part.strip_suffix("gb"))
        .and_then(|n| n.parse().ok())
}

/// The allow-list of the `droplet_size` validation: the string list passed to `contains`.
fn allowed_sizes(config: &Config) -> Vec<String> {
    let size = &config.variables()["droplet_size"];
    let mut lists = Vec::new();
    for validation in sub_blocks(size, "validation") {
        if let Expression::FuncCall(call) = required_attr(validation, "condition")
            && call.name.name.as_str() == "contains"
            && call.args.len() == 2
            && src(&call.args[1]) == "var.droplet_size"
        {
            lists.push(strings(&call.args[0]));
        }
    }
    assert_eq!(
        lists.len(),
        1,
        "droplet_size needs one validation `contains([...allowed sizes], var.droplet_size)`"
    );
    lists.remove(0)
}

// ---------------------------------------------------------------------------------------------
// Structure of the configuration

#[test]
fn all_files_are_there() {
    for name in EXPECTED_FILES {
        assert!(infra().join(name).is_file(), "infra/{name} is missing");
    }
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../.github/workflows/terraform.yml")
            .is_file(),
        ".github/workflows/terraform.yml is missing"
    );
}

#[test]
fn terraform_and_providers_are_pinned() {
    let config = Config::load();
    let terraform: Vec<&Block> = config.blocks("terraform").collect();
    assert_eq!(terraform.len(), 1, "one terraform block");
    let required_version = string_attr(terraform[0], "required_version");
    assert_eq!(
        required_version, ">= 1.6",
        "Terraform >= 1.6 (check blocks, endswith, preconditions)"
    );

    let providers: Vec<&Block> = sub_blocks(terraform[0], "required_providers").collect();
    assert_eq!(providers.len(), 1, "one required_providers block");
    let mut pinned = BTreeMap::new();
    for attribute in providers[0].body().attributes() {
        let entry = object_entries(attribute.expr());
        let source = match entry.get("source") {
            Some(Expression::String(s)) => s.clone(),
            _ => panic!("provider {} has no literal source", attribute.key()),
        };
        let version = match entry.get("version") {
            Some(Expression::String(s)) => s.clone(),
            _ => panic!("provider {} has no literal version constraint", attribute.key()),
        };
        assert!(
            version.starts_with("~> "),
            "provider {} must be pinned with ~> (is {version:?})",
            attribute.key()
        );
        pinned.insert(attribute.key().to_owned(), (source, version));
    }
    let (source, version) = pinned.get("digitalocean").expect("digitalocean in required_providers");
    assert_eq!(source, "digitalocean/digitalocean");
    assert!(version.starts_with("~> 2."), "digitalocean ~> 2.x, is {version}");
    let (source, version) = pinned.get("tls").expect("tls in required_providers");
    assert_eq!(source, "hashicorp/tls");
    assert!(
        version.starts_with("~> 4."),
        "tls ~> 4.x (public_key_fingerprint_sha256), is {version}"
    );
    for (name, (source, _)) in &pinned {
        assert!(
            source.ends_with(&format!("/{name}")),
            "provider {name} comes from {source}"
        );
    }

    // Every resource type belongs to a pinned provider.
    for resource in config.blocks("resource").chain(config.blocks("data")) {
        let kind = labels_of(resource)[0];
        let provider = kind.split('_').next().unwrap_or_default();
        assert!(
            pinned.contains_key(provider),
            "{kind} needs provider {provider} in required_providers"
        );
    }
}

#[test]
fn droplet_uses_the_variables_and_a_big_enough_size() {
    let config = Config::load();
    let droplet = config.droplet();
    for (key, expected) in [
        ("count", "var.droplet_count"),
        ("name", "local.fleet ? \"${var.name}-${count.index + 1}\" : var.name"),
        ("vpc_uuid", "one(digitalocean_vpc.cellops[*].id)"),
        ("region", "var.region"),
        ("image", "var.image"),
        ("size", "var.droplet_size"),
        ("tags", "var.tags"),
        ("backups", "var.backups"),
        ("ipv6", "var.ipv6"),
    ] {
        assert_eq!(src(required_attr(droplet, key)), expected, "droplet {key}");
    }
    assert_eq!(
        required_attr(droplet, "monitoring"),
        &Expression::Bool(true),
        "monitoring is on"
    );
    let ssh_keys = src(required_attr(droplet, "ssh_keys"));
    assert!(
        ssh_keys.contains("digitalocean_ssh_key."),
        "droplet ssh_keys use the deploy key: {ssh_keys}"
    );

    let variables = config.variables();
    let image = match attr(variables["image"].body(), "default") {
        Some(Expression::String(s)) => s.clone(),
        other => panic!("image needs a literal default, has {other:?}"),
    };
    assert_eq!(image, "ubuntu-24-04-x64", "Ubuntu 24.04 LTS by default");

    let default_size = match attr(variables["droplet_size"].body(), "default") {
        Some(Expression::String(s)) => s.clone(),
        other => panic!("droplet_size needs a literal default, has {other:?}"),
    };
    let ram = slug_ram_gb(&default_size).expect("the default size slug names its RAM");
    assert!(
        ram >= MIN_RAM_GB,
        "default size {default_size} has {ram} GB RAM, the minimum is {MIN_RAM_GB} GB"
    );

    let allowed = allowed_sizes(&config);
    assert!(
        allowed.contains(&default_size),
        "the default size {default_size} must be in the allow-list"
    );
    for slug in &allowed {
        let (_, table_ram, disk) = KNOWN_SIZES
            .iter()
            .find(|(known, _, _)| known == slug)
            .unwrap_or_else(|| panic!("allow-listed size {slug} is not in this test's table of known sizes"));
        assert_eq!(
            slug_ram_gb(slug),
            Some(*table_ram),
            "{slug}: RAM in the slug vs the table"
        );
        assert!(
            *table_ram >= MIN_RAM_GB,
            "{slug} has {table_ram} GB RAM, below the minimum"
        );
        assert!(*disk >= MIN_DISK_GB, "{slug} has a {disk} GB disk, below the minimum");
    }
    // Every allowed size is named in the error message, so a refusal lists the alternatives.
    let size_var = &variables["droplet_size"];
    let message = sub_blocks(size_var, "validation")
        .map(|v| src(required_attr(v, "error_message")))
        .collect::<String>();
    for slug in &allowed {
        assert!(
            message.contains(slug.as_str()),
            "the droplet_size error message should list {slug}"
        );
    }
    // ... and so is README.md.
    let readme = read("README.md");
    for slug in &allowed {
        assert!(
            readme.contains(&format!("`{slug}`")),
            "infra/README.md should list the size {slug}"
        );
    }
}

#[test]
fn slug_ram_is_read_from_the_first_gb_segment() {
    assert_eq!(slug_ram_gb("s-2vcpu-4gb"), Some(4));
    assert_eq!(slug_ram_gb("s-4vcpu-8gb-240gb-intel"), Some(8));
    assert_eq!(slug_ram_gb("s-1vcpu-1gb"), Some(1));
    assert_eq!(slug_ram_gb("c-2"), None);
}

#[test]
fn firewall_opens_ssh_only_to_the_declared_networks() {
    let config = Config::load();
    let firewall = config.firewall();
    let droplet_label = labels_of(config.droplet())[1].to_owned();
    assert_eq!(
        src(required_attr(firewall, "droplet_ids")),
        format!("digitalocean_droplet.{droplet_label}[*].id"),
        "the firewall applies to every droplet"
    );

    // Static inbound rules: exactly SSH from var.ssh_allowed_cidrs.
    let inbound: Vec<&Block> = sub_blocks(firewall, "inbound_rule").collect();
    assert_eq!(inbound.len(), 1, "one static inbound rule (SSH)");
    assert_eq!(string_attr(inbound[0], "protocol"), "tcp");
    assert_eq!(string_attr(inbound[0], "port_range"), "22");
    assert_eq!(
        src(required_attr(inbound[0], "source_addresses")),
        "var.ssh_allowed_cidrs"
    );
    assert_eq!(
        inbound[0].body().attributes().count(),
        3,
        "the SSH rule has protocol, port_range, source_addresses only"
    );

    // Dynamic inbound rules: HTTP/HTTPS from var.http_allowed_cidrs (none when it is empty), and a
    // load-balanced fleet's private listener from its load balancer only.
    let dynamic: Vec<&Block> = sub_blocks(firewall, "dynamic").collect();
    for block in &dynamic {
        assert_eq!(labels_of(block), ["inbound_rule"], "only inbound rules are dynamic");
    }
    assert_eq!(
        dynamic.len(),
        2,
        "two dynamic inbound rules (HTTP, the load balancer's)"
    );
    let lb_rule = dynamic[1];
    assert_eq!(
        src(required_attr(lb_rule, "for_each")),
        "local.load_balanced ? [var.serve_private_port] : []"
    );
    let lb_content: Vec<&Block> = sub_blocks(lb_rule, "content").collect();
    let uids = match required_attr(lb_content[0], "source_load_balancer_uids") {
        Expression::Array(items) => items.iter().map(src).collect::<Vec<_>>(),
        other => panic!("source_load_balancer_uids should be a list, is {other}"),
    };
    assert_eq!(
        uids,
        ["digitalocean_loadbalancer.cellops[0].id"],
        "only the load balancer reaches the private listener"
    );
    assert!(attr(lb_content[0].body(), "source_addresses").is_none());
    let dynamic = &dynamic[..1];
    let http = dynamic[0];
    let for_each = src(required_attr(http, "for_each"));
    let ports_expr = match for_each.strip_prefix("local.") {
        Some(local) => config.local(local),
        None => required_attr(http, "for_each"),
    };
    let Expression::Conditional(cond) = ports_expr else {
        panic!(
            "the HTTP rule's for_each should be `length(var.http_allowed_cidrs) > 0 ? [ports] : []`, is {ports_expr}"
        )
    };
    assert_eq!(src(&cond.cond_expr), "length(var.http_allowed_cidrs) > 0");
    // Each web port only with what listens on it: 80 with the reports, 443 with the HTTPS service.
    let Expression::FuncCall(compact) = &cond.true_expr else {
        panic!("the web ports should be compact([...]), are {}", cond.true_expr)
    };
    assert_eq!(compact.name.to_string(), "compact", "web ports: {}", cond.true_expr);
    let ports: BTreeSet<String> = match compact.args.as_slice() {
        [Expression::Array(items)] => items.iter().map(src).collect(),
        other => panic!("compact takes one list of ports, got {other:?}"),
    };
    assert_eq!(
        ports,
        BTreeSet::from([
            "var.serve_reports ? \"80\" : \"\"".to_owned(),
            "var.serve_public && !local.fleet ? \"443\" : \"\"".to_owned(),
        ]),
        "web ports"
    );
    assert_eq!(
        cond.false_expr,
        Expression::Array(Vec::new()),
        "no HTTP rule when http_allowed_cidrs is empty"
    );
    let content: Vec<&Block> = sub_blocks(http, "content").collect();
    assert_eq!(content.len(), 1);
    assert_eq!(string_attr(content[0], "protocol"), "tcp");
    assert_eq!(src(required_attr(content[0], "port_range")), "inbound_rule.value");
    assert_eq!(
        src(required_attr(content[0], "source_addresses")),
        "var.http_allowed_cidrs"
    );

    // No literal "everyone" anywhere in the inbound rules.
    let inbound_src: String = inbound
        .iter()
        .chain(dynamic)
        .flat_map(|b| {
            b.body()
                .attributes()
                .map(|a| src(a.expr()))
                .chain(b.body().blocks().map(|c| format!("{:?}", c.body())))
        })
        .collect();
    for everyone in ["0.0.0.0/0", "::/0"] {
        assert!(
            !inbound_src.contains(everyone),
            "an inbound rule names {everyone} literally"
        );
    }

    // Outbound: everything.
    let outbound: BTreeSet<String> = sub_blocks(firewall, "outbound_rule")
        .map(|b| string_attr(b, "protocol").to_owned())
        .collect();
    assert_eq!(
        outbound,
        BTreeSet::from(["icmp".to_owned(), "tcp".to_owned(), "udp".to_owned()])
    );

    // The /0 refusal, with its escape hatch.
    let preconditions: Vec<String> = sub_blocks(firewall, "lifecycle")
        .flat_map(|l| sub_blocks(l, "precondition"))
        .map(|p| src(required_attr(p, "condition")))
        .collect();
    assert!(
        preconditions
            .iter()
            .any(|c| c.contains("var.allow_ssh_from_anywhere") && c.contains("local.ssh_open_to_world")),
        "the firewall needs a precondition refusing /0 SSH networks unless allow_ssh_from_anywhere: {preconditions:?}"
    );
    for needle in [
        "!var.serve_public || var.serve_service",
        "var.serve_public_port != var.serve_port",
    ] {
        assert!(
            preconditions.iter().any(|c| c.contains(needle)),
            "the firewall needs a precondition {needle:?}: {preconditions:?}"
        );
    }
    let open = src(config.local("ssh_open_to_world"));
    assert!(
        open.contains("var.ssh_allowed_cidrs") && open.contains("\"/0\""),
        "local.ssh_open_to_world: {open}"
    );

    // The networks: SSH has no default at all, HTTP defaults to nobody.
    let variables = config.variables();
    assert!(
        attr(variables["ssh_allowed_cidrs"].body(), "default").is_none(),
        "ssh_allowed_cidrs must have no default"
    );
    assert_eq!(
        attr(variables["http_allowed_cidrs"].body(), "default"),
        Some(&Expression::Array(Vec::new())),
        "http_allowed_cidrs defaults to []"
    );
    assert_eq!(
        attr(variables["allow_ssh_from_anywhere"].body(), "default"),
        Some(&Expression::Bool(false))
    );
    let ssh_validations: String = sub_blocks(variables["ssh_allowed_cidrs"], "validation")
        .map(|v| src(required_attr(v, "condition")))
        .collect();
    assert!(
        ssh_validations.contains("cidrhost("),
        "ssh_allowed_cidrs entries are validated as CIDRs"
    );

    // The deploy key is checked to be an OpenSSH public key line.
    let key_validations: String = sub_blocks(variables["deploy_public_key"], "validation")
        .map(|v| src(required_attr(v, "condition")))
        .collect();
    for prefix in ["ssh-ed25519 ", "ecdsa-sha2-", "ssh-rsa "] {
        assert!(
            key_validations.contains(prefix),
            "deploy_public_key validation should accept {prefix:?}"
        );
    }
}

#[test]
fn every_variable_and_output_is_described() {
    let config = Config::load();
    for (kind, blocks) in [("variable", config.variables()), ("output", config.outputs())] {
        assert!(!blocks.is_empty(), "no {kind} blocks found");
        for (name, block) in blocks {
            let description = string_attr(block, "description");
            assert!(!description.trim().is_empty(), "{kind} {name} has an empty description");
        }
    }
    // Terraform wants validation messages to be sentences.
    let checks = config
        .blocks("variable")
        .flat_map(|v| sub_blocks(v, "validation"))
        .chain(
            config
                .blocks("resource")
                .flat_map(|r| sub_blocks(r, "lifecycle"))
                .flat_map(|l| sub_blocks(l, "precondition").chain(sub_blocks(l, "postcondition"))),
        );
    for check in checks {
        let message = string_attr(check, "error_message");
        let first = message.chars().next().expect("empty error_message");
        assert!(
            first.is_uppercase(),
            "error_message should start with a capital letter: {message:?}"
        );
        assert!(
            message.ends_with('.') || message.ends_with('?'),
            "error_message should end a sentence: {message:?}"
        );
    }
}

#[test]
fn the_required_outputs_exist() {
    let config = Config::load();
    let outputs = config.outputs();
    for name in REQUIRED_OUTPUTS {
        assert!(outputs.contains_key(name), "output {name} is missing");
    }
    let value = |name: &str| src(required_attr(outputs[name], "value"));
    let host = labels_of(config.block("resource", &["tls_private_key", "host"]))[1].to_owned();
    assert_eq!(
        value("host_key_fingerprint"),
        format!("tls_private_key.{host}.public_key_fingerprint_sha256")
    );
    let known_hosts = value("known_hosts_line");
    assert!(
        known_hosts.contains(".ipv4_address} ${"),
        "known_hosts_line is `<ip> <key>`: {known_hosts}"
    );
    assert!(
        known_hosts.contains("trimspace(tls_private_key.host.public_key_openssh)"),
        "{known_hosts}"
    );
    let target = value("ssh_target");
    assert!(
        target.starts_with("\"ssh://${var.deploy_user}@${") && target.ends_with(":22${var.base_path}\""),
        "{target}"
    );
    assert_eq!(value("deploy_user"), "var.deploy_user");
    assert_eq!(value("base_path"), "var.base_path");
    // No output hands out a private key.
    for (name, block) in &outputs {
        let v = src(required_attr(block, "value"));
        assert!(!v.contains("private_key_"), "output {name} exposes a private key: {v}");
    }
}

#[test]
fn host_key_is_generated_and_injected_through_cloud_init() {
    let config = Config::load();
    let host = config.block("resource", &["tls_private_key", "host"]);
    assert_eq!(string_attr(host, "algorithm"), "ED25519");

    let (path, vars) = templatefile_call(&config);
    assert_eq!(path, "\"${path.module}/cloud-init.yaml.tftpl\"");
    assert_eq!(
        src(vars["host_private_key"]),
        "tls_private_key.host.private_key_openssh"
    );
    assert_eq!(
        src(vars["host_public_key"]),
        "trimspace(tls_private_key.host.public_key_openssh)"
    );
    assert_eq!(src(vars["deploy_user"]), "var.deploy_user");
    assert_eq!(src(vars["base_path"]), "var.base_path");
    assert_eq!(src(vars["serve_reports"]), "var.serve_reports");
    assert!(
        src(vars["authorized_key"]).starts_with("local."),
        "authorized_key comes from the deploy_public_key local"
    );
}

/// The droplet's `user_data = templatefile(path, { … })`: the path and the variables.
fn templatefile_call(config: &Config) -> (String, BTreeMap<String, &Expression>) {
    let Expression::FuncCall(call) = required_attr(config.droplet(), "user_data") else {
        panic!("the droplet's user_data should be templatefile(...)")
    };
    assert_eq!(call.name.name.as_str(), "templatefile");
    assert_eq!(call.args.len(), 2);
    (src(&call.args[0]), object_entries(&call.args[1]))
}

// ---------------------------------------------------------------------------------------------
// cloud-init

#[test]
fn cloud_init_template_mentions_what_the_deploy_needs() {
    let template = read("cloud-init.yaml.tftpl");
    assert!(
        template.starts_with("#cloud-config\n"),
        "cloud-init needs #cloud-config on the first line"
    );
    for needle in [
        "${jsonencode(deploy_user)}",
        "AllowUsers ${deploy_user}",
        "${base_path}/releases",
        "${base_path}/deployments.jsonl",
        "PasswordAuthentication no",
        "PermitRootLogin no",
        "HostKey /etc/ssh/ssh_host_ed25519_key",
        "ssh_deletekeys: true",
        "ssh_genkeytypes: []",
        "ed25519_private: ${jsonencode(host_private_key)}",
        "ed25519_public: ${jsonencode(host_public_key)}",
        "ssh_pwauth: false",
        "lock_passwd: true",
        "- coreutils",
        "- unattended-upgrades",
        "Unattended-Upgrade \"1\"",
        "- nginx",
        "root ${base_path}/current;",
    ] {
        assert!(
            template.contains(needle),
            "cloud-init.yaml.tftpl should contain {needle:?}"
        );
    }
    // Terraform's `~}` strips all the whitespace after it, the next line's indentation included
    // (hcl-rs stops at the line break), which would break the YAML: only `%{~ … }` is used.
    assert!(
        !template.contains("~}"),
        "use %{{~ if … }} / %{{~ endif }}, not a right strip marker ~}}"
    );
    // Every variable handed to templatefile is used by the template.
    let config = Config::load();
    let (_, vars) = templatefile_call(&config);
    for name in vars.keys() {
        assert!(
            template.contains(name.as_str()),
            "templatefile passes {name}, which the template never uses"
        );
    }
}

/// Sample values for the template's variables, as Terraform would pass them.
struct Sample {
    sudo: bool,
    serve_reports: bool,
    serve_service: bool,
    /// The HTTPS front of the service (nginx) and its public listener.
    serve_public: bool,
    /// `http_allowed_cidrs`.
    allowed: Vec<&'static str>,
    /// The private listener's port on a load-balanced fleet (0: none).
    private_port: u64,
}

impl Sample {
    fn new(sudo: bool, serve_reports: bool, serve_service: bool) -> Self {
        Self {
            sudo,
            serve_reports,
            serve_service,
            serve_public: false,
            allowed: vec!["203.0.113.0/24"],
            private_port: 0,
        }
    }
}

const HOST_PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\nAAAA+/=\n-----END OPENSSH PRIVATE KEY-----\n";
const HOST_PUBLIC: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyHostKeyHostKeyHostKeyHostKeyHostKey";
const AUTHORIZED: &str =
    "restrict ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeployKeyDeployKeyDeployKeyDeployKeyDeploy ci@example";
const USER: &str = "cellops";
const BASE: &str = "/srv/cellops/cell-params";
const SERVE_PORT: u64 = 8080;
const PUBLIC_PORT: u64 = 8081;
const DOMAIN: &str = "cells.example.org";
const TOKEN: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL";
const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN EC PRIVATE KEY-----\nMHckey\n-----END EC PRIVATE KEY-----\n";

fn render(sample: &Sample) -> Json {
    let config = Config::load();
    let (_, vars) = templatefile_call(&config);
    let mut ctx = Context::new();
    for name in vars.keys() {
        match name.as_str() {
            "deploy_user" => ctx.declare_var("deploy_user", USER),
            "deploy_user_sudo" => ctx.declare_var("deploy_user_sudo", sample.sudo),
            "authorized_key" => ctx.declare_var("authorized_key", AUTHORIZED),
            "base_path" => ctx.declare_var("base_path", BASE),
            "host_private_key" => ctx.declare_var("host_private_key", HOST_PRIVATE),
            "host_public_key" => ctx.declare_var("host_public_key", HOST_PUBLIC),
            "serve_reports" => ctx.declare_var("serve_reports", sample.serve_reports),
            "serve_service" => ctx.declare_var("serve_service", sample.serve_service),
            "serve_port" => ctx.declare_var("serve_port", SERVE_PORT),
            "serve_memory_max" => ctx.declare_var("serve_memory_max", "75%"),
            "serve_public" => ctx.declare_var("serve_public", sample.serve_public),
            "public_port" => ctx.declare_var("public_port", PUBLIC_PORT),
            "private_port" => ctx.declare_var("private_port", sample.private_port),
            "http_allowed" => ctx.declare_var("http_allowed", sample.allowed.clone()),
            "service_domain" => ctx.declare_var("service_domain", DOMAIN),
            "service_cert" => ctx.declare_var("service_cert", if sample.serve_public { CERT } else { "" }),
            "service_key" => ctx.declare_var("service_key", if sample.serve_public { KEY } else { "" }),
            "service_token" => ctx.declare_var("service_token", if sample.serve_public { TOKEN } else { "" }),
            other => panic!("templatefile passes {other}: give it a sample value in this test"),
        }
    }
    fn jsonencode(args: FuncArgs) -> Result<hcl::Value, String> {
        serde_json::to_string(&args[0])
            .map(hcl::Value::from)
            .map_err(|e| e.to_string())
    }
    ctx.declare_func("jsonencode", FuncDef::builder().param(ParamType::Any).build(jsonencode));

    let template: Template = read("cloud-init.yaml.tftpl")
        .parse()
        .expect("cloud-init.yaml.tftpl is a valid HCL template");
    let text = template
        .evaluate(&ctx)
        .unwrap_or_else(|e| panic!("render cloud-init.yaml.tftpl: {e}"));
    assert!(text.starts_with("#cloud-config\n"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("rendered cloud-init is not YAML: {e}\n{text}"))
}

fn list<'a>(value: &'a Json, key: &str) -> &'a Vec<Json> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} should be a list, is {}", value[key]))
}

#[test]
fn cloud_init_renders_to_the_expected_cloud_config() {
    for (sudo, serve_reports, serve_service, serve_public) in [
        (false, false, false, false),
        (true, false, true, false),
        (false, true, true, false),
        (true, true, false, false),
        (false, false, true, true),
        (false, true, true, true),
    ] {
        {
            let cc = render(&Sample {
                serve_public,
                ..Sample::new(sudo, serve_reports, serve_service)
            });
            let case = format!(
                "(sudo {sudo}, serve_reports {serve_reports}, serve_service {serve_service}, serve_public {serve_public})"
            );
            let nginx_on = serve_reports || serve_public;

            // The pinned host key, and no other.
            assert_eq!(cc["ssh_deletekeys"], Json::Bool(true), "{case}");
            assert_eq!(cc["ssh_genkeytypes"], Json::Array(Vec::new()), "{case}");
            assert_eq!(cc["ssh_keys"]["ed25519_private"], HOST_PRIVATE, "{case}");
            assert_eq!(cc["ssh_keys"]["ed25519_public"], HOST_PUBLIC, "{case}");
            assert_eq!(
                cc["ssh_keys"].as_object().map(|o| o.len()),
                Some(2),
                "{case}: only the ed25519 key"
            );
            assert_eq!(cc["ssh_pwauth"], Json::Bool(false), "{case}");

            // The deploy user.
            let users = list(&cc, "users");
            assert_eq!(
                users.len(),
                1 + usize::from(serve_service),
                "{case}: the deploy user, and the service's when it runs"
            );
            let user = &users[0];
            assert_eq!(user["name"], USER, "{case}");
            assert_eq!(user["lock_passwd"], Json::Bool(true), "{case}");
            assert_eq!(user["ssh_authorized_keys"], serde_json::json!([AUTHORIZED]), "{case}");
            assert!(
                user.get("passwd").is_none() && user.get("hashed_passwd").is_none(),
                "{case}: no password"
            );
            assert_eq!(
                user.get("sudo").is_some(),
                sudo,
                "{case}: sudo only when deploy_user_sudo"
            );

            // Packages.
            let packages: Vec<&str> = list(&cc, "packages").iter().filter_map(Json::as_str).collect();
            for needed in ["coreutils", "openssh-server", "unattended-upgrades"] {
                assert!(packages.contains(&needed), "{case}: package {needed}");
            }
            assert_eq!(
                packages.contains(&"nginx"),
                nginx_on,
                "{case}: nginx only with serve_reports or serve_public"
            );

            // Files: sshd hardening, unattended-upgrades, nginx.
            let files: BTreeMap<&str, &str> = list(&cc, "write_files")
                .iter()
                .map(|f| {
                    (
                        f["path"].as_str().expect("write_files path"),
                        f["content"].as_str().expect("write_files content"),
                    )
                })
                .collect();
            let sshd = files
                .get("/etc/ssh/sshd_config.d/00-cellops.conf")
                .expect("sshd drop-in");
            let forwarding = if serve_service {
                vec![
                    "AllowTcpForwarding local".to_owned(),
                    format!("PermitOpen 127.0.0.1:{SERVE_PORT}"),
                    "PermitListen none".to_owned(),
                ]
            } else {
                vec!["AllowTcpForwarding no".to_owned()]
            };
            for line in &forwarding {
                assert!(sshd.lines().any(|l| l == line), "{case}: sshd drop-in lacks {line:?}");
            }
            assert_eq!(
                sshd.lines().filter(|l| l.starts_with("AllowTcpForwarding")).count(),
                1,
                "{case}: one forwarding rule"
            );
            check_service(&cc, &files, serve_service, serve_public, &case);
            check_public(&files, serve_public, &case);
            for line in [
                "PasswordAuthentication no",
                "PermitRootLogin no",
                &format!("AllowUsers {USER}"),
                "HostKey /etc/ssh/ssh_host_ed25519_key",
                "KbdInteractiveAuthentication no",
            ] {
                assert!(sshd.lines().any(|l| l == line), "{case}: sshd drop-in lacks {line:?}");
            }
            let auto = files
                .get("/etc/apt/apt.conf.d/20auto-upgrades")
                .expect("unattended-upgrades config");
            assert!(auto.contains("APT::Periodic::Unattended-Upgrade \"1\";"), "{case}");
            let nginx = files.get("/etc/nginx/sites-available/cellops-reports");
            assert_eq!(
                nginx.is_some(),
                serve_reports,
                "{case}: nginx site only with serve_reports"
            );
            if let Some(site) = nginx {
                assert!(
                    site.contains(&format!("root {BASE}/current;")),
                    "{case}: nginx serves <base>/current"
                );
                assert!(site.contains("limit_except GET"), "{case}: nginx is read-only");
            }

            // The layout, owned by the deploy user.
            let runcmd: Vec<Vec<&str>> = list(&cc, "runcmd")
                .iter()
                .map(|c| {
                    c.as_array()
                        .expect("runcmd entries are argument lists")
                        .iter()
                        .filter_map(Json::as_str)
                        .collect()
                })
                .collect();
            let releases = format!("{BASE}/releases");
            let journal = format!("{BASE}/deployments.jsonl");
            let owned = |cmd: &Vec<&str>| {
                cmd.windows(2).any(|w| w == ["-o", USER]) && cmd.windows(2).any(|w| w == ["-g", USER])
            };
            assert!(
                runcmd.iter().any(|c| c[0] == "install"
                    && c.contains(&"-d")
                    && c.contains(&BASE)
                    && c.contains(&releases.as_str())
                    && owned(c)),
                "{case}: install -d <base> <base>/releases owned by the deploy user: {runcmd:?}"
            );
            assert!(
                runcmd.iter().any(|c| c[0] == "install"
                    && c.contains(&"/dev/null")
                    && c.last() == Some(&journal.as_str())
                    && owned(c)),
                "{case}: an empty <base>/deployments.jsonl owned by the deploy user: {runcmd:?}"
            );
            assert!(
                runcmd.iter().any(|c| c == &["systemctl", "restart", "ssh.service"]),
                "{case}: sshd reloads its settings"
            );
            assert_eq!(
                runcmd.iter().any(|c| c.iter().any(|a| a.contains("nginx -t"))),
                nginx_on,
                "{case}: nginx is checked and reloaded only when it runs"
            );
            for (site, on) in [("cellops-reports", serve_reports), ("cellops-service", serve_public)] {
                let enabled = runcmd.iter().any(|c| {
                    c.first() == Some(&"ln") && c.last() == Some(&format!("/etc/nginx/sites-enabled/{site}").as_str())
                });
                assert_eq!(enabled, on, "{case}: site {site} enabled");
            }
        }
    }
}

#[test]
fn a_fleet_gets_a_vpc_a_load_balancer_and_its_private_listener() {
    let config = Config::load();
    let vpc = config.block("resource", &["digitalocean_vpc", "cellops"]);
    assert_eq!(src(required_attr(vpc, "count")), "local.fleet ? 1 : 0");
    assert_eq!(src(required_attr(vpc, "ip_range")), "var.vpc_ip_range");
    assert_eq!(src(config.local("fleet")), "var.droplet_count > 1");
    assert_eq!(src(config.local("load_balanced")), "local.fleet && var.serve_public");

    let lb = config.block("resource", &["digitalocean_loadbalancer", "cellops"]);
    assert_eq!(src(required_attr(lb, "count")), "local.load_balanced ? 1 : 0");
    assert_eq!(
        src(required_attr(lb, "droplet_ids")),
        "digitalocean_droplet.cellops[*].id"
    );
    assert_eq!(src(required_attr(lb, "vpc_uuid")), "digitalocean_vpc.cellops[0].id");
    let rules: Vec<&Block> = sub_blocks(lb, "forwarding_rule").collect();
    assert_eq!(rules.len(), 1, "HTTPS only");
    let rule = rules[0];
    assert_eq!(string_attr(rule, "entry_protocol"), "https");
    assert_eq!(src(required_attr(rule, "entry_port")), "443");
    assert_eq!(string_attr(rule, "target_protocol"), "http");
    assert_eq!(src(required_attr(rule, "target_port")), "var.serve_private_port");
    assert_eq!(
        src(required_attr(rule, "certificate_name")),
        "digitalocean_certificate.service[0].name"
    );
    let health: Vec<&Block> = sub_blocks(lb, "healthcheck").collect();
    assert_eq!(health.len(), 1);
    assert_eq!(
        string_attr(health[0], "path"),
        "/v2/health/ready",
        "readiness, not liveness"
    );
    assert_eq!(src(required_attr(health[0], "port")), "var.serve_private_port");
    let firewall: Vec<&Block> = sub_blocks(lb, "firewall").collect();
    assert!(
        src(required_attr(firewall[0], "allow")).contains("var.http_allowed_cidrs"),
        "the load balancer admits the declared networks only"
    );
    let cert = config.block("resource", &["digitalocean_certificate", "service"]);
    assert_eq!(string_attr(cert, "type"), "custom");
    assert_eq!(
        src(required_attr(cert, "leaf_certificate")),
        "local.service_tls_certificate"
    );
    assert_eq!(src(required_attr(cert, "private_key")), "local.service_tls_private_key");

    // The droplets' template gets the private port only behind a load balancer.
    let (_, vars) = templatefile_call(&config);
    assert_eq!(
        src(vars["private_port"]),
        "local.load_balanced ? var.serve_private_port : 0"
    );
    let outputs = config.outputs();
    for (name, needle) in [
        ("deploy_targets", "for d in digitalocean_droplet.cellops"),
        ("known_hosts", "for d in digitalocean_droplet.cellops"),
        ("load_balancer_ip", "digitalocean_loadbalancer.cellops[*].ip"),
    ] {
        let value = src(required_attr(outputs[name], "value"));
        assert!(value.contains(needle), "output {name}: {value}");
    }

    // Rendered: the unit listens privately on the address the metadata script wrote.
    let cc = render(&Sample {
        serve_public: true,
        private_port: 8082,
        ..Sample::new(false, false, true)
    });
    let files: BTreeMap<&str, &str> = list(&cc, "write_files")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().expect("path"),
                f["content"].as_str().expect("content"),
            )
        })
        .collect();
    let unit = files["/etc/systemd/system/cellops-serve.service"];
    assert!(
        unit.lines()
            .any(|l| l == "EnvironmentFile=/etc/cellops-serve/private.env"),
        "{unit}"
    );
    let exec: Vec<&str> = unit.lines().filter(|l| l.starts_with("ExecStart=")).collect();
    assert_eq!(exec.len(), 1);
    assert!(
        exec[0].contains(" --private-listen ${PRIVATE_LISTEN} --token-file %d/token"),
        "{}",
        exec[0]
    );
    let script = files["/usr/local/sbin/cellops-private-address"];
    assert!(
        script.contains("169.254.169.254/metadata/v1/interfaces/private/0/ipv4/address"),
        "{script}"
    );
    assert!(script.contains("PRIVATE_LISTEN=%s:8082"), "{script}");
    assert!(
        list(&cc, "runcmd")
            .iter()
            .any(|c| c.as_array().and_then(|a| a.first()).and_then(Json::as_str)
                == Some("/usr/local/sbin/cellops-private-address")),
        "the script runs at first boot"
    );
    // Without a fleet, none of it.
    let single = render(&Sample {
        serve_public: true,
        ..Sample::new(false, false, true)
    });
    let text = serde_json::to_string(&single).expect("json");
    assert!(!text.contains("private-listen") && !text.contains("cellops-private-address"));
}

/// The service's users, units and commands, present exactly when `serve_service` is on.
fn check_service(cc: &Json, files: &BTreeMap<&str, &str>, on: bool, public: bool, case: &str) {
    let unit = files.get("/etc/systemd/system/cellops-serve.service");
    assert_eq!(unit.is_some(), on, "{case}: the service unit only with serve_service");
    assert_eq!(
        files.contains_key("/etc/systemd/system/cellops-serve.path"),
        on,
        "{case}"
    );
    let groups = cc.get("groups").and_then(Json::as_array).cloned().unwrap_or_default();
    assert_eq!(
        groups.contains(&Json::from("cellops-serve")),
        on,
        "{case}: the service's group"
    );
    let users = list(cc, "users");
    assert_eq!(
        users[0]["groups"] == serde_json::json!(["cellops-serve"]),
        on,
        "{case}: the deploy user may use the admin socket"
    );
    let Some(unit) = unit else { return };
    let service = &users[1];
    assert_eq!(service["name"], "cellops-serve", "{case}");
    assert_eq!(service["shell"], "/usr/sbin/nologin", "{case}");
    assert_eq!(service["system"], Json::Bool(true), "{case}");
    assert!(
        service.get("ssh_authorized_keys").is_none(),
        "{case}: no login for the service"
    );
    let public_flags = if public {
        format!(" --public-listen 127.0.0.1:{PUBLIC_PORT} --token-file %d/token")
    } else {
        String::new()
    };
    let exec = format!(
        "ExecStart={BASE}/current/bin/cellops-serve --release {BASE}/current --listen 127.0.0.1:{SERVE_PORT}{public_flags} --admin-socket /run/cellops-serve/admin.sock --state-dir /var/lib/cellops-serve --device cpu"
    );
    assert_eq!(
        unit.lines()
            .any(|l| l == "LoadCredential=token:/etc/cellops-serve/token"),
        public,
        "{case}: the token reaches the service as a systemd credential"
    );
    assert_eq!(
        unit.lines().filter(|l| l.starts_with("ExecStart=")).count(),
        1,
        "{case}"
    );
    for line in [
        exec.as_str(),
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "User=cellops-serve",
        "RuntimeDirectory=cellops-serve",
        "StateDirectory=cellops-serve",
        "StateDirectoryMode=0700",
        "ProtectSystem=strict",
        &format!("ReadOnlyPaths={BASE}"),
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "MemoryMax=75%",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ] {
        assert!(unit.lines().any(|l| l == line), "{case}: the unit lacks {line:?}");
    }
    assert!(
        unit.lines().any(|l| l.starts_with("WatchdogSec=")),
        "{case}: a watchdog"
    );
    let path = files["/etc/systemd/system/cellops-serve.path"];
    assert!(
        path.lines().any(|l| l == format!("PathChanged={BASE}/current")),
        "{case}"
    );
    let follow = files["/etc/systemd/system/cellops-serve-follow.service"];
    assert!(
        follow.contains("$$pid") && !follow.contains(" $pid"),
        "{case}: shell variables in a unit are written $$"
    );
    let enabled = list(cc, "runcmd")
        .iter()
        .any(|c| c == &serde_json::json!(["systemctl", "enable", "--now", "cellops-serve.path"]));
    assert!(enabled, "{case}: the path unit is enabled");
}

/// The HTTPS front of the service: token, certificate and key files, and the nginx site.
fn check_public(files: &BTreeMap<&str, &str>, on: bool, case: &str) {
    for path in [
        "/etc/cellops-serve/token",
        "/etc/nginx/cellops/service.crt",
        "/etc/nginx/cellops/service.key",
        "/etc/nginx/sites-available/cellops-service",
    ] {
        assert_eq!(files.contains_key(path), on, "{case}: {path} only with serve_public");
    }
    if !on {
        return;
    }
    assert_eq!(files["/etc/cellops-serve/token"], TOKEN, "{case}");
    assert_eq!(files["/etc/nginx/cellops/service.crt"], CERT, "{case}");
    assert_eq!(files["/etc/nginx/cellops/service.key"], KEY, "{case}");
    let site = files["/etc/nginx/sites-available/cellops-service"];
    for line in [
        "listen 443 ssl;".to_owned(),
        format!("server_name {DOMAIN};"),
        "ssl_protocols TLSv1.2 TLSv1.3;".to_owned(),
        "allow 203.0.113.0/24;".to_owned(),
        "deny all;".to_owned(),
        format!("proxy_pass http://127.0.0.1:{PUBLIC_PORT};"),
        "proxy_request_buffering off;".to_owned(),
    ] {
        assert!(
            site.lines().any(|l| l.trim() == line),
            "{case}: the HTTPS site lacks {line:?}:\n{site}"
        );
    }
    assert!(
        !site.contains(&format!(":{SERVE_PORT};")),
        "{case}: nginx never reaches the token-free loopback listener"
    );
}

/// The rendered HTTPS site, moved onto test paths and ports: `listen` on 127.0.0.1:`port`, the
/// certificate and key from `tls`, the upstream at `upstream`.
fn site_for_test(sample: &Sample, port: u16, tls: &(PathBuf, PathBuf), upstream: u16) -> String {
    let cc = render(sample);
    let site = list(&cc, "write_files")
        .iter()
        .find(|f| f["path"] == "/etc/nginx/sites-available/cellops-service")
        .and_then(|f| f["content"].as_str())
        .expect("the HTTPS site")
        .to_owned();
    site.lines()
        .filter(|l| !l.contains("listen [::]:443"))
        .map(|l| {
            l.replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
                .replace("/etc/nginx/cellops/service.crt", &tls.0.display().to_string())
                .replace("/etc/nginx/cellops/service.key", &tls.1.display().to_string())
                .replace(&format!("127.0.0.1:{PUBLIC_PORT};"), &format!("127.0.0.1:{upstream};"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the stand-in for the service's public listener received: the request head and body.
type Received = std::sync::mpsc::Receiver<(String, Vec<u8>)>;

/// A stand-in for the service's public listener (the service's own tests check its token): reads
/// each request's head and `Content-Length` body, sends them to the test, answers 200 with JSON.
fn upstream() -> (u16, Received) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
    let port = listener.local_addr().expect("upstream address").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            while reader.read_line(&mut head).unwrap_or(0) > 2 && !head.ends_with("\r\n\r\n") {}
            let length = cellops_test_support::content_length(&head);
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}";
            let _ = reader.get_mut().write_all(answer);
            let _ = tx.send((head, body));
        }
    });
    (port, rx)
}

/// `curl` through the front: the HTTP status and the body, or curl's complaint.
fn curl(port: u16, tls: &(PathBuf, PathBuf), extra: &[&str]) -> Result<(u16, String), String> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&tls.0)
        .args([
            "--resolve",
            &format!("{DOMAIN}:{port}:127.0.0.1"),
            "-w",
            "\n%{http_code}",
        ])
        .args(extra)
        .arg(format!("https://{DOMAIN}:{port}/v2/models/nuclei/measure?params=dapi"))
        .output()
        .map_err(|e| format!("run curl: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
}

/// The droplet's HTTPS front as nginx runs it: `nginx -t` accepts the rendered site; a client
/// from an allowed network reaches the public listener over TLS with its token and upload intact
/// and the forwarding headers set; a network not listed gets 403 and never reaches the service.
#[test]
fn the_https_front_runs_in_a_real_nginx() {
    use cellops_test_support::free_port;
    use cellops_test_support::nginx::{Nginx, self_signed};
    let dir = tempfile::tempdir().expect("temporary folder");
    let tls = self_signed(dir.path(), DOMAIN).expect("a test certificate");
    let (up, received) = upstream();
    let port = free_port().expect("a free port");
    let allowed = Sample {
        serve_public: true,
        allowed: vec!["198.51.100.0/24", "127.0.0.1/32"],
        ..Sample::new(false, false, true)
    };
    let site = site_for_test(&allowed, port, &tls, up);
    let nginx = Nginx::start(&dir.path().join("allowed"), &site, port).unwrap_or_else(|e| panic!("{e}\n{site}"));
    let upload: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let file = dir.path().join("upload.bin");
    std::fs::write(&file, &upload).expect("write the upload");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let data = format!("@{}", file.display());
    let (code, body) = curl(
        port,
        &tls,
        &["-H", &auth, "-H", "Content-Type: image/png", "--data-binary", &data],
    )
    .unwrap_or_else(|e| panic!("curl through the front: {e}"));
    assert_eq!((code, body.as_str()), (200, "{\"ok\":true}"));
    let (head, body) = received
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the upstream got the request");
    let head_lower = head.to_ascii_lowercase();
    assert!(
        head.starts_with("POST /v2/models/nuclei/measure?params=dapi HTTP/1.1\r\n"),
        "{head}"
    );
    for header in [
        format!("authorization: bearer {}", TOKEN.to_ascii_lowercase()),
        "x-forwarded-proto: https".to_owned(),
        "x-forwarded-for: 127.0.0.1".to_owned(),
        format!("host: {DOMAIN}"),
    ] {
        assert!(
            head_lower.lines().any(|l| l.trim() == header),
            "the upstream lacks {header:?}: {head}"
        );
    }
    assert!(
        body == upload,
        "the upload arrived changed ({} bytes of {})",
        body.len(),
        upload.len()
    );
    // Plain HTTP on the TLS port is not served.
    let plain = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "400", "plain HTTP is refused");
    drop(nginx);

    // The same front for networks that do not include this client: 403, nothing forwarded.
    let port = free_port().expect("a free port");
    let elsewhere = Sample {
        serve_public: true,
        allowed: vec!["198.51.100.0/24"],
        ..Sample::new(false, false, true)
    };
    let site = site_for_test(&elsewhere, port, &tls, up);
    let _nginx = Nginx::start(&dir.path().join("elsewhere"), &site, port).unwrap_or_else(|e| panic!("{e}\n{site}"));
    let (code, _) = curl(port, &tls, &["-H", &auth]).unwrap_or_else(|e| panic!("curl through the front: {e}"));
    assert_eq!(code, 403, "a network outside http_allowed_cidrs");
    assert!(
        received.recv_timeout(std::time::Duration::from_millis(300)).is_err(),
        "nothing reaches the service from a network not listed"
    );
}

// ---------------------------------------------------------------------------------------------
// terraform.tfvars.example

#[test]
fn tfvars_example_sets_only_declared_variables() {
    let config = Config::load();
    let variables = config.variables();
    let example = hcl::parse(&read("terraform.tfvars.example")).expect("terraform.tfvars.example is valid HCL");
    assert_eq!(example.blocks().count(), 0, "a tfvars file has only attributes");
    let mut set = BTreeSet::new();
    for attribute in example.attributes() {
        assert!(
            variables.contains_key(attribute.key()),
            "terraform.tfvars.example sets undeclared {}",
            attribute.key()
        );
        assert!(
            set.insert(attribute.key()),
            "terraform.tfvars.example sets {} twice",
            attribute.key()
        );
    }
    for (name, block) in &variables {
        if attr(block.body(), "default").is_none() {
            assert!(
                set.contains(name.as_str()),
                "terraform.tfvars.example should show the required variable {name}"
            );
        }
    }
    let ssh = strings(attr(&example, "ssh_allowed_cidrs").expect("ssh_allowed_cidrs"));
    assert!(
        ssh.iter().all(|c| !c.ends_with("/0")),
        "the example must not open SSH to everyone: {ssh:?}"
    );
    let key = match attr(&example, "deploy_public_key") {
        Some(Expression::String(s)) => s.clone(),
        other => panic!("deploy_public_key should be a literal string, is {other:?}"),
    };
    assert!(
        key.starts_with("ssh-ed25519 "),
        "the example deploy key is an ed25519 public key"
    );
}

// ---------------------------------------------------------------------------------------------
// Layout: what `terraform fmt -check` would complain about

/// HCL source split into what matters for formatting: the code of a line outside strings and
/// comments, so that brackets and `=` signs can be counted. Quoted strings may contain `${ … }`
/// interpolations with nested quotes; heredocs are not supported (infra/ has none).
#[derive(Debug, Default)]
struct LineCode {
    /// Net change of `(`, `[`, `{` minus `)`, `]`, `}` outside strings (interpolations balance).
    net_brackets: i32,
    /// Byte offset of the first `=` that is an assignment (not `==`, `!=`, `<=`, `>=`, `=>`).
    assign: Option<usize>,
    /// Net brackets from the assignment to the end of the line.
    net_after_assign: i32,
    /// The line is only a comment (or blank).
    comment_only: bool,
}

/// Lexer state carried across lines: inside a `/* */` comment or not.
fn scan_line(line: &str, in_block_comment: &mut bool) -> LineCode {
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Code { braces: u32 },
        Str,
    }
    let bytes = line.as_bytes();
    let mut stack = vec![Mode::Code { braces: 0 }];
    let mut code = LineCode::default();
    let mut events: Vec<(usize, i32)> = Vec::new();
    let mut saw_code = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if *in_block_comment {
            if c == b'*' && next == Some(b'/') {
                *in_block_comment = false;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        let top = *stack.last().expect("lexer stack");
        let outer = stack.len() == 1;
        match top {
            Mode::Str => match c {
                b'\\' => i += 1,
                b'"' => {
                    stack.pop();
                }
                b'$' | b'%' if next == Some(b'{') => {
                    if (c == b'$' || c == b'%') && bytes.get(i.wrapping_sub(1)) == Some(&c) {
                        // `$${` / `%%{` escapes
                    } else {
                        stack.push(Mode::Code { braces: 0 });
                    }
                    i += 1;
                }
                _ => {}
            },
            Mode::Code { braces } => {
                if !c.is_ascii_whitespace() && outer && c != b'#' && !(c == b'/' && matches!(next, Some(b'/' | b'*'))) {
                    saw_code = true;
                }
                match c {
                    b'#' if outer => break,
                    b'/' if outer && next == Some(b'/') => break,
                    b'/' if next == Some(b'*') => {
                        *in_block_comment = true;
                        i += 1;
                    }
                    b'"' => stack.push(Mode::Str),
                    b'(' | b'[' if outer => events.push((i, 1)),
                    b')' | b']' if outer => events.push((i, -1)),
                    b'{' => {
                        if outer {
                            events.push((i, 1));
                        } else if let Some(Mode::Code { braces }) = stack.last_mut() {
                            *braces += 1;
                        }
                    }
                    b'}' => {
                        if outer {
                            events.push((i, -1));
                        } else if braces == 0 {
                            stack.pop();
                        } else if let Some(Mode::Code { braces }) = stack.last_mut() {
                            *braces -= 1;
                        }
                    }
                    b'=' if outer && code.assign.is_none() => {
                        let prev = if i > 0 { bytes[i - 1] } else { b' ' };
                        let is_op = matches!(next, Some(b'=' | b'>')) || matches!(prev, b'=' | b'!' | b'<' | b'>');
                        if !is_op && saw_code {
                            code.assign = Some(i);
                        }
                        if next == Some(b'=') || next == Some(b'>') {
                            i += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        i += 1;
    }
    code.net_brackets = events.iter().map(|(_, d)| d).sum();
    if let Some(at) = code.assign {
        code.net_after_assign = events.iter().filter(|(pos, _)| *pos > at).map(|(_, d)| d).sum();
    }
    code.comment_only = !saw_code;
    code
}

/// The problems `terraform fmt` would fix in an HCL file: indentation (two spaces a nesting
/// level, as hclwrite counts it) and the alignment of `=` in runs of consecutive single-line
/// attributes; plus interpolation-only strings, which `terraform fmt` unwraps.
fn fmt_problems(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    let mut in_block_comment = false;
    let mut indents: Vec<i32> = Vec::new();
    let mut codes = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let was_in_comment = in_block_comment;
        let code = scan_line(line, &mut in_block_comment);
        if !line.trim().is_empty() && !was_in_comment {
            // hclwrite's formatIndent: a line opening brackets is indented at the current level
            // and pushes one level; a line closing them pops before it is indented.
            let expected = match code.net_brackets {
                net if net > 0 => {
                    let level = indents.len();
                    indents.push(net);
                    level
                }
                net if net < 0 => {
                    let mut closed = -net;
                    while closed > 0 {
                        let Some(top) = indents.last_mut() else { break };
                        if closed >= *top {
                            closed -= *top;
                            indents.pop();
                        } else {
                            *top -= closed;
                            closed = 0;
                        }
                    }
                    indents.len()
                }
                _ => indents.len(),
            } * 2;
            let actual = line.len() - line.trim_start_matches(' ').len();
            if actual != expected {
                problems.push(format!(
                    "line {}: indented {actual} spaces, terraform fmt indents {expected}: {line}",
                    n + 1
                ));
            }
        }
        if let Some(at) = code.assign {
            let value = line[at + 1..].trim();
            if value.starts_with("\"${") && value.ends_with("}\"") && value.matches("${").count() == 1 {
                problems.push(format!(
                    "line {}: interpolation-only string, terraform fmt unwraps it: {line}",
                    n + 1
                ));
            }
            if !line[at + 1..].starts_with(' ') || line[at + 1..].starts_with("  ") {
                problems.push(format!("line {}: one space after `=`: {line}", n + 1));
            }
        }
        codes.push(code);
    }

    // Alignment: a run of consecutive lines that each hold a whole single-line attribute.
    let is_attr = |code: &LineCode| code.assign.is_some() && code.net_after_assign == 0;
    let mut start = 0;
    while start < lines.len() {
        if !is_attr(&codes[start]) {
            start += 1;
            continue;
        }
        let mut end = start;
        while end < lines.len() && is_attr(&codes[end]) {
            end += 1;
        }
        let width = (start..end)
            .map(|n| lines[n][..codes[n].assign.unwrap_or_default()].trim_end().len())
            .max()
            .unwrap_or_default();
        for n in start..end {
            let at = codes[n].assign.unwrap_or_default();
            if at != width + 1 {
                problems.push(format!(
                    "line {}: `=` at column {}, terraform fmt aligns it at column {} with lines {}-{}: {}",
                    n + 1,
                    at + 1,
                    width + 2,
                    start + 1,
                    end,
                    lines[n]
                ));
            }
        }
        start = end;
    }
    // Multi-line openers (`x = [`, `x = {`) keep one space before `=`.
    for (n, code) in codes.iter().enumerate() {
        if let Some(at) = code.assign
            && code.net_after_assign > 0
        {
            let lead = &lines[n][..at];
            if lead.trim_end().len() + 1 != at {
                problems.push(format!(
                    "line {}: one space before `=` on a multi-line attribute: {}",
                    n + 1,
                    lines[n]
                ));
            }
        }
    }
    problems
}

/// Tabs, trailing whitespace, missing or extra final newlines.
fn whitespace_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        if line.contains('\t') {
            problems.push(format!("line {}: tab", n + 1));
        }
        if line.ends_with(' ') || line.ends_with('\r') {
            problems.push(format!("line {}: trailing whitespace", n + 1));
        }
    }
    if !text.ends_with('\n') {
        problems.push("no newline at the end".to_owned());
    }
    if text.ends_with("\n\n") {
        problems.push("blank lines at the end".to_owned());
    }
    problems
}

#[test]
fn infra_files_are_formatted_like_terraform_fmt() {
    let mut problems = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(infra())
        .expect("read infra/")
        .map(|entry| entry.expect("infra/ entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let text = read(name);
        problems.extend(
            whitespace_problems(&text)
                .into_iter()
                .map(|p| format!("infra/{name}: {p}")),
        );
        if name.ends_with(".tf") || name.ends_with(".tfvars") || name.ends_with(".tfvars.example") {
            problems.extend(fmt_problems(&text).into_iter().map(|p| format!("infra/{name}: {p}")));
        }
    }
    let workflow = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../.github/workflows/terraform.yml");
    let text = std::fs::read_to_string(&workflow).expect("read the terraform workflow");
    problems.extend(
        whitespace_problems(&text)
            .into_iter()
            .map(|p| format!(".github/workflows/terraform.yml: {p}")),
    );
    assert!(problems.is_empty(), "formatting problems:\n{}", problems.join("\n"));
}

#[test]
fn the_fmt_checker_catches_what_terraform_fmt_would_change() {
    let good = "variable \"x\" {\n  description = \"d\"\n  type        = string\n\n  validation {\n    condition = contains([\n      \"a\",\n    ], var.x)\n    error_message = \"E.\"\n  }\n}\n\nlocals {\n  a = \"${var.x}-y\"\n  # comment\n  bb = { k = \"}\" }\n}\n";
    assert_eq!(fmt_problems(good), Vec::<String>::new());
    // Misaligned `=`.
    let misaligned = good.replace("type        = string", "type = string");
    assert_eq!(fmt_problems(&misaligned).len(), 1, "{:?}", fmt_problems(&misaligned));
    let both = misaligned.replace("description = ", "description  = ");
    assert_eq!(fmt_problems(&both).len(), 2, "{:?}", fmt_problems(&both));
    // Over-aligned `=`.
    let over = good.replace("  bb = {", "  bb  = {");
    assert!(!fmt_problems(&over).is_empty());
    // Wrong indentation.
    let indented = good.replace("      \"a\",", "    \"a\",");
    assert!(!fmt_problems(&indented).is_empty());
    // Interpolation-only string.
    let interp = good.replace("\"${var.x}-y\"", "\"${var.x}\"");
    assert!(!fmt_problems(&interp).is_empty());
    // A comment line ends an alignment group: `count` alone keeps one space, as terraform fmt
    // demands.
    let split = "resource \"a\" \"b\" {\n  count            = 1\n  # why\n  name             = \"n\"\n  leaf_certificate = \"c\"\n}\n";
    assert_eq!(fmt_problems(split).len(), 1, "{:?}", fmt_problems(split));
    // Whitespace.
    assert!(!whitespace_problems("a = 1 \n").is_empty());
    assert!(!whitespace_problems("a\t= 1\n").is_empty());
    assert!(!whitespace_problems("a = 1").is_empty());
    assert!(whitespace_problems("a = 1\n").is_empty());
}
