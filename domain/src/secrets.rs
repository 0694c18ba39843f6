//! Secrets at rest: values an administrator or a person enters (bearer tokens, header values,
//! secret environment variables) are encrypted before they reach the database, with a 256-bit key
//! from configuration. ChaCha20-Poly1305 (ring's), a random 96-bit nonce per value, and associated
//! data that binds a ciphertext to its row, so one row's secrets cannot be pasted into another's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::{Error, Result};

/// The key, never printed.
#[derive(Clone)]
pub struct SecretKey {
    key: std::sync::Arc<LessSafeKey>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

pub const KEY_LEN: usize = 32;

impl SecretKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| Error::Invalid(format!("A secret key must be {KEY_LEN} bytes long.")))?;
        Ok(Self {
            key: std::sync::Arc::new(LessSafeKey::new(unbound)),
        })
    }

    /// A key written as base64 (what `SWITCHBOARD_SECRET_KEY` holds).
    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| Error::Invalid("The secret key is not valid base64.".into()))?;
        if bytes.len() != KEY_LEN {
            return Err(Error::Invalid(format!(
                "The secret key must be {KEY_LEN} bytes ({} base64 characters); it is {} bytes.",
                4 * KEY_LEN.div_ceil(3),
                bytes.len()
            )));
        }
        Self::from_bytes(&bytes)
    }

    /// A new random key, as base64.
    pub fn generate() -> String {
        let mut bytes = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut bytes);
        STANDARD.encode(bytes)
    }

    /// Encrypts `plain`, bound to `context`: nonce followed by ciphertext and tag.
    pub fn seal(&self, context: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut sealed,
            )
            .expect("a value of any size under 256 GiB can be sealed");
        let mut out = nonce.to_vec();
        out.append(&mut sealed);
        out
    }

    /// Decrypts what [`seal`](Self::seal) made with the same key and context.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let unreadable = || {
            Error::Invalid(
                "Stored secrets cannot be decrypted with this instance's key (SWITCHBOARD_SECRET_KEY is not the one they were saved with). Set the same key on every instance, or enter the secrets again.".into(),
            )
        };
        if sealed.len() < NONCE_LEN {
            return Err(unreadable());
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unreadable())?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut data)
            .map_err(|_| unreadable())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_context() {
        let key = SecretKey::from_base64(&SecretKey::generate()).unwrap();
        let sealed = key.seal(b"row-1", b"s3cret");
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(key.open(b"row-1", &sealed).unwrap(), b"s3cret");
        assert!(key.open(b"row-2", &sealed).is_err(), "bound to its row");
        let other = SecretKey::from_base64(&SecretKey::generate()).unwrap();
        let error = other.open(b"row-1", &sealed).unwrap_err().to_string();
        assert!(error.contains("SWITCHBOARD_SECRET_KEY"), "{error}");
        assert_ne!(
            key.seal(b"row-1", b"s3cret"),
            sealed,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn a_key_of_the_wrong_size_is_refused_with_the_size_it_needs() {
        let error = SecretKey::from_base64("c2hvcnQ=").unwrap_err().to_string();
        assert!(error.contains("32 bytes"), "{error}");
        assert!(SecretKey::from_base64("not base64!").is_err());
        assert!(
            format!(
                "{:?}",
                SecretKey::from_base64(&SecretKey::generate()).unwrap()
            ) == "SecretKey(..)"
        );
    }
}
