# Terraform and provider versions. Commit .terraform.lock.hcl after the first `terraform init`
# so every apply uses the same provider builds.
terraform {
  required_version = ">= 1.6"

  required_providers {
    digitalocean = {
      source  = "digitalocean/digitalocean"
      version = "~> 2.40"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

# The API token comes from the environment (DIGITALOCEAN_TOKEN), never from a variable or a file
# in the repository.
provider "digitalocean" {}
