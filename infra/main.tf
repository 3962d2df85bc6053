# The droplet deploy-cell-params deploys to: one Ubuntu LTS droplet, its deploy key, a firewall
# that opens SSH only to the declared networks, and a pinned SSH host key.

locals {
  # The deploy key as the deploy user's authorized_keys line.
  deploy_public_key = trimspace(var.deploy_public_key)
  # With the service on, "restrict" is loosened by exactly one thing: local forwarding to the
  # service's loopback port (sshd's PermitOpen says the same).
  key_options    = var.serve_service ? "restrict,port-forwarding,permitopen=\"127.0.0.1:${var.serve_port}\"" : "restrict"
  authorized_key = var.restrict_deploy_key ? "${local.key_options} ${local.deploy_public_key}" : local.deploy_public_key

  # Entries of ssh_allowed_cidrs that open SSH to everyone (0.0.0.0/0, ::/0 and their spellings).
  ssh_open_to_world = [for c in var.ssh_allowed_cidrs : c if endswith(c, "/0")]

  # HTTP rules exist only when some network may reach the reports server.
  http_ports = length(var.http_allowed_cidrs) > 0 ? ["80", "443"] : []
}

# The droplet's SSH host key, generated here so that its fingerprint and the known_hosts line are
# known before the droplet boots: the deploy action pins it instead of trusting on first use.
# The private key is stored in the Terraform state (unencrypted): keep the state in an encrypted
# remote backend, see README.md.
resource "tls_private_key" "host" {
  algorithm = "ED25519"
}

# The deploy key, registered with DigitalOcean so that the droplet is created with a key instead
# of an emailed root password (root's login is then disabled by cloud-init anyway).
resource "digitalocean_ssh_key" "deploy" {
  name       = "${var.name}-deploy"
  public_key = local.deploy_public_key
}

resource "digitalocean_droplet" "cellops" {
  name       = var.name
  region     = var.region
  image      = var.image
  size       = var.droplet_size
  tags       = var.tags
  backups    = var.backups
  ipv6       = var.ipv6
  monitoring = true
  ssh_keys   = [digitalocean_ssh_key.deploy.fingerprint]

  # Sensitive (it holds the host private key), so plans show it as (sensitive value). Changing it
  # replaces the droplet; the host key survives because it lives in tls_private_key.host.
  user_data = templatefile("${path.module}/cloud-init.yaml.tftpl", {
    deploy_user      = var.deploy_user
    deploy_user_sudo = var.deploy_user_sudo
    authorized_key   = local.authorized_key
    base_path        = var.base_path
    host_private_key = tls_private_key.host.private_key_openssh
    host_public_key  = trimspace(tls_private_key.host.public_key_openssh)
    serve_reports    = var.serve_reports
    serve_service    = var.serve_service
    serve_port       = var.serve_port
    serve_memory_max = var.serve_memory_max
  })
}

resource "digitalocean_firewall" "cellops" {
  name        = "${var.name}-firewall"
  droplet_ids = [digitalocean_droplet.cellops.id]

  # SSH, for deploy-cell-params and the operator, from the declared networks only.
  inbound_rule {
    protocol         = "tcp"
    port_range       = "22"
    source_addresses = var.ssh_allowed_cidrs
  }

  # HTTP and HTTPS for the read-only reports server, only when http_allowed_cidrs is not empty.
  dynamic "inbound_rule" {
    for_each = local.http_ports
    content {
      protocol         = "tcp"
      port_range       = inbound_rule.value
      source_addresses = var.http_allowed_cidrs
    }
  }

  # Outbound: everything (package mirrors, unattended-upgrades, DNS, NTP).
  outbound_rule {
    protocol              = "tcp"
    port_range            = "1-65535"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }

  outbound_rule {
    protocol              = "udp"
    port_range            = "1-65535"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }

  outbound_rule {
    protocol              = "icmp"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }

  lifecycle {
    # A variable validation may not read another variable before Terraform 1.9, so the
    # allow_ssh_from_anywhere escape hatch is checked here; the plan fails before anything exists.
    precondition {
      condition     = var.allow_ssh_from_anywhere || length(local.ssh_open_to_world) == 0
      error_message = "The list ssh_allowed_cidrs opens SSH to the whole internet (a /0 network such as 0.0.0.0/0 or ::/0). Name the networks that deploy, or set allow_ssh_from_anywhere = true to accept this on purpose."
    }
  }
}

# A reports server that no network can reach is most likely a mistake: warn, do not fail.
check "reports_reachable" {
  assert {
    condition     = var.serve_reports == false || length(var.http_allowed_cidrs) > 0
    error_message = "The reports server is on (serve_reports = true) but http_allowed_cidrs is empty, so the firewall lets no one reach it."
  }
}
