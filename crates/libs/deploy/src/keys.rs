//! Recognising private keys before libssh2 sees them, so that a wrong input gets a message a user
//! can act on ("this is a public key", "PuTTY format", "encrypted, but no passphrase") instead of
//! libssh2's "Unable to extract public key from private key file".

use base64::Engine as _;

/// What a private-key input holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// OpenSSH's own format (`BEGIN OPENSSH PRIVATE KEY`), with whether it is encrypted.
    OpenSsh {
        /// Protected by a passphrase.
        encrypted: bool,
    },
    /// PEM (`BEGIN RSA/EC/DSA PRIVATE KEY`, PKCS#8 `BEGIN PRIVATE KEY`/`BEGIN ENCRYPTED PRIVATE KEY`).
    Pem {
        /// Protected by a passphrase.
        encrypted: bool,
    },
}

impl KeyKind {
    /// Whether the key needs a passphrase.
    pub fn encrypted(self) -> bool {
        match self {
            KeyKind::OpenSsh { encrypted } | KeyKind::Pem { encrypted } => encrypted,
        }
    }
}

/// A private-key input that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Empty input.
    #[error("the private key is empty (is the secret set?)")]
    Empty,
    /// A public key was given.
    #[error("this is a public key ({0}); the key input needs the private key (the file without .pub)")]
    Public(String),
    /// A PuTTY key.
    #[error("this is a PuTTY key (.ppk); convert it with `puttygen key.ppk -O private-openssh -o key`")]
    Putty,
    /// Not a key at all, or a damaged one.
    #[error("not a private key: expected an OpenSSH or PEM private key (-----BEGIN … PRIVATE KEY-----), found {0}")]
    Unrecognised(String),
}

/// What `text` is, as a private key.
///
/// ```
/// use cellops_deploy::keys::{classify, KeyError};
/// assert!(matches!(classify("ssh-ed25519 AAAAC3Nza… me@host"), Err(KeyError::Public(_))));
/// assert!(matches!(classify("PuTTY-User-Key-File-3: ssh-ed25519"), Err(KeyError::Putty)));
/// ```
pub fn classify(text: &str) -> Result<KeyKind, KeyError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(KeyError::Empty);
    }
    let first = t.lines().next().unwrap_or_default().trim();
    if first.starts_with("PuTTY-User-Key-File") {
        return Err(KeyError::Putty);
    }
    for prefix in ["ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-", "ssh-dss ", "sk-"] {
        if first.starts_with(prefix) {
            let kind = first.split_whitespace().next().unwrap_or(prefix.trim());
            return Err(KeyError::Public(kind.to_owned()));
        }
    }
    if first == "-----BEGIN OPENSSH PRIVATE KEY-----" {
        let body: String = t
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .map(str::trim)
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| KeyError::Unrecognised("an OpenSSH key whose body is not base64 (damaged?)".into()))?;
        let magic = b"openssh-key-v1\0";
        if !bytes.starts_with(magic) {
            return Err(KeyError::Unrecognised(
                "an OpenSSH key without its header (damaged?)".into(),
            ));
        }
        // string ciphername: u32 length + bytes.
        let rest = &bytes[magic.len()..];
        let len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| KeyError::Unrecognised("a truncated OpenSSH key".into()))?;
        let cipher = rest
            .get(4..4 + len)
            .ok_or_else(|| KeyError::Unrecognised("a truncated OpenSSH key".into()))?;
        return Ok(KeyKind::OpenSsh {
            encrypted: cipher != b"none",
        });
    }
    if first.starts_with("-----BEGIN ") && first.ends_with("PRIVATE KEY-----") {
        let encrypted = first.contains("ENCRYPTED") || t.contains("Proc-Type: 4,ENCRYPTED");
        return Ok(KeyKind::Pem { encrypted });
    }
    let shown: String = first.chars().take(24).collect();
    Err(KeyError::Unrecognised(format!("`{shown}…`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openssh(cipher: &str) -> String {
        let mut blob = b"openssh-key-v1\0".to_vec();
        blob.extend((cipher.len() as u32).to_be_bytes());
        blob.extend(cipher.as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
        format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{b64}\n-----END OPENSSH PRIVATE KEY-----\n")
    }

    #[test]
    fn openssh_keys_say_whether_they_are_encrypted() {
        assert_eq!(classify(&openssh("none")), Ok(KeyKind::OpenSsh { encrypted: false }));
        assert_eq!(
            classify(&openssh("aes256-ctr")),
            Ok(KeyKind::OpenSsh { encrypted: true })
        );
    }

    #[test]
    fn pem_keys() {
        assert_eq!(
            classify("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n…"),
            Ok(KeyKind::Pem { encrypted: true })
        );
        assert_eq!(
            classify("-----BEGIN EC PRIVATE KEY-----\nMHc…\n-----END EC PRIVATE KEY-----"),
            Ok(KeyKind::Pem { encrypted: false })
        );
    }

    #[test]
    fn wrong_inputs_are_named() {
        assert_eq!(classify("  \n"), Err(KeyError::Empty));
        assert!(matches!(classify("hello world"), Err(KeyError::Unrecognised(_))));
        assert!(classify("-----BEGIN OPENSSH PRIVATE KEY-----\n!!!\n-----END OPENSSH PRIVATE KEY-----").is_err());
    }
}
