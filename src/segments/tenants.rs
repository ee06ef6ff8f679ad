//! Tenants of the server-fed queue (`cdpctl serve`): one row per Split
//! environment in `split_tenants`, holding its API token sealed with
//! ChaCha20-Poly1305 under a key from `CDPCTL_SECRET_KEY`. Queued rows carry
//! only the tenant id, so a token is stored once per tenant, never in the
//! clear, and the flush engine unseals it just before a delivery.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Result};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio_postgres::Client;

use crate::db::PgResultExt;

/// The environment variable holding the sealing key.
pub const SECRET_KEY_ENV: &str = "CDPCTL_SECRET_KEY";

/// The key that seals API tokens at rest. Derived subkeys: one for the AEAD,
/// one for the key id recorded next to every sealed token (so a wrong key
/// is reported as such, not as corrupt data).
#[derive(Clone)]
pub struct SecretKey {
    aead: LessSafeKey,
    id: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(id {})", self.id)
    }
}

fn missing_key_hint() -> String {
    format!("generate one with `openssl rand -hex 32` and keep it with the database's other secrets; every `cdpctl serve` and `cdpctl flush-segment` of this database needs the same {SECRET_KEY_ENV}")
}

impl SecretKey {
    /// Reads `CDPCTL_SECRET_KEY`: 32 bytes as 64 hex digits or base64.
    pub fn from_env() -> Result<Self> {
        match std::env::var(SECRET_KEY_ENV) {
            Ok(v) if !v.trim().is_empty() => Self::parse(v.trim()),
            _ => bail!(
                "{SECRET_KEY_ENV} is not set: the Split API tokens of server-fed segments are sealed with it; {}",
                missing_key_hint()
            ),
        }
    }

    /// Parses 64 hex digits or base64 (standard or URL-safe, padded or not)
    /// of exactly 32 bytes. The message never repeats the value.
    pub fn parse(text: &str) -> Result<Self> {
        use base64::Engine;
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            let t = text.trim_end_matches('=');
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(t)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
                .ok()
        };
        match bytes {
            Some(b) if b.len() == 32 => Ok(Self::from_bytes(&b)),
            Some(b) => bail!(
                "{SECRET_KEY_ENV} must hold 32 bytes, it decodes to {}; {}",
                b.len(),
                missing_key_hint()
            ),
            None => bail!(
                "{SECRET_KEY_ENV} is neither 64 hex digits nor base64; {}",
                missing_key_hint()
            ),
        }
    }

    fn from_bytes(master: &[u8]) -> Self {
        let mac = hmac::Key::new(hmac::HMAC_SHA256, master);
        let aead_key = hmac::sign(&mac, b"cdpctl split tenant token v1");
        let id = hmac::sign(&mac, b"cdpctl key id v1");
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, aead_key.as_ref())
            .expect("a 32-byte ChaCha20-Poly1305 key");
        Self {
            aead: LessSafeKey::new(unbound),
            id: hex::encode(&id.as_ref()[..8]),
        }
    }

    /// A short fingerprint of the key (not secret): which key sealed a token.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `nonce || ciphertext || tag`; the environment id is bound as
    /// associated data, so a sealed token cannot be moved to another tenant.
    pub fn seal(&self, environment_id: &str, token: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random generator");
        let mut buf = token.as_bytes().to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(environment_id.as_bytes()),
                &mut buf,
            )
            .expect("sealing a token");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        out
    }

    /// The token, or `None` when the data was not sealed by this key for
    /// this environment.
    pub fn unseal(&self, environment_id: &str, sealed: &[u8]) -> Option<String> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ct.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(environment_id.as_bytes()), &mut buf)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

/// What a request says about its tenant.
#[derive(Clone)]
pub struct TenantRequest {
    pub environment_id: String,
    pub workspace_id: String,
    pub traffic_type_id: String,
    pub api_token: String,
}

impl std::fmt::Debug for TenantRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantRequest")
            .field("environment_id", &self.environment_id)
            .field("api_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl TenantRequest {
    /// A digest of everything stored for the tenant, to see whether the
    /// stored row is current without keeping the token itself around.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            &self.environment_id,
            &self.workspace_id,
            &self.traffic_type_id,
            &self.api_token,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }
}

/// Creates or updates the tenant of `t.environment_id` (the latest token
/// wins, so a rotated token takes effect with the next request) and
/// returns its id.
pub async fn upsert(client: &Client, a: &str, key: &SecretKey, t: &TenantRequest) -> Result<i64> {
    let sealed = key.seal(&t.environment_id, &t.api_token);
    let row = client
        .query_one(
            &format!(
                "INSERT INTO {a}.split_tenants (environment_id, workspace_id, traffic_type_id, token_sealed, key_id)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (environment_id) DO UPDATE
                    SET workspace_id = EXCLUDED.workspace_id,
                        traffic_type_id = EXCLUDED.traffic_type_id,
                        token_sealed = EXCLUDED.token_sealed,
                        key_id = EXCLUDED.key_id,
                        updated_at = clock_timestamp()
                 RETURNING id"
            ),
            &[
                &t.environment_id,
                &t.workspace_id,
                &t.traffic_type_id,
                &sealed,
                &key.id(),
            ],
        )
        .await
        .pg_context(|| {
            format!(
                "storing the tenant of Split environment {:?} in {a}.split_tenants",
                t.environment_id
            )
        })?;
    Ok(row.get(0))
}

/// A tenant ready for delivery, or why it is not.
pub struct Tenant {
    pub id: i64,
    pub environment_id: String,
    pub token: std::result::Result<String, String>,
}

/// Loads and unseals the tenants `ids`. A missing key or a token sealed
/// with another key is reported per tenant (its rows stay queued).
pub async fn load(
    client: &Client,
    a: &str,
    key: std::result::Result<&SecretKey, &str>,
    ids: &[i64],
) -> Result<HashMap<i64, Tenant>> {
    let rows = client
        .query(
            &format!(
                "SELECT id, environment_id, token_sealed, key_id FROM {a}.split_tenants WHERE id = ANY($1)"
            ),
            &[&ids],
        )
        .await
        .pg_context(|| format!("reading tenants from {a}.split_tenants"))?;
    let mut out = HashMap::new();
    for r in rows {
        let id: i64 = r.get(0);
        let environment_id: String = r.get(1);
        let sealed: Vec<u8> = r.get(2);
        let key_id: String = r.get(3);
        let token = match key {
            Err(e) => Err(e.to_string()),
            Ok(k) => k.unseal(&environment_id, &sealed).ok_or_else(|| {
                if k.id() == key_id {
                    "its API token cannot be unsealed: the stored data is damaged; the next request for this environment stores it again".to_string()
                } else {
                    format!("its API token was sealed with another {SECRET_KEY_ENV} (key id {key_id}, this one is {}); use that key, or let the next request for this environment store the token again under this one", k.id())
                }
            }),
        };
        out.insert(
            id,
            Tenant {
                id,
                environment_id,
                token,
            },
        );
    }
    for id in ids {
        if !out.contains_key(id) {
            return Err(anyhow!(
                "queued rows name tenant {id}, which is not in {a}.split_tenants; restore the tenant row or delete those rows"
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn sealed_tokens_open_only_with_their_key_and_environment() {
        let k = SecretKey::parse(HEX).unwrap();
        let sealed = k.seal("env-1", "tok-secret");
        assert!(!sealed.windows(10).any(|w| w == b"tok-secret"));
        assert_eq!(k.unseal("env-1", &sealed).as_deref(), Some("tok-secret"));
        assert_eq!(k.unseal("env-2", &sealed), None, "bound to its environment");
        let other = SecretKey::parse(&HEX.replace("00", "ff")).unwrap();
        assert_eq!(other.unseal("env-1", &sealed), None);
        assert_ne!(k.id(), other.id());
        // fresh nonce every time
        assert_ne!(sealed, k.seal("env-1", "tok-secret"));
    }

    #[test]
    fn keys_parse_as_hex_or_base64_and_errors_hide_the_value() {
        use base64::Engine;
        let raw: Vec<u8> = (0u8..32).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert_eq!(
            SecretKey::parse(&b64).unwrap().id(),
            SecretKey::parse(HEX).unwrap().id()
        );
        let e = SecretKey::parse("short-secret-value")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("short-secret-value"), "{e}");
        assert!(e.contains(SECRET_KEY_ENV), "{e}");
        let e = SecretKey::parse(&HEX[..62]).unwrap_err().to_string();
        assert!(e.contains("32 bytes") || e.contains("neither"), "{e}");
    }
}
