//! Who may read and who may write, and who a writer is.
//!
//! Writers are named (SPEC 17): `KPI_ADMIN_TOKENS="alice:TOKEN1,bob:TOKEN2"`
//! gives each token the name recorded as the actor of what it changes, and
//! `KPI_ADMIN_TOKEN` alone is the actor `admin`; both may be set. A name may
//! hold several tokens (an old and a new one while rotating); a token may
//! name only one writer, so the same token twice (in either variable) is
//! refused at start, as is any malformed entry, with a message that names the
//! variable and the entry's place, never its token. The name `file` is
//! reserved for edits on disk.
//!
//! Writes need `Authorization: Bearer <one of the admin tokens>` and are
//! refused (403) when the server was started without any. Reads are open
//! unless KPI_READ_TOKEN is set; then they need it (or an admin token) as a
//! bearer token, or, for the dashboard in a browser, the `kpi_token` cookie
//! that `GET /?token=…` sets.
//!
//! Tokens are kept only as SHA-256 digests and compared digest to digest in
//! constant time, every token each time, so timing tells neither which byte
//! differs nor how long a token is. No message or log line holds a token.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::state::AppState;
use crate::store::config_history::FILE_ACTOR;

/// The cookie the dashboard uses when reads need a token.
pub const TOKEN_COOKIE: &str = "kpi_token";

/// The actor of `KPI_ADMIN_TOKEN`.
pub const DEFAULT_ACTOR: &str = "admin";

/// The variables the tokens are read from.
pub const ADMIN_TOKEN_VAR: &str = "KPI_ADMIN_TOKEN";
pub const ADMIN_TOKENS_VAR: &str = "KPI_ADMIN_TOKENS";
pub const READ_TOKEN_VAR: &str = "KPI_READ_TOKEN";

type TokenDigest = [u8; 32];

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// One admin token and the name of its writer.
#[derive(Clone)]
struct Writer {
    name: String,
    token: TokenDigest,
}

/// The tokens the server was started with (empty variables count as unset).
#[derive(Clone, Default)]
pub struct Tokens {
    writers: Vec<Writer>,
    read: Option<TokenDigest>,
}

/// A malformed token variable; the message names it and never holds a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

impl Tokens {
    /// One admin token (the actor `admin`) and an optional read token.
    pub fn new(admin: Option<&str>, read: Option<&str>) -> Tokens {
        Tokens {
            writers: admin
                .map(|t| Writer {
                    name: DEFAULT_ACTOR.to_string(),
                    token: digest(t),
                })
                .into_iter()
                .collect(),
            read: read.map(digest),
        }
    }

    pub fn from_env() -> Result<Tokens, TokenError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Tokens::parse(
            var(ADMIN_TOKEN_VAR).as_deref(),
            var(ADMIN_TOKENS_VAR).as_deref(),
            var(READ_TOKEN_VAR).as_deref(),
        )
    }

    /// The tokens of the three variables' values (None: unset).
    pub fn parse(
        admin: Option<&str>,
        named: Option<&str>,
        read: Option<&str>,
    ) -> Result<Tokens, TokenError> {
        let mut tokens = Tokens::new(None, None);
        let mut seen: Vec<(TokenDigest, String)> = Vec::new();
        if let Some(t) = admin {
            let t = t.trim();
            check_token(t).map_err(|why| TokenError(format!("{ADMIN_TOKEN_VAR}: {why}")))?;
            seen.push((digest(t), ADMIN_TOKEN_VAR.to_string()));
            tokens.writers.push(Writer {
                name: DEFAULT_ACTOR.to_string(),
                token: digest(t),
            });
        }
        let entries = named.map(|n| n.split(',').collect::<Vec<_>>());
        for (i, entry) in entries.into_iter().flatten().enumerate() {
            let at = format!("{ADMIN_TOKENS_VAR}: entry {}", i + 1);
            let Some((name, token)) = entry.split_once(':') else {
                return Err(TokenError(format!(
                    "{at} is not NAME:TOKEN (entries are separated by commas, e.g. alice:TOKEN1,bob:TOKEN2)"
                )));
            };
            let (name, token) = (name.trim(), token.trim());
            check_name(name).map_err(|why| TokenError(format!("{at}: {why}")))?;
            check_token(token).map_err(|why| TokenError(format!("{at} ({name}): {why}")))?;
            let d = digest(token);
            if let Some((_, first)) = seen.iter().find(|(s, _)| *s == d) {
                return Err(TokenError(format!(
                    "{at} ({name}) repeats the token of {first}: a token names one writer"
                )));
            }
            seen.push((d, format!("{ADMIN_TOKENS_VAR} entry {} ({name})", i + 1)));
            tokens.writers.push(Writer {
                name: name.to_string(),
                token: d,
            });
        }
        if let Some(t) = read {
            let t = t.trim();
            check_token(t).map_err(|why| TokenError(format!("{READ_TOKEN_VAR}: {why}")))?;
            tokens.read = Some(digest(t));
        }
        Ok(tokens)
    }

    /// Whether any write is allowed at all.
    pub fn writes_enabled(&self) -> bool {
        !self.writers.is_empty()
    }

    /// The names of the writers, in the order given, each once.
    pub fn writer_names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for w in &self.writers {
            if !out.contains(&w.name.as_str()) {
                out.push(&w.name);
            }
        }
        out
    }

    /// The writer whose token `presented` is: every token is compared.
    fn writer(&self, presented: &str) -> Option<&str> {
        let d = digest(presented);
        let mut found = None;
        for w in &self.writers {
            let eq = constant_time_eq(&d, &w.token);
            if eq && found.is_none() {
                found = Some(w.name.as_str());
            }
        }
        found
    }

    /// May a request carrying `presented` read?
    pub fn can_read(&self, presented: Option<&str>) -> bool {
        let Some(read) = &self.read else {
            return true;
        };
        presented.is_some_and(|p| {
            // Both comparisons always run, so timing does not tell which token matched.
            let a = constant_time_eq(&digest(p), read);
            let b = self.writer(p).is_some();
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

    /// The name of the writer whose token the request carries.
    pub fn check_admin(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        if self.writers.is_empty() {
            return Err(ApiError::Forbidden(
                "writes are disabled: start `kpi serve` with KPI_ADMIN_TOKEN or KPI_ADMIN_TOKENS set"
                    .into(),
            ));
        }
        match bearer(headers) {
            None => Err(ApiError::Unauthorized(
                "writes need Authorization: Bearer <an admin token>".into(),
            )),
            Some(p) => self
                .writer(p)
                .map(str::to_string)
                .ok_or_else(|| ApiError::Unauthorized("wrong admin token".into())),
        }
    }
}

/// A writer's name: what the history shows as the actor.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name before ':' is empty".into());
    }
    if name.len() > 64 {
        return Err("the name is longer than 64 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
    {
        return Err(format!(
            "the name '{}' may hold only letters, digits, '_', '-', '.' and '@'",
            name.escape_default()
        ));
    }
    if name == FILE_ACTOR {
        return Err(format!(
            "the name '{FILE_ACTOR}' is reserved for edits on disk"
        ));
    }
    Ok(())
}

/// A token: what can be sent in `Authorization: Bearer` (never echoed).
fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "the token may hold only printable ASCII without spaces (it is sent in an HTTP header)"
                .into(),
        );
    }
    Ok(())
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

/// Proof that the request may write, with the writer's name (the actor).
pub struct AdminAccess(pub String);

impl FromRequestParts<Arc<AppState>> for AdminAccess {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        state.tokens.check_admin(&parts.headers).map(AdminAccess)
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

/// Equality whose time depends only on the lengths, not on where the bytes
/// differ (the tokens' digests are compared, so the lengths are always 32).
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

    const WRITE: &str = "authorization";

    #[test]
    fn writes_are_forbidden_without_an_admin_token_and_unauthorized_with_a_wrong_one() {
        let none = Tokens::default();
        let e = none.check_admin(&parts(&[(WRITE, "Bearer x")]));
        assert_eq!(e.unwrap_err().status(), 403);
        let t = Tokens::new(Some("adm"), None);
        assert_eq!(t.check_admin(&parts(&[])).unwrap_err().status(), 401);
        let wrong = t.check_admin(&parts(&[(WRITE, "Bearer nope")]));
        assert_eq!(wrong.unwrap_err().status(), 401);
        let ok = t.check_admin(&parts(&[(WRITE, "Bearer adm")]));
        assert_eq!(ok.unwrap(), "admin");
        assert!(t.check_read(&parts(&[])).is_ok(), "reads are open");
    }

    #[test]
    fn a_read_token_closes_reads_and_an_admin_token_or_cookie_opens_them() {
        let t = Tokens::parse(Some("adm"), Some("bob:bt"), Some("rd")).unwrap();
        assert_eq!(t.check_read(&parts(&[])).unwrap_err().status(), 401);
        assert!(t.check_read(&parts(&[(WRITE, "Bearer rd")])).is_ok());
        assert!(t.check_read(&parts(&[(WRITE, "bearer adm")])).is_ok());
        assert!(t.check_read(&parts(&[(WRITE, "Bearer bt")])).is_ok());
        assert!(
            t.check_read(&parts(&[("cookie", "a=b; kpi_token=rd")]))
                .is_ok()
        );
        let wrong = t.check_read(&parts(&[(WRITE, "Bearer x")]));
        assert_eq!(wrong.unwrap_err().status(), 401);
        let reader = t.check_admin(&parts(&[(WRITE, "Bearer rd")]));
        assert_eq!(
            reader.unwrap_err().status(),
            401,
            "the read token does not write"
        );
    }

    #[test]
    fn named_tokens_name_their_writer_and_the_single_token_is_admin() {
        let t = Tokens::parse(
            Some("single"),
            Some(" alice:TOKEN1 , bob:TO:KEN2,alice:rotated"),
            None,
        )
        .unwrap();
        let who = |token: &str| {
            t.check_admin(&parts(&[(WRITE, &format!("Bearer {token}"))]))
                .ok()
        };
        assert_eq!(who("single").as_deref(), Some("admin"));
        assert_eq!(who("TOKEN1").as_deref(), Some("alice"));
        assert_eq!(
            who("TO:KEN2").as_deref(),
            Some("bob"),
            "a token may hold ':'"
        );
        assert_eq!(
            who("rotated").as_deref(),
            Some("alice"),
            "a name may hold two tokens"
        );
        assert_eq!(who("TOKEN2"), None);
        assert_eq!(t.writer_names(), ["admin", "alice", "bob"]);
        let only_named = Tokens::parse(None, Some("carol:c"), None).unwrap();
        assert!(only_named.writes_enabled());
        assert!(
            !Tokens::parse(None, None, Some("r"))
                .unwrap()
                .writes_enabled()
        );
    }

    #[test]
    fn malformed_token_variables_are_refused_naming_the_variable_never_the_token() {
        let refused = |admin: Option<&str>, named: Option<&str>| {
            Tokens::parse(admin, named, None).err().unwrap().0
        };
        let cases = [
            (
                None,
                Some("alice"),
                "KPI_ADMIN_TOKENS: entry 1 is not NAME:TOKEN",
            ),
            (
                None,
                Some("alice:s3cret,"),
                "KPI_ADMIN_TOKENS: entry 2 is not NAME:TOKEN",
            ),
            (
                None,
                Some(":s3cret"),
                "KPI_ADMIN_TOKENS: entry 1: the name before ':' is empty",
            ),
            (
                None,
                Some("alice:"),
                "KPI_ADMIN_TOKENS: entry 1 (alice): the token is empty",
            ),
            (None, Some("al ice:s3cret"), "may hold only letters"),
            (None, Some("file:s3cret"), "reserved for edits on disk"),
            (None, Some("bob:s3 cret"), "printable ASCII without spaces"),
            (
                None,
                Some("alice:s3cret,bob:s3cret"),
                "KPI_ADMIN_TOKENS: entry 2 (bob) repeats the token of KPI_ADMIN_TOKENS entry 1 (alice)",
            ),
            (
                Some("s3cret"),
                Some("bob:s3cret"),
                "entry 1 (bob) repeats the token of KPI_ADMIN_TOKEN",
            ),
            (
                Some("s3 cret"),
                None,
                "KPI_ADMIN_TOKEN: the token may hold only",
            ),
        ];
        for (admin, named, expected) in cases {
            let msg = refused(admin, named);
            assert!(msg.contains(expected), "{named:?}: {msg}");
            assert!(!msg.contains("s3cret") && !msg.contains("s3 cret"), "{msg}");
        }
    }

    #[test]
    fn a_token_is_found_by_comparing_every_digest() {
        let t = Tokens::parse(None, Some("a:one,b:two,c:three"), None).unwrap();
        assert_eq!(t.writer("three"), Some("c"));
        assert_eq!(t.writer("thre"), None);
        assert_eq!(t.writer(""), None);
        assert_eq!(digest("x").len(), 32);
    }
}
