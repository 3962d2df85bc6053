# The droplets deploy-cell-params deploys to: one Ubuntu LTS droplet (or a fleet of droplet_count in
# a VPC, behind a load balancer when the HTTPS service is on), its deploy key, a firewall that opens
# SSH only to the declared networks, and a pinned SSH host key (shared by the fleet's droplets).

locals {
  # The deploy key as the deploy user's authorized_keys line.
  deploy_public_key = trimspace(var.deploy_public_key)
  # With the service on, "restrict" is loosened by exactly one thing: local forwarding to the
  # service's loopback port (sshd's PermitOpen says the same).
  key_options    = var.serve_service ? "restrict,port-forwarding,permitopen=\"127.0.0.1:${var.serve_port}\"" : "restrict"
  authorized_key = var.restrict_deploy_key ? "${local.key_options} ${local.deploy_public_key}" : local.deploy_public_key

  # Entries of ssh_allowed_cidrs that open SSH to everyone (0.0.0.0/0, ::/0 and their spellings).
  ssh_open_to_world = [for c in var.ssh_allowed_cidrs : c if endswith(c, "/0")]

  # Web ports exist only when some network may reach them: 80 for the reports server, 443 for
  # the HTTPS front of the service.
  http_ports = length(var.http_allowed_cidrs) > 0 ? compact([var.serve_reports ? "80" : "", var.serve_public && !local.fleet ? "443" : ""]) : []

  # The HTTPS service: its name, and the given certificate or the generated self-signed one.
  service_domain          = var.service_domain != "" ? var.service_domain : var.name
  service_tls_certificate = !var.serve_public ? "" : var.service_tls_certificate != null ? var.service_tls_certificate : one(tls_self_signed_cert.service[*].cert_pem)
  service_tls_private_key = !var.serve_public ? "" : var.service_tls_private_key != null ? var.service_tls_private_key : one(tls_private_key.service[*].private_key_pem)
  service_token           = var.serve_public ? one(random_password.service_token[*].result) : ""

  # A fleet lives in a VPC of its own; with the HTTPS service on, a load balancer fronts it and the
  # droplets' own port 443 stays closed.
  fleet         = var.droplet_count > 1
  load_balanced = local.fleet && var.serve_public
}

# The droplet's SSH host key, generated here so that its fingerprint and the known_hosts line are
# known before the droplet boots: the deploy action pins it instead of trusting on first use.
# The private key is stored in the Terraform state (unencrypted): keep the state in an encrypted
# remote backend, see README.md.
resource "tls_private_key" "host" {
  algorithm = "ED25519"
}

# The HTTPS service's certificate when none is given: self-signed for service_domain, so clients
# pin it (output service_tls_certificate). Like the host key, its private key is in the state.
# It is not renewed automatically: it reaches the droplet through cloud-init, so a new one
# replaces the droplet (terraform apply -replace=tls_self_signed_cert.service[0], then deploy).
resource "tls_private_key" "service" {
  count     = var.serve_public && var.service_tls_certificate == null ? 1 : 0
  algorithm = "ECDSA"

  ecdsa_curve = "P256"
}

resource "tls_self_signed_cert" "service" {
  count           = length(tls_private_key.service)
  private_key_pem = tls_private_key.service[0].private_key_pem
  dns_names       = [local.service_domain]

  subject {
    common_name = local.service_domain
  }

  validity_period_hours = 17520
  allowed_uses          = ["digital_signature", "key_encipherment", "server_auth"]
}

# The public listener's bearer token: written to a root-only file on the droplet and handed to the
# service by systemd (LoadCredential); the output service_token gives it to the operator.
resource "random_password" "service_token" {
  count   = var.serve_public ? 1 : 0
  length  = 48
  special = false
}

# The deploy key, registered with DigitalOcean so that the droplet is created with a key instead
# of an emailed root password (root's login is then disabled by cloud-init anyway).
resource "digitalocean_ssh_key" "deploy" {
  name       = "${var.name}-deploy"
  public_key = local.deploy_public_key
}

resource "digitalocean_vpc" "cellops" {
  count    = local.fleet ? 1 : 0
  name     = "${var.name}-vpc"
  region   = var.region
  ip_range = var.vpc_ip_range
}

resource "digitalocean_droplet" "cellops" {
  count      = var.droplet_count
  name       = local.fleet ? "${var.name}-${count.index + 1}" : var.name
  vpc_uuid   = one(digitalocean_vpc.cellops[*].id)
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
    serve_public     = var.serve_public
    public_port      = var.serve_public_port
    private_port     = local.load_balanced ? var.serve_private_port : 0
    http_allowed     = var.http_allowed_cidrs
    service_domain   = local.service_domain
    service_cert     = local.service_tls_certificate
    service_key      = local.service_tls_private_key
    service_token    = local.service_token
  })
}

resource "digitalocean_firewall" "cellops" {
  name        = "${var.name}-firewall"
  droplet_ids = digitalocean_droplet.cellops[*].id

  # SSH, for deploy-cell-params and the operator, from the declared networks only.
  inbound_rule {
    protocol         = "tcp"
    port_range       = "22"
    source_addresses = var.ssh_allowed_cidrs
  }

  # HTTP for the read-only reports server and HTTPS for the service's front, each only when it is
  # on and http_allowed_cidrs is not empty.
  dynamic "inbound_rule" {
    for_each = local.http_ports
    content {
      protocol         = "tcp"
      port_range       = inbound_rule.value
      source_addresses = var.http_allowed_cidrs
    }
  }

  # A load-balanced fleet: the private listener, from the load balancer only.
  dynamic "inbound_rule" {
    for_each = local.load_balanced ? [var.serve_private_port] : []
    content {
      protocol                  = "tcp"
      port_range                = tostring(inbound_rule.value)
      source_load_balancer_uids = [digitalocean_loadbalancer.cellops[0].id]
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
    precondition {
      condition     = !var.serve_public || var.serve_service
      error_message = "The service cannot be opened over HTTPS (serve_public = true) when it does not run (serve_service = false)."
    }
    precondition {
      condition     = (var.service_tls_certificate == null) == (var.service_tls_private_key == null)
      error_message = "Give service_tls_certificate and service_tls_private_key together, or neither (a self-signed certificate is then generated)."
    }
    precondition {
      condition     = !var.serve_public || var.serve_public_port != var.serve_port
      error_message = "The ports serve_public_port and serve_port must differ: the public listener (token required) and the loopback one (reached through SSH) are two sockets."
    }
    precondition {
      condition     = !local.load_balanced || !contains([var.serve_port, var.serve_public_port], var.serve_private_port)
      error_message = "The port serve_private_port must differ from serve_port and serve_public_port: the private listener is a third socket."
    }
  }
}

# A load-balanced fleet: the service's certificate on the load balancer, which terminates HTTPS
# for http_allowed_cidrs and forwards plain HTTP over the VPC to each droplet's private listener.
resource "digitalocean_certificate" "service" {
  # Named by the certificate's hash: create_before_destroy needs the new one under another name.
  count            = local.load_balanced ? 1 : 0
  name             = "${var.name}-service-${substr(sha256(local.service_tls_certificate), 0, 8)}"
  type             = "custom"
  private_key      = local.service_tls_private_key
  leaf_certificate = local.service_tls_certificate

  lifecycle {
    create_before_destroy = true
  }
}

resource "digitalocean_loadbalancer" "cellops" {
  count       = local.load_balanced ? 1 : 0
  name        = "${var.name}-lb"
  region      = var.region
  vpc_uuid    = digitalocean_vpc.cellops[0].id
  droplet_ids = digitalocean_droplet.cellops[*].id

  forwarding_rule {
    entry_protocol   = "https"
    entry_port       = 443
    target_protocol  = "http"
    target_port      = var.serve_private_port
    certificate_name = digitalocean_certificate.service[0].name
  }

  # A droplet whose service is not ready (loading, draining, refusing a release) gets no traffic.
  healthcheck {
    protocol                 = "http"
    port                     = var.serve_private_port
    path                     = "/v2/health/ready"
    check_interval_seconds   = 10
    response_timeout_seconds = 5
    healthy_threshold        = 2
    unhealthy_threshold      = 3
  }

  firewall {
    allow = [for c in var.http_allowed_cidrs : "cidr:${c}"]
  }
}

# An HTTPS service that no network can reach is most likely a mistake too.
check "service_reachable" {
  assert {
    condition     = var.serve_public == false || length(var.http_allowed_cidrs) > 0
    error_message = "The service is opened over HTTPS (serve_public = true) but http_allowed_cidrs is empty, so the firewall lets no one reach it."
  }
}

# A reports server that no network can reach is most likely a mistake: warn, do not fail.
check "reports_reachable" {
  assert {
    condition     = var.serve_reports == false || length(var.http_allowed_cidrs) > 0
    error_message = "The reports server is on (serve_reports = true) but http_allowed_cidrs is empty, so the firewall lets no one reach it."
  }
}
