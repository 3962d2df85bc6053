# What the repository secrets are filled from (README.md, "Repository secrets").

output "ipv4_address" {
  description = "Public IPv4 address of the droplet (the first one of a fleet): the SSH_HOST secret."
  value       = digitalocean_droplet.cellops[0].ipv4_address
}

output "ipv6_address" {
  description = "Public IPv6 address of the droplet (the first one of a fleet; empty unless ipv6 = true)."
  value       = digitalocean_droplet.cellops[0].ipv6_address
}

output "host_key_fingerprint" {
  description = "SHA256 fingerprint of the droplet's pinned ED25519 SSH host key, as `ssh-keygen -lf` prints it (SHA256:...)."
  value       = tls_private_key.host.public_key_fingerprint_sha256
}

output "known_hosts_line" {
  description = "The droplet's line for known_hosts (<ip> ssh-ed25519 AAAA...; the first droplet of a fleet): the SSH_KNOWN_HOSTS secret of a single droplet."
  value       = "${digitalocean_droplet.cellops[0].ipv4_address} ${trimspace(tls_private_key.host.public_key_openssh)}"
}

output "known_hosts" {
  description = "Every droplet's known_hosts line, one per line: the SSH_KNOWN_HOSTS secret of a fleet."
  value       = join("\n", [for d in digitalocean_droplet.cellops : "${d.ipv4_address} ${trimspace(tls_private_key.host.public_key_openssh)}"])
}

output "ssh_target" {
  description = "Where deploy-cell-params deploys to: ssh://<deploy_user>@<ipv4>:22<base_path> (the first droplet of a fleet)."
  value       = "ssh://${var.deploy_user}@${digitalocean_droplet.cellops[0].ipv4_address}:22${var.base_path}"
}

output "deploy_targets" {
  description = "Every droplet's deploy target, one per line: deploy-cell-params' target input (or terraform output -raw deploy_targets > hosts.txt for hosts-file) deploys to all of them, all or nothing."
  value       = join("\n", [for d in digitalocean_droplet.cellops : "ssh://${var.deploy_user}@${d.ipv4_address}:22${var.base_path}"])
}

output "load_balancer_ip" {
  description = "Public IPv4 address of a load-balanced fleet's load balancer, where the HTTPS service is reached (empty otherwise)."
  value       = one(digitalocean_loadbalancer.cellops[*].ip)
}

output "deploy_user" {
  description = "Login of the deploy user: the SSH_USERNAME secret."
  value       = var.deploy_user
}

output "base_path" {
  description = "Folder holding releases/, the current link and deployments.jsonl on the droplet."
  value       = var.base_path
}

output "service_url" {
  description = "HTTPS address of the service when serve_public is on (empty otherwise). Without a DNS record for service_domain, reach it with curl --resolve <service_domain>:443:<ipv4_address>."
  value       = var.serve_public ? "https://${local.service_domain}/" : ""
}

output "service_tls_certificate" {
  description = "The HTTPS service's certificate (PEM): pin it as the CA when it is the generated self-signed one (curl --cacert)."
  value       = local.service_tls_certificate
}

output "service_token" {
  description = "Bearer token of the HTTPS service (Authorization: Bearer <token>); empty when serve_public is off."
  value       = local.service_token
  sensitive   = true
}
