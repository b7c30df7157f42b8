//! Who may read and who may write.
//!
//! Writes need `Authorization: Bearer $KPI_ADMIN_TOKEN` and are refused (403)
//! when the server was started without that variable. Reads are open unless
//! KPI_READ_TOKEN is set; then they need it (or the admin token) as a bearer
//! token, or, for the dashboard in a browser, the `kpi_token` cookie that
//! `GET /?token=…` sets. Tokens are compared in constant time.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::error::ApiError;
use super::state::AppState;

/// The cookie the dashboard uses when reads need a token.
pub const TOKEN_COOKIE: &str = "kpi_token";

/// The tokens the server was started with (empty variables count as unset).
#[derive(Clone, Default)]
pub struct Tokens {
    pub admin: Option<String>,
    pub read: Option<String>,
}

impl Tokens {
    pub fn from_env() -> Tokens {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Tokens {
            admin: var("KPI_ADMIN_TOKEN"),
            read: var("KPI_READ_TOKEN"),
        }
    }

    /// May a request carrying `presented` read?
    pub fn can_read(&self, presented: Option<&str>) -> bool {
        let Some(read) = &self.read else {
            return true;
        };
        presented.is_some_and(|p| {
            // Both comparisons always run, so timing does not tell which token matched.
            let a = constant_time_eq(p.as_bytes(), read.as_bytes());
            let b = self
                .admin
                .as_deref()
                .is_some_and(|admin| constant_time_eq(p.as_bytes(), admin.as_bytes()));
            a | b
        })
    }

    pub fn check_read(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let bearer = bearer(headers);
        let cookie = cookie(headers, TOKEN_COOKIE);
        if self.can_read(bearer) || (bearer.is_none() && self.can_read(cookie.as_deref())) {
            Ok(())
        } else if bearer.is_none() && cookie.is_none() {
            Err(ApiError::Unauthorized(
                "reads need a token on this server: send Authorization: Bearer $KPI_READ_TOKEN"
                    .into(),
            ))
        } else {
            Err(ApiError::Unauthorized("wrong read token".into()))
        }
    }

    pub fn check_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(admin) = &self.admin else {
            return Err(ApiError::Forbidden(
                "writes are disabled: start `kpi serve` with KPI_ADMIN_TOKEN set".into(),
            ));
        };
        match bearer(headers) {
            None => Err(ApiError::Unauthorized(
                "writes need Authorization: Bearer $KPI_ADMIN_TOKEN".into(),
            )),
            Some(p) if constant_time_eq(p.as_bytes(), admin.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::Unauthorized("wrong admin token".into())),
        }
    }
}

/// Proof that the request may read.
pub struct ReadAccess;

impl FromRequestParts<Arc<AppState>> for ReadAccess {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        state.tokens.check_read(&parts.headers).map(|()| ReadAccess)
    }
}

/// Proof that the request may write.
pub struct AdminAccess;

impl FromRequestParts<Arc<AppState>> for AdminAccess {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        state
            .tokens
            .check_admin(&parts.headers)
            .map(|()| AdminAccess)
    }
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A cookie's value.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn compares_whole_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn writes_are_forbidden_without_an_admin_token_and_unauthorized_with_a_wrong_one() {
        let none = Tokens::default();
        let e = none.check_admin(&parts(&[("authorization", "Bearer x")]));
        assert_eq!(e.unwrap_err().status(), 403);
        let t = Tokens {
            admin: Some("adm".into()),
            read: None,
        };
        assert_eq!(t.check_admin(&parts(&[])).unwrap_err().status(), 401);
        let wrong = t.check_admin(&parts(&[("authorization", "Bearer nope")]));
        assert_eq!(wrong.unwrap_err().status(), 401);
        assert!(
            t.check_admin(&parts(&[("authorization", "Bearer adm")]))
                .is_ok()
        );
        assert!(t.check_read(&parts(&[])).is_ok(), "reads are open");
    }

    #[test]
    fn a_read_token_closes_reads_and_the_admin_token_or_cookie_opens_them() {
        let t = Tokens {
            admin: Some("adm".into()),
            read: Some("rd".into()),
        };
        assert_eq!(t.check_read(&parts(&[])).unwrap_err().status(), 401);
        assert!(
            t.check_read(&parts(&[("authorization", "Bearer rd")]))
                .is_ok()
        );
        assert!(
            t.check_read(&parts(&[("authorization", "bearer adm")]))
                .is_ok()
        );
        assert!(
            t.check_read(&parts(&[("cookie", "a=b; kpi_token=rd")]))
                .is_ok()
        );
        let wrong = t.check_read(&parts(&[("authorization", "Bearer x")]));
        assert_eq!(wrong.unwrap_err().status(), 401);
    }
}
