//! API keys with scopes. A key is 32 random bytes shown once, as `cnn_` + hex; the store keeps
//! only its SHA-256 (a key is high-entropy, so a slow password hash adds nothing).

use axum::http::HeaderMap;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::ApiError;
use crate::store::KeyRecord;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Detect, verify, identify, read galleries and jobs.
    Read,
    /// Enrol, rename, remove, calibrate, submit jobs.
    Write,
    /// Keys, creating and deleting galleries, import and export.
    Admin,
}

impl Scope {
    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    /// Parses `read`, `write` or `admin`.
    ///
    /// # Errors
    /// Any other word (named).
    pub fn parse(s: &str) -> Result<Scope, String> {
        match s.trim() {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope {other:?} (read, write, admin)")),
        }
    }

    /// Parses a comma-separated list (at least one).
    ///
    /// # Errors
    /// An unknown or empty list.
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, String> {
        let mut v: Vec<Scope> = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Scope::parse)
            .collect::<Result<_, _>>()?;
        v.sort_by_key(|s| *s as u8);
        v.dedup();
        if v.is_empty() {
            return Err("no scope given (read, write, admin)".into());
        }
        Ok(v)
    }
}

/// SHA-256 of a key, hex.
pub fn hash_key(key: &str) -> String {
    sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random key and its record (the key itself is returned once and never stored).
pub fn new_key(label: &str, scopes: Vec<Scope>) -> (String, KeyRecord) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!(
        "cnn_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let hash = hash_key(&key);
    let record = KeyRecord {
        id: hash[..12].to_string(),
        label: label.to_string(),
        scopes,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        hash,
    };
    (key, record)
}

/// The key a request carries: `Authorization: Bearer KEY` or `X-API-Key: KEY`.
///
/// # Errors
/// 401 when there is none or the header is not text.
pub fn presented_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let missing = || {
        ApiError::unauthorized(
            "no API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY` (create keys with `cnn serve-keys create`)",
        )
    };
    if let Some(v) = headers.get("x-api-key") {
        let key = v.to_str().map_err(|_| missing())?.trim();
        if !key.is_empty() {
            return Ok(key.to_string());
        }
    }
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let text = v.to_str().map_err(|_| missing())?;
        if let Some(key) = text.strip_prefix("Bearer ").map(str::trim)
            && !key.is_empty()
        {
            return Ok(key.to_string());
        }
    }
    Err(missing())
}

/// Checks that a key record allows `scope`.
///
/// # Errors
/// 403 naming the scope the key lacks.
pub fn require(record: &KeyRecord, scope: Scope) -> Result<(), ApiError> {
    if record.scopes.contains(&scope) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "this key ({}) has scopes [{}]; this request needs {:?}",
            record.id,
            record
                .scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            scope.as_str()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_only_their_hash_is_kept() {
        let (k1, r1) = new_key("a", vec![Scope::Read]);
        let (k2, r2) = new_key("b", vec![Scope::Read]);
        assert_ne!(k1, k2);
        assert_eq!(r1.hash, hash_key(&k1));
        assert_ne!(r1.hash, r2.hash);
        assert!(!r1.hash.contains(&k1[4..]));
        assert!(k1.starts_with("cnn_") && k1.len() == 68);
    }

    #[test]
    fn scope_lists_parse_and_refuse_unknown_words() {
        assert_eq!(
            Scope::parse_list("write, read,read").unwrap(),
            vec![Scope::Read, Scope::Write]
        );
        assert!(Scope::parse_list("read,root").unwrap_err().contains("root"));
        assert!(Scope::parse_list(" , ").is_err());
    }

    #[test]
    fn require_names_the_missing_scope() {
        let (_, r) = new_key("reader", vec![Scope::Read]);
        assert!(require(&r, Scope::Read).is_ok());
        let e = require(&r, Scope::Admin).unwrap_err();
        assert_eq!(e.status.as_u16(), 403);
        assert!(e.message.contains("admin"), "{}", e.message);
    }

    #[test]
    fn keys_come_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h).unwrap_err().status.as_u16(), 401);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(presented_key(&h).unwrap(), "abc");
        h.insert("x-api-key", "xyz".parse().unwrap());
        assert_eq!(presented_key(&h).unwrap(), "xyz");
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert!(presented_key(&h).is_err());
    }
}
