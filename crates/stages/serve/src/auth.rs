//! The optional public listener's bearer token: read once from a file only its owner may read,
//! kept as a sha256, compared in constant time. Every route but `/v2/health/live` needs it there;
//! the loopback listener (reached through SSH) needs none.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use cellops_formats::FileError;
use serde_json::json;

/// A token file larger than this is not a token.
const MAX_TOKEN_BYTES: u64 = 4096;
/// Tokens shorter than this are guessable.
const MIN_TOKEN_CHARS: usize = 16;

/// The token, as its sha256 (the secret itself is not kept).
#[derive(Clone)]
pub struct Token {
    sha256: [u8; 64],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

fn digest(text: &str) -> [u8; 64] {
    let hex = cellops_formats::release::sha256_of(text.as_bytes())
        .map(|(_, h)| h)
        .unwrap_or_default();
    let mut out = [0u8; 64];
    for (o, b) in out.iter_mut().zip(hex.bytes()) {
        *o = b;
    }
    out
}

impl Token {
    /// Reads the token from `path`: one line, at least 16 characters, in a file that neither its
    /// group nor others may read. Errors never show the file's contents.
    pub fn read(path: &Path) -> Result<Self, FileError> {
        use std::os::unix::fs::PermissionsExt as _;
        let err = |m: String| FileError::new(path, m);
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read the token file: {e}")))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(format!(
                "the token file is readable by others (mode {:o}): chmod 600 it",
                meta.permissions().mode() & 0o777
            )));
        }
        if meta.len() > MAX_TOKEN_BYTES {
            return Err(err(format!("the token file is over {MAX_TOKEN_BYTES} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read the token file: {e}")))?;
        let token = text.trim();
        if token.chars().count() < MIN_TOKEN_CHARS || token.contains(char::is_whitespace) {
            return Err(err(format!(
                "the token must be one word of at least {MIN_TOKEN_CHARS} characters"
            )));
        }
        Ok(Self { sha256: digest(token) })
    }

    /// Whether an `Authorization` header value carries the token (constant time in its content).
    pub fn accepts(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        let other = digest(given.trim());
        self.sha256
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The routes a token-guarded listener answers without the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Liveness only (the public listener behind nginx).
    Liveness,
    /// Liveness and readiness (the private listener a load balancer health-checks).
    Health,
}

impl Open {
    fn admits(self, path: &str) -> bool {
        match self {
            Open::Liveness => path == "/v2/health/live",
            Open::Health => matches!(path, "/v2/health/live" | "/v2/health/ready"),
        }
    }
}

/// `router` with every route but the `open` ones behind the token.
pub fn require(router: Router, token: Token, open: Open) -> Router {
    router.layer(middleware::from_fn_with_state(Arc::new((token, open)), check))
}

async fn check(State(guard): State<Arc<(Token, Open)>>, request: Request, next: Next) -> Response {
    let (token, open) = &*guard;
    let header = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    if open.admits(request.uri().path()) || token.accepts(header) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(WWW_AUTHENTICATE, "Bearer")],
        Json(json!({ "error": "this listener needs Authorization: Bearer <token> (the token file's)" })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_is_accepted_and_loose_files_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-s3cret-s3cret\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = Token::read(&path).expect_err("world-readable");
        assert!(
            e.to_string().contains("chmod 600") && !e.to_string().contains("s3cret"),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let t = Token::read(&path).expect("token");
        assert!(t.accepts(Some("Bearer s3cret-s3cret-s3cret")));
        assert!(!t.accepts(Some("Bearer s3cret-s3cret-s3cres")));
        assert!(!t.accepts(Some("s3cret-s3cret-s3cret")));
        assert!(!t.accepts(None));
        std::fs::write(&path, "short").expect("write");
        assert!(Token::read(&path).is_err());
    }
}
