# Inputs of the CellOps deploy droplet. Every variable has a description; README.md has the table.

variable "name" {
  description = "Name of the droplet; the SSH key and the firewall are named after it."
  type        = string
  default     = "cellops-deploy"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{0,62}$", var.name))
    error_message = "The name must be 1 to 63 lowercase letters, digits, dots or hyphens, starting with a letter or digit."
  }
}

variable "droplet_count" {
  description = "Droplets deployed to as one fleet (deploy-cell-params with the output deploy_targets, all or nothing). More than one puts them in a VPC of their own, numbered <name>-1, <name>-2, ...; with serve_public, a DigitalOcean load balancer terminates HTTPS with the service's certificate and forwards to each droplet's private listener, health-checking its readiness."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.droplet_count >= 1 && var.droplet_count <= 10 && floor(var.droplet_count) == var.droplet_count
    error_message = "The droplet count must be a whole number from 1 to 10."
  }
}

variable "vpc_ip_range" {
  description = "Private network of a fleet (droplet_count > 1), in CIDR notation; it must not overlap another VPC of the account in the region."
  type        = string
  default     = "10.117.0.0/24"
  nullable    = false

  validation {
    condition     = can(cidrhost(var.vpc_ip_range, 0)) && startswith(var.vpc_ip_range, "10.")
    error_message = "The VPC range must be a private 10.x.x.x network in CIDR notation, such as 10.117.0.0/24."
  }
}

variable "region" {
  description = "DigitalOcean region slug (`doctl compute region list`), for example fra1, ams3, lon1 or nyc3."
  type        = string
  default     = "fra1"

  validation {
    condition     = can(regex("^[a-z]{3}[0-9]$", var.region))
    error_message = "The region must be a DigitalOcean region slug such as fra1, ams3, lon1 or nyc3."
  }
}

variable "image" {
  description = "Droplet image slug: an Ubuntu LTS release for x86-64, 22.04 or later (ubuntu-24-04-x64 by default; the service's unit needs systemd 248 or later for LoadCredential and %d)."
  type        = string
  default     = "ubuntu-24-04-x64"

  validation {
    condition     = can(regex("^ubuntu-[0-9]{2}-04-x64$", var.image)) && try(tonumber(substr(var.image, 7, 2)) >= 22, false)
    error_message = "The image must be an Ubuntu LTS slug from 22.04 on, such as ubuntu-24-04-x64."
  }
}

variable "droplet_size" {
  description = "Droplet size slug. Only sizes with at least 4 GB RAM and 25 GB disk (the project's minimum) are accepted; README.md lists them."
  type        = string
  default     = "s-2vcpu-4gb"

  validation {
    # The allow-list: RAM / disk as DigitalOcean publishes them.
    #   s-2vcpu-4gb 4 GB / 80 GB, s-2vcpu-4gb-amd 4 GB / 80 GB, s-2vcpu-4gb-120gb-intel 4 GB / 120 GB,
    #   s-4vcpu-8gb 8 GB / 160 GB, s-4vcpu-8gb-amd 8 GB / 160 GB, s-4vcpu-8gb-240gb-intel 8 GB / 240 GB,
    #   s-8vcpu-16gb 16 GB / 320 GB, s-8vcpu-16gb-amd 16 GB / 320 GB, s-8vcpu-16gb-480gb-intel 16 GB / 480 GB.
    condition = contains([
      "s-2vcpu-4gb",
      "s-2vcpu-4gb-amd",
      "s-2vcpu-4gb-120gb-intel",
      "s-4vcpu-8gb",
      "s-4vcpu-8gb-amd",
      "s-4vcpu-8gb-240gb-intel",
      "s-8vcpu-16gb",
      "s-8vcpu-16gb-amd",
      "s-8vcpu-16gb-480gb-intel",
    ], var.droplet_size)
    error_message = "The droplet size must have at least 4 GB RAM and 25 GB disk: one of s-2vcpu-4gb, s-2vcpu-4gb-amd, s-2vcpu-4gb-120gb-intel, s-4vcpu-8gb, s-4vcpu-8gb-amd, s-4vcpu-8gb-240gb-intel, s-8vcpu-16gb, s-8vcpu-16gb-amd or s-8vcpu-16gb-480gb-intel."
  }
}

variable "tags" {
  description = "Tags applied to the droplet (created if they do not exist)."
  type        = list(string)
  default     = ["cellops", "cell-params"]
  nullable    = false

  validation {
    condition     = alltrue([for t in var.tags : can(regex("^[A-Za-z0-9:_-]{1,255}$", t))])
    error_message = "Each tag must be 1 to 255 letters, digits, colons, hyphens or underscores."
  }
}

variable "backups" {
  description = "Enable DigitalOcean's weekly droplet backups (adds 20% to the droplet price)."
  type        = bool
  default     = false
  nullable    = false
}

variable "ipv6" {
  description = "Give the droplet a public IPv6 address as well (the outputs keep using IPv4)."
  type        = bool
  default     = false
  nullable    = false
}

variable "deploy_public_key" {
  description = "Public half of the deploy key, one OpenSSH line (ssh-ed25519 recommended). Its private half is the SSH_KEY repository secret and never enters Terraform."
  type        = string

  validation {
    condition     = can(regex("^(ssh-ed25519 |ecdsa-sha2-nistp(256|384|521) |ssh-rsa )[A-Za-z0-9+/]+=*( [^\n]*)?\n?$", var.deploy_public_key))
    error_message = "The deploy public key must be one OpenSSH public key line starting with \"ssh-ed25519 \", \"ecdsa-sha2-\" or \"ssh-rsa \" (the content of id_ed25519.pub, not the private key)."
  }
}

variable "ssh_allowed_cidrs" {
  description = "Networks allowed to reach SSH (TCP 22), as CIDRs, for example [\"203.0.113.7/32\"]. Required: there is no default. 0.0.0.0/0 or ::/0 is refused unless allow_ssh_from_anywhere is true."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.ssh_allowed_cidrs) > 0
    error_message = "The list ssh_allowed_cidrs must name at least one network."
  }

  validation {
    condition     = alltrue([for c in var.ssh_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "Each entry of ssh_allowed_cidrs must be a CIDR such as 203.0.113.7/32 or 2001:db8::/48 (an address needs its /32 or /128)."
  }
}

variable "allow_ssh_from_anywhere" {
  description = "Accept 0.0.0.0/0 or ::/0 in ssh_allowed_cidrs (for example for GitHub-hosted runners, whose addresses change). Key-only SSH still applies, but the port is then open to the whole internet."
  type        = bool
  default     = false
  nullable    = false
}

variable "http_allowed_cidrs" {
  description = "Networks allowed to reach HTTP and HTTPS (TCP 80 and 443) for the read-only reports server. Empty (the default): no HTTP rule at all."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for c in var.http_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "Each entry of http_allowed_cidrs must be a CIDR such as 203.0.113.0/24 or 0.0.0.0/0."
  }
}

variable "serve_reports" {
  description = "Install nginx and serve <base_path>/current read-only over HTTP (reachable only from http_allowed_cidrs)."
  type        = bool
  default     = false
  nullable    = false
}

variable "serve_service" {
  description = "Run cellops serve on the droplet (systemd unit as the cellops-serve user, on 127.0.0.1:serve_port) once a deploy ships bin/cellops-serve, follow each deploy, and let the deploy key forward to that port only (reach it with cellops serve-tunnel). The firewall stays SSH-only."
  type        = bool
  default     = true
  nullable    = false
}

variable "serve_port" {
  description = "Loopback port the service listens on (the only port SSH forwarding may reach)."
  type        = number
  default     = 8080
  nullable    = false

  validation {
    condition     = var.serve_port >= 1024 && var.serve_port <= 65535 && floor(var.serve_port) == var.serve_port
    error_message = "The service port must be a whole number from 1024 to 65535."
  }
}

variable "serve_memory_max" {
  description = "systemd MemoryMax of the service (bytes with K/M/G/T, or a percentage of the droplet's memory): past it the kernel stops the service and systemd restarts it."
  type        = string
  default     = "75%"
  nullable    = false

  validation {
    condition     = can(regex("^([0-9]+[KMGT]?|[0-9]{1,2}%|100%)$", var.serve_memory_max))
    error_message = "MemoryMax is a size such as 1536M or 2G, or a percentage such as 75%."
  }
}

variable "serve_public" {
  description = "Also open the service over HTTPS to http_allowed_cidrs: nginx terminates TLS on 443 (and allows only those networks) and forwards to the service's public listener on 127.0.0.1:serve_public_port, which answers only requests with the bearer token (output service_token). Needs serve_service."
  type        = bool
  default     = false
  nullable    = false
}

variable "serve_public_port" {
  description = "Loopback port of the service's public listener (the one that requires the bearer token); only nginx connects to it."
  type        = number
  default     = 8081
  nullable    = false

  validation {
    condition     = var.serve_public_port >= 1024 && var.serve_public_port <= 65535 && floor(var.serve_public_port) == var.serve_public_port
    error_message = "The public listener's port must be a whole number from 1024 to 65535."
  }
}

variable "serve_private_port" {
  description = "Port of the service's private listener on each droplet's VPC address in a load-balanced fleet: readiness and liveness answer without the token (the load balancer's health check), everything else needs it. Only the load balancer may reach it."
  type        = number
  default     = 8082
  nullable    = false

  validation {
    condition     = var.serve_private_port >= 1024 && var.serve_private_port <= 65535 && floor(var.serve_private_port) == var.serve_private_port
    error_message = "The private listener's port must be a whole number from 1024 to 65535."
  }
}

variable "service_domain" {
  description = "DNS name the HTTPS service is reached by (the certificate's subject). Empty: the droplet's name; reach it with curl --resolve <name>:443:<ip> and the service_tls_certificate output as the CA."
  type        = string
  default     = ""
  nullable    = false

  validation {
    condition     = var.service_domain == "" || can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$", var.service_domain))
    error_message = "The service domain must be a lowercase DNS name such as cells.example.org."
  }
}

variable "service_tls_certificate" {
  description = "PEM certificate chain for the HTTPS service (for example from your CA). Null: Terraform generates a self-signed certificate for service_domain, valid two years, and outputs it for clients to pin. The certificate reaches the droplet through cloud-init: changing it replaces the droplet."
  type        = string
  default     = null

  validation {
    condition     = var.service_tls_certificate == null || can(regex("-----BEGIN CERTIFICATE-----", var.service_tls_certificate))
    error_message = "The service certificate must be PEM text (-----BEGIN CERTIFICATE-----), or null for a generated one."
  }
}

variable "service_tls_private_key" {
  description = "PEM private key of service_tls_certificate. Null together with the certificate."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.service_tls_private_key == null || can(regex("-----BEGIN [A-Z ]*PRIVATE KEY-----", var.service_tls_private_key))
    error_message = "The service key must be a PEM private key (-----BEGIN ... PRIVATE KEY-----), or null for a generated one."
  }
}

variable "deploy_user" {
  description = "Login of the user deploy-cell-params connects as (the SSH_USERNAME secret). No password; no sudo unless deploy_user_sudo is true."
  type        = string
  default     = "cellops"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.deploy_user)) && !contains(["root", "cellops-serve"], var.deploy_user)
    error_message = "The deploy user must be a lowercase POSIX login name of at most 32 characters, and neither root nor cellops-serve (the service's own user)."
  }
}

variable "deploy_user_sudo" {
  description = "Give the deploy user passwordless sudo. Off by default: deploys need no root, and root cannot log in over SSH, so turn this on only to administer the droplet."
  type        = bool
  default     = false
  nullable    = false
}

variable "restrict_deploy_key" {
  description = "Prefix the deploy key in authorized_keys with \"restrict\": no port, agent or X11 forwarding and no PTY; commands and SFTP, all a deploy needs, still work."
  type        = bool
  default     = true
  nullable    = false
}

variable "base_path" {
  description = "Absolute folder the cell-parameter releases are deployed to: <base_path>/releases/<id>/, the <base_path>/current link and <base_path>/deployments.jsonl."
  type        = string
  default     = "/srv/cellops/cell-params"

  validation {
    condition     = can(regex("^(/[A-Za-z0-9._-]+)+$", var.base_path)) && length(regexall("/\\.\\.?(/|$)", var.base_path)) == 0
    error_message = "The base path must be an absolute path without a trailing slash, spaces, \".\" or \"..\" components."
  }
}
