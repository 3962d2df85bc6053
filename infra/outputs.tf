# What the repository secrets are filled from (README.md, "Repository secrets").

output "ipv4_address" {
  description = "Public IPv4 address of the droplet: the SSH_HOST secret."
  value       = digitalocean_droplet.cellops.ipv4_address
}

output "ipv6_address" {
  description = "Public IPv6 address of the droplet (empty unless ipv6 = true)."
  value       = digitalocean_droplet.cellops.ipv6_address
}

output "host_key_fingerprint" {
  description = "SHA256 fingerprint of the droplet's pinned ED25519 SSH host key, as `ssh-keygen -lf` prints it (SHA256:...)."
  value       = tls_private_key.host.public_key_fingerprint_sha256
}

output "known_hosts_line" {
  description = "The droplet's line for known_hosts (<ip> ssh-ed25519 AAAA...): the SSH_KNOWN_HOSTS secret."
  value       = "${digitalocean_droplet.cellops.ipv4_address} ${trimspace(tls_private_key.host.public_key_openssh)}"
}

output "ssh_target" {
  description = "Where deploy-cell-params deploys to: ssh://<deploy_user>@<ipv4>:22<base_path>."
  value       = "ssh://${var.deploy_user}@${digitalocean_droplet.cellops.ipv4_address}:22${var.base_path}"
}

output "deploy_user" {
  description = "Login of the deploy user: the SSH_USERNAME secret."
  value       = var.deploy_user
}

output "base_path" {
  description = "Folder holding releases/, the current link and deployments.jsonl on the droplet."
  value       = var.base_path
}
