//! The checks of `infra/`, the Terraform configuration of the droplet that `deploy-cell-params`
//! deploys to.
//!
//! No `terraform` binary runs in the project's test command, so this crate holds no code: its
//! integration tests (`tests/terraform.rs`) parse every `infra/*.tf` file with `hcl-rs` and check
//! what the deployment relies on — pinned providers, a droplet of at least 4 GB RAM, a firewall that
//! opens SSH only to the declared CIDRs, the pinned host key, the outputs the repository secrets are
//! filled from, descriptions everywhere, and `terraform fmt`-style layout. The workflow
//! `.github/workflows/terraform.yml` runs `terraform fmt -check` and `terraform validate` on top.
