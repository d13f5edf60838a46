//! Encryption at rest: the data key, its check value, and sealing of every value that holds
//! user data before it reaches RocksDB (and so its WAL, memtables, SSTs and MANIFEST).
//!
//! [`ValueCipher`] is either `Plain` (no key configured: values pass through untouched) or
//! `Sealed`: XChaCha20-Poly1305 with a fresh random 24-byte nonce per value, and the
//! record's column family and key as associated data, so a value copied
//! to another key or column family fails to open instead of being served. [`is_sealed`] is
//! the one list of which values are sealed; keys stay plaintext because RocksDB orders and
//! looks up by them. Byte layouts, the key check and the argon2id parameters are documented
//! in `docs/STORAGE.md`.
//!
//! Hashing is untouched: Merkle leaves cover the plaintext canonical encoding, the committer
//! seals after hashing and every reader opens before decoding, so `verify` means the same
//! with and without a key.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use chacha20::cipher::consts::U10;
use rand::rngs::OsRng;
use rand::TryRngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use rocksdb::{IteratorMode, WriteOptions, DB};
use zeroize::Zeroizing;

use super::codec::Reader;
use super::error::EngineError;
use super::keys::{
    CF_AGGREGATES, CF_EVENTS, CF_IDEMPOTENCY, CF_META, CF_SNAPSHOTS, META_ENCRYPTION, META_SCHEMA,
};

/// Bytes of a data encryption key (XChaCha20-Poly1305 takes 256-bit keys).
pub const KEY_LEN: usize = 32;
/// First byte of every sealed value: the sealed-value format (1 = XChaCha20-Poly1305 with a
/// 24-byte nonce). A later format gets another tag, so old values stay readable.
pub const SEALED_FORMAT: u8 = 0xE1;
/// XChaCha20's extended nonce. 192 random bits make a collision negligible for any number
/// of values one key will ever seal, so nonces need no counter and no coordination.
pub const NONCE_LEN: usize = 24;
/// Poly1305 authentication tag.
pub const TAG_LEN: usize = 16;
/// What sealing adds to every value: format tag, nonce and tag.
pub const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// Shortest passphrase accepted: argon2id makes each guess expensive, it cannot make a
/// short passphrase safe. (Counted in characters, not bytes.)
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// argon2id memory cost for new stores, KiB: 64 MiB, RFC 9106's recommendation for
/// memory-constrained settings. Derivation runs once per open, not per value.
pub const ARGON2_M_COST_KIB: u32 = 64 * 1024;
/// argon2id passes for new stores (RFC 9106: 3 with 64 MiB).
pub const ARGON2_T_COST: u32 = 3;
/// argon2id lanes for new stores: 1, because the `argon2` crate computes lanes on one
/// thread anyway, so more lanes would only add memory traffic.
pub const ARGON2_P_COST: u32 = 1;
/// Salt bytes for argon2id (RFC 9106 recommends 16).
pub const ARGON2_SALT_LEN: usize = 16;
/// Largest stored argon2id memory cost honoured (4 GiB): the parameters are read from the
/// store before any key is checked, so a damaged record must not make an open allocate
/// without bound.
pub const MAX_ARGON2_M_COST_KIB: u32 = 4 * 1024 * 1024;
/// Largest stored argon2id pass count honoured, for the same reason (bounds open time).
pub const MAX_ARGON2_T_COST: u32 = 64;
/// Largest stored argon2id lane count honoured (the crate's limit is far higher).
pub const MAX_ARGON2_P_COST: u32 = 64;

/// Version of the `meta/encryption` record.
const RECORD_VERSION: u8 = 1;
/// Cipher ids in the record.
const CIPHER_XCHACHA20_POLY1305: u8 = 1;
/// How the key was made: given as 32 bytes, or stretched from a passphrase.
const KDF_RAW: u8 = 0;
const KDF_ARGON2ID: u8 = 1;
/// The plaintext sealed into the key check value. Opening it proves the key is the store's.
const KEY_CHECK_PLAINTEXT: &[u8] = b"EventDBX data key check v1";

/// Config prefixes of `data_encryption_key`.
pub const FILE_PREFIX: &str = "file:";
pub const BASE64_PREFIX: &str = "base64:";
pub const PASSPHRASE_PREFIX: &str = "passphrase:";

/// Whether the value stored at `key` in column family `cf` is sealed when a key is set.
///
/// Every value that carries user data is: events (payload, metadata, note, issuer, types),
/// aggregate records (state), snapshots (state), idempotency entries (a fingerprint of the
/// request and its event ids) and the stored schema. Stream entries hold only event ids,
/// and the other meta values are counters and markers the store needs before it has a key.
pub fn is_sealed(cf: &str, key: &[u8]) -> bool {
    match cf {
        CF_EVENTS | CF_AGGREGATES | CF_SNAPSHOTS | CF_IDEMPOTENCY => true,
        CF_META => key == META_SCHEMA,
        _ => false,
    }
}

/// Where the data key comes from (the parsed `data_encryption_key`). Its `Debug` never
/// shows key material.
#[derive(Clone)]
pub enum KeySpec {
    /// A file holding the 32 key bytes, raw or as base64 text (what `dbx init` writes).
    File(PathBuf),
    /// 32 bytes given directly (`base64:<44 characters>`).
    Raw(Zeroizing<[u8; KEY_LEN]>),
    /// A passphrase, stretched with argon2id; salt and parameters are stored in the store.
    Passphrase(Zeroizing<String>),
}

impl std::fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySpec::File(path) => f.debug_tuple("File").field(path).finish(),
            KeySpec::Raw(_) => f.write_str("Raw(<redacted>)"),
            KeySpec::Passphrase(_) => f.write_str("Passphrase(<redacted>)"),
        }
    }
}

impl KeySpec {
    /// Parses a `data_encryption_key` value: `file:PATH`, `base64:KEY` (32 bytes), or a
    /// passphrase (`passphrase:TEXT`, or any value without one of these prefixes). Error
    /// messages never repeat the value.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix(FILE_PREFIX) {
            let path = path.trim();
            if path.is_empty() {
                return Err("data_encryption_key `file:` needs a path".into());
            }
            return Ok(KeySpec::File(PathBuf::from(path)));
        }
        if let Some(encoded) = text.strip_prefix(BASE64_PREFIX) {
            return decode_key_text(encoded)
                .map(KeySpec::Raw)
                .map_err(|reason| format!("data_encryption_key `base64:` {reason}"));
        }
        let passphrase = text.strip_prefix(PASSPHRASE_PREFIX).unwrap_or(text);
        let chars = passphrase.chars().count();
        if chars < MIN_PASSPHRASE_CHARS {
            return Err(format!(
                "data_encryption_key: a passphrase needs at least {MIN_PASSPHRASE_CHARS} \
                 characters (this one has {chars}); or give 32 bytes of key material as \
                 `base64:<44 characters>`, or a key file as `file:PATH`"
            ));
        }
        Ok(KeySpec::Passphrase(Zeroizing::new(passphrase.to_owned())))
    }

    /// A `file:` path made absolute against `base` (the workspace directory).
    pub fn relative_to(self, base: &Path) -> Self {
        match self {
            KeySpec::File(path) if path.is_relative() => KeySpec::File(base.join(path)),
            other => other,
        }
    }

    /// How keys are derived from this spec: raw, or argon2id.
    fn kdf_id(&self) -> u8 {
        match self {
            KeySpec::File(_) | KeySpec::Raw(_) => KDF_RAW,
            KeySpec::Passphrase(_) => KDF_ARGON2ID,
        }
    }

    /// The key bytes, for specs that name them (not passphrases).
    fn raw_key(&self) -> Result<Zeroizing<[u8; KEY_LEN]>, EngineError> {
        match self {
            KeySpec::Raw(key) => Ok(key.clone()),
            KeySpec::File(path) => read_key_file(path),
            KeySpec::Passphrase(_) => Err(EngineError::EncryptionKey(
                "a passphrase has no key bytes without its salt".into(),
            )),
        }
    }
}

/// Decodes base64 text (surrounding whitespace ignored) that must hold exactly 32 bytes.
fn decode_key_text(text: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, String> {
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| "is not valid base64".to_owned())?,
    );
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if decoded.len() != KEY_LEN {
        return Err(format!(
            "must decode to exactly {KEY_LEN} bytes (44 base64 characters); it decodes to {}",
            decoded.len()
        ));
    }
    key.copy_from_slice(&decoded);
    Ok(key)
}

/// Reads a key file: exactly 32 raw bytes, or base64 text of 32 bytes.
pub fn read_key_file(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, EngineError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
        EngineError::EncryptionKey(format!(
            "cannot read the data encryption key file {}: {e}",
            path.display()
        ))
    })?);
    if bytes.len() == KEY_LEN {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&bytes);
        return Ok(key);
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        EngineError::EncryptionKey(format!(
            "{} is not a data encryption key file (32 bytes, or their base64 text)",
            path.display()
        ))
    })?;
    decode_key_text(text).map_err(|reason| {
        EngineError::EncryptionKey(format!(
            "{} is not a data encryption key file: its text {reason}",
            path.display()
        ))
    })
}

/// 32 bytes from the operating system's RNG, as the base64 text a key file holds.
pub fn generate_key_text() -> Result<Zeroizing<String>, EngineError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(&mut key[..])?;
    Ok(Zeroizing::new(format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(&key[..])
    )))
}

fn fill_random(out: &mut [u8]) -> Result<(), EngineError> {
    OsRng.try_fill_bytes(out).map_err(|e| {
        EngineError::EncryptionKey(format!("the operating system's random source failed: {e}"))
    })
}

/// Seals and opens values. Cheap to clone (the key is shared).
#[derive(Clone)]
pub(crate) enum ValueCipher {
    /// No key: values are stored as they are.
    Plain,
    /// XChaCha20-Poly1305 under the store's data key (zeroized when dropped).
    Sealed(Arc<XChaChaKey>),
}

impl std::fmt::Debug for ValueCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValueCipher::Plain => "ValueCipher::Plain",
            ValueCipher::Sealed(_) => "ValueCipher::Sealed(<key redacted>)",
        })
    }
}

/// XChaCha20-Poly1305 as draft-irtf-cfrg-xchacha defines it: HChaCha20 turns the data key
/// and the nonce's first 16 bytes into a subkey, and ChaCha20-Poly1305 (RFC 8439) seals
/// under that subkey with the nonce `0x00000000 ‖ nonce[16..24]`.
///
/// HChaCha20 comes from RustCrypto's `chacha20`; the RFC 8439 AEAD from `ring` (linked
/// already for TLS). RustCrypto's `chacha20poly1305` produces the same bytes (a unit test
/// checks both ways) but cost 1.6 µs per 300-byte value on this project's machine against
/// 0.34 µs here, most of it in Poly1305 set-up, and every append seals two values under the
/// one commit lock.
pub(crate) struct XChaChaKey {
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl XChaChaKey {
    /// The RFC 8439 key and nonce for one XChaCha nonce.
    fn subkey(&self, nonce: &[u8; NONCE_LEN]) -> Result<(LessSafeKey, Nonce), EngineError> {
        let (prefix, suffix) = nonce.split_at(16);
        let mut subkey = Zeroizing::new([0u8; KEY_LEN]);
        subkey.copy_from_slice(&chacha20::hchacha::<U10>(
            chacha20::Key::from_slice(&self.key[..]),
            chacha20::cipher::generic_array::GenericArray::from_slice(prefix),
        ));
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &subkey[..])
            .map_err(|_| EngineError::EncryptionKey("the derived subkey was rejected".into()))?;
        let mut short_nonce = [0u8; 12];
        short_nonce[4..].copy_from_slice(suffix);
        Ok((
            LessSafeKey::new(unbound),
            Nonce::assume_unique_for_key(short_nonce),
        ))
    }
}

/// The associated data of a value: column family, 0x00, record key. Column family names
/// contain no 0x00, so the pair is unambiguous.
fn associated_data(cf: &str, key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(cf.len() + 1 + key.len());
    aad.extend_from_slice(cf.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key);
    aad
}

impl ValueCipher {
    fn from_key(key: &[u8; KEY_LEN]) -> Self {
        ValueCipher::Sealed(Arc::new(XChaChaKey {
            key: Zeroizing::new(*key),
        }))
    }

    /// The bytes to store for `value` at `key` in `cf`: `value` itself when plain, else
    /// `SEALED_FORMAT ‖ nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, cf: &str, key: &[u8], value: Vec<u8>) -> Result<Vec<u8>, EngineError> {
        let ValueCipher::Sealed(aead) = self else {
            return Ok(value);
        };
        // Nonces come from the thread's CSPRNG (ChaCha, seeded and periodically reseeded
        // from the OS): 192 random bits never repeat in practice, and a `getrandom` system
        // call per value cost about a microsecond under the one commit lock.
        let mut nonce = [0u8; NONCE_LEN];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        let header = 1 + NONCE_LEN;
        let mut out = Vec::with_capacity(SEAL_OVERHEAD + value.len());
        out.push(SEALED_FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&value);
        let (subkey, short_nonce) = aead.subkey(&nonce)?;
        let tag = subkey
            .seal_in_place_separate_tag(
                short_nonce,
                Aad::from(associated_data(cf, key)),
                &mut out[header..],
            )
            .map_err(|_| EngineError::TooLarge {
                what: "sealed value",
                size: value.len(),
                limit: u32::MAX as usize,
            })?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Reads the value at `key` in column family `cf` and hands its plaintext to `decode`:
    /// the one way point reads meet sealed values. `None` when there is no value.
    pub fn get<T>(
        &self,
        db: &DB,
        cf: &'static str,
        key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, EngineError>,
    ) -> Result<Option<T>, EngineError> {
        match db.get_pinned_cf(super::cf(db, cf)?, key)? {
            Some(stored) => Ok(Some(decode(&self.open(cf, key, &stored)?)?)),
            None => Ok(None),
        }
    }

    /// The plaintext of a stored value. A sealed value that is truncated, altered, or was
    /// sealed for another key or column family is an error, never returned.
    pub fn open<'a>(
        &self,
        cf: &'static str,
        key: &[u8],
        stored: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, EngineError> {
        let ValueCipher::Sealed(aead) = self else {
            return Ok(Cow::Borrowed(stored));
        };
        let tampered = || EngineError::Tampered {
            cf,
            key: key.escape_ascii().to_string(),
        };
        let mut reader = Reader::new(stored);
        if reader.u8() != Some(SEALED_FORMAT) {
            return Err(tampered());
        }
        let nonce = reader.array::<NONCE_LEN>().ok_or_else(tampered)?;
        let body = reader.take(stored.len().saturating_sub(SEAL_OVERHEAD));
        let tag_present = reader.array::<TAG_LEN>().is_some();
        let (Some(body), true) = (body, tag_present && reader.is_empty()) else {
            return Err(tampered());
        };
        // `ciphertext ‖ tag` is the tail of the stored value, as `open_in_place` takes it.
        let mut plain = stored.get(1 + NONCE_LEN..).ok_or_else(tampered)?.to_vec();
        let (subkey, short_nonce) = aead.subkey(&nonce)?;
        let opened = subkey
            .open_in_place(short_nonce, Aad::from(associated_data(cf, key)), &mut plain)
            .map_err(|_| tampered())?
            .len();
        debug_assert_eq!(opened, body.len());
        plain.truncate(opened);
        Ok(Cow::Owned(plain))
    }
}

/// How a store's data key is derived, as recorded in `meta/encryption`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kdf {
    Raw,
    Argon2id {
        m_cost_kib: u32,
        t_cost: u32,
        p_cost: u32,
        salt: [u8; ARGON2_SALT_LEN],
    },
}

/// The plaintext `meta/encryption` record: cipher, key derivation, key check value.
#[derive(Debug)]
struct EncryptionRecord {
    kdf: Kdf,
    /// `KEY_CHECK_PLAINTEXT` sealed under the data key at `meta/encryption`.
    check: Vec<u8>,
}

impl EncryptionRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.check.len());
        out.push(RECORD_VERSION);
        out.push(CIPHER_XCHACHA20_POLY1305);
        match &self.kdf {
            Kdf::Raw => out.push(KDF_RAW),
            Kdf::Argon2id {
                m_cost_kib,
                t_cost,
                p_cost,
                salt,
            } => {
                out.push(KDF_ARGON2ID);
                out.extend_from_slice(&m_cost_kib.to_be_bytes());
                out.extend_from_slice(&t_cost.to_be_bytes());
                out.extend_from_slice(&p_cost.to_be_bytes());
                out.extend_from_slice(salt);
            }
        }
        out.extend_from_slice(&self.check);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, EngineError> {
        let corrupt = |reason: &str| EngineError::corrupt("encryption record", reason.to_owned());
        let mut r = Reader::new(bytes);
        match r.u8() {
            Some(RECORD_VERSION) => {}
            Some(other) => {
                return Err(EngineError::IncompatibleStore(format!(
                    "the store's encryption record has version {other}; this build reads \
                     version {RECORD_VERSION}. Upgrade dbx to open it."
                )))
            }
            None => return Err(corrupt("empty")),
        }
        if r.u8() != Some(CIPHER_XCHACHA20_POLY1305) {
            return Err(corrupt("unknown cipher"));
        }
        let kdf = match r.u8() {
            Some(KDF_RAW) => Kdf::Raw,
            Some(KDF_ARGON2ID) => {
                let (Some(m_cost_kib), Some(t_cost), Some(p_cost), Some(salt)) =
                    (r.u32(), r.u32(), r.u32(), r.array::<ARGON2_SALT_LEN>())
                else {
                    return Err(corrupt("truncated argon2id parameters"));
                };
                if m_cost_kib > MAX_ARGON2_M_COST_KIB
                    || t_cost > MAX_ARGON2_T_COST
                    || p_cost > MAX_ARGON2_P_COST
                {
                    return Err(corrupt("argon2id parameters out of range"));
                }
                Kdf::Argon2id {
                    m_cost_kib,
                    t_cost,
                    p_cost,
                    salt,
                }
            }
            _ => return Err(corrupt("unknown key derivation")),
        };
        let check = r.rest().to_vec();
        if check.len() != KEY_CHECK_PLAINTEXT.len() + SEAL_OVERHEAD {
            return Err(corrupt("key check value has the wrong length"));
        }
        Ok(Self { kdf, check })
    }
}

/// The data key for `spec` under the store's recorded derivation.
fn derive_key(spec: &KeySpec, kdf: &Kdf) -> Result<Zeroizing<[u8; KEY_LEN]>, EngineError> {
    match (spec, kdf) {
        (
            KeySpec::Passphrase(passphrase),
            Kdf::Argon2id {
                m_cost_kib,
                t_cost,
                p_cost,
                salt,
            },
        ) => {
            let params = argon2::Params::new(*m_cost_kib, *t_cost, *p_cost, Some(KEY_LEN))
                .map_err(|e| {
                    EngineError::corrupt("encryption record", format!("argon2id parameters: {e}"))
                })?;
            let argon =
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            let mut key = Zeroizing::new([0u8; KEY_LEN]);
            argon
                .hash_password_into(passphrase.as_bytes(), salt, &mut key[..])
                .map_err(|e| EngineError::EncryptionKey(format!("argon2id failed: {e}")))?;
            Ok(key)
        }
        (KeySpec::File(_) | KeySpec::Raw(_), Kdf::Raw) => spec.raw_key(),
        (KeySpec::Passphrase(_), Kdf::Raw) => Err(EngineError::EncryptionKey(
            "data_encryption_key is a passphrase, but this store was encrypted with 32 bytes of \
             key material (a key file or `base64:`); configure that key instead"
                .into(),
        )),
        (_, Kdf::Argon2id { .. }) => Err(EngineError::EncryptionKey(
            "data_encryption_key is key material (a key file or `base64:`), but this store was \
             encrypted with a passphrase; configure that passphrase instead"
                .into(),
        )),
    }
}

/// A new record (fresh salt for a passphrase) and the cipher it checks.
fn new_record(spec: &KeySpec) -> Result<(EncryptionRecord, ValueCipher), EngineError> {
    let kdf = match spec.kdf_id() {
        KDF_ARGON2ID => {
            let mut salt = [0u8; ARGON2_SALT_LEN];
            fill_random(&mut salt)?;
            Kdf::Argon2id {
                m_cost_kib: ARGON2_M_COST_KIB,
                t_cost: ARGON2_T_COST,
                p_cost: ARGON2_P_COST,
                salt,
            }
        }
        _ => Kdf::Raw,
    };
    let cipher = ValueCipher::from_key(&*derive_key(spec, &kdf)?);
    let check = cipher.seal(CF_META, META_ENCRYPTION, KEY_CHECK_PLAINTEXT.to_vec())?;
    Ok((EncryptionRecord { kdf, check }, cipher))
}

/// True when the store holds nothing a key would have to protect: no event, no aggregate,
/// no stored schema. Such a store may be given a key (or have it checked) freely.
fn holds_no_user_data(db: &DB) -> Result<bool, EngineError> {
    for name in [CF_EVENTS, CF_AGGREGATES, CF_SNAPSHOTS, CF_IDEMPOTENCY] {
        if let Some(item) = db
            .iterator_cf(super::cf(db, name)?, IteratorMode::Start)
            .next()
        {
            item?;
            return Ok(false);
        }
    }
    Ok(db.get_cf(super::cf(db, CF_META)?, META_SCHEMA)?.is_none())
}

/// Checks the configured key against the store and returns the cipher for its values.
///
/// - no record, no key: a plaintext store, values pass through;
/// - record, no key: refused (the store is encrypted);
/// - no record, a key: a store without user data gets a new record (the key check value)
///   when `stamp` is set; one with data is refused, because its plaintext values would be
///   misread as sealed;
/// - record and key: the key must open the key check value.
pub(crate) fn open_cipher(
    db: &DB,
    dir: &Path,
    spec: Option<&KeySpec>,
    stamp: bool,
) -> Result<ValueCipher, EngineError> {
    let meta = super::cf(db, CF_META)?;
    let stored = db.get_cf(meta, META_ENCRYPTION)?;
    match (stored, spec) {
        (None, None) => Ok(ValueCipher::Plain),
        (Some(_), None) => Err(EngineError::EncryptionKey(format!(
            "the store at {} is encrypted at rest, but no data_encryption_key is configured; \
             set the key it was created with (`dbx config --data-encryption-key`, or \
             `file:keys/data.key` in .dbx/config.toml)",
            dir.display()
        ))),
        (None, Some(spec)) => {
            if !holds_no_user_data(db)? {
                return Err(EngineError::EncryptionKey(format!(
                    "the store at {} holds unencrypted data, but data_encryption_key is set; \
                     encrypt it with `dbx storage rekey` (daemon stopped), or remove \
                     data_encryption_key from .dbx/config.toml to keep it unencrypted",
                    dir.display()
                )));
            }
            let (record, cipher) = new_record(spec)?;
            if stamp {
                let mut write = WriteOptions::default();
                write.set_sync(true);
                db.put_cf_opt(meta, META_ENCRYPTION, record.encode(), &write)?;
            }
            Ok(cipher)
        }
        (Some(bytes), Some(spec)) => {
            let record = EncryptionRecord::decode(&bytes)?;
            let cipher = ValueCipher::from_key(&*derive_key(spec, &record.kdf)?);
            match cipher.open(CF_META, META_ENCRYPTION, &record.check) {
                Ok(plain) if plain.as_ref() == KEY_CHECK_PLAINTEXT => Ok(cipher),
                _ => Err(EngineError::EncryptionKey(format!(
                    "data_encryption_key does not open the store at {}: the key check failed \
                     (wrong key or passphrase); configure the key the store was encrypted with",
                    dir.display()
                ))),
            }
        }
    }
}

/// Whether a data directory holds a store, and whether it is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreEncryption {
    /// No store yet: the key applies when it is created.
    NoStore,
    /// A store without an encryption record.
    Plain,
    /// A store with an encryption record.
    Encrypted,
}

/// Reads (read-only, so also while a daemon runs) whether the store in `dir` is encrypted.
pub fn inspect(dir: &Path) -> Result<StoreEncryption, EngineError> {
    if !super::store::exists(dir) {
        return Ok(StoreEncryption::NoStore);
    }
    let db = super::store::open_read_only(dir)?;
    Ok(
        match db.get_cf(super::cf(&db, CF_META)?, META_ENCRYPTION)? {
            Some(_) => StoreEncryption::Encrypted,
            None => StoreEncryption::Plain,
        },
    )
}

/// Checks, read-only, that `spec` would open the store in `dir` (Ok when there is no store
/// yet). The error is the one `Engine::open` would give.
pub fn check_key(dir: &Path, spec: Option<&KeySpec>) -> Result<(), EngineError> {
    if !super::store::exists(dir) {
        return Ok(());
    }
    let db = super::store::open_read_only(dir)?;
    open_cipher(&db, dir, spec, false).map(|_| ())
}

/// Bytes buffered in one write batch while a store is rewritten: large enough to amortize
/// the write path, small enough to keep the rewrite's memory flat whatever the store size.
pub const REWRITE_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Rewrites the store in `from` (opened with `from_key`) into a new store in `to`, sealed
/// with `to_key` (or unencrypted when `None`): every record of every column family, opened
/// and resealed under its own key; format markers and the encryption record are the new
/// store's own. `to` must not hold a store. `progress(done, estimated_total)` is called
/// after every batch. Needs the source closed by everyone else (it takes RocksDB's lock).
/// Returns the number of records copied. Hashes are untouched: they cover plaintext.
pub fn rewrite_store(
    from: &Path,
    from_key: Option<&KeySpec>,
    to: &Path,
    to_key: Option<&KeySpec>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, EngineError> {
    use super::keys::{ALL_CFS, META_DOMAIN, META_FORMAT};
    use super::options::DEFAULT_BLOCK_CACHE_BYTES;
    if !super::store::exists(from) {
        return Err(EngineError::IncompatibleStore(format!(
            "{} holds no store to rewrite",
            from.display()
        )));
    }
    if super::store::exists(to) {
        return Err(EngineError::IncompatibleStore(format!(
            "{} already holds a store; a rewrite needs an empty target",
            to.display()
        )));
    }
    let source = super::store::open(from, DEFAULT_BLOCK_CACHE_BYTES)?;
    let opener = open_cipher(&source, from, from_key, false)?;
    std::fs::create_dir_all(to).map_err(|source| EngineError::Io {
        path: to.display().to_string(),
        source,
    })?;
    let target = super::store::open(to, DEFAULT_BLOCK_CACHE_BYTES)?;
    let sealer = open_cipher(&target, to, to_key, true)?;

    let total: u64 = ALL_CFS
        .iter()
        .filter_map(|name| {
            let handle = source.cf_handle(name)?;
            source
                .property_int_value_cf(handle, "rocksdb.estimate-num-keys")
                .ok()
                .flatten()
        })
        .sum();
    let mut unsynced = WriteOptions::default();
    unsynced.set_sync(false);
    let mut done = 0u64;
    for name in ALL_CFS {
        let (from_cf, to_cf) = (super::cf(&source, name)?, super::cf(&target, name)?);
        let mut batch = rocksdb::WriteBatch::default();
        for item in source.iterator_cf(from_cf, IteratorMode::Start) {
            let (key, value) = item?;
            if name == CF_META
                && [META_FORMAT, META_DOMAIN, META_ENCRYPTION].contains(&key.as_ref())
            {
                continue;
            }
            let value = if is_sealed(name, &key) {
                let plain = opener.open(name, &key, &value)?.into_owned();
                sealer.seal(name, &key, plain)?
            } else {
                value.into_vec()
            };
            batch.put_cf(to_cf, &key, value);
            done += 1;
            if batch.size_in_bytes() >= REWRITE_BATCH_BYTES {
                target.write_opt(std::mem::take(&mut batch), &unsynced)?;
                progress(done, total.max(done));
            }
        }
        target.write_opt(batch, &unsynced)?;
        progress(done, total.max(done));
    }
    // Durable before the caller swaps directories: sync the WAL, then flush to SST files.
    target.flush_wal(true)?;
    let handles: Vec<_> = ALL_CFS
        .iter()
        .filter_map(|name| target.cf_handle(name))
        .collect();
    let mut flush = rocksdb::FlushOptions::default();
    flush.set_wait(true);
    target.flush_cfs_opt(&handles, &flush)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> ValueCipher {
        ValueCipher::from_key(&[7u8; KEY_LEN])
    }

    #[test]
    fn sealed_values_round_trip_with_fresh_nonces() {
        let c = cipher();
        let a = c.seal(CF_EVENTS, b"k1", b"hello".to_vec()).expect("seal");
        let b = c.seal(CF_EVENTS, b"k1", b"hello".to_vec()).expect("seal");
        assert_ne!(a, b, "a fresh nonce per value");
        assert_eq!(a.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(a[0], SEALED_FORMAT);
        assert!(!a.windows(5).any(|w| w == b"hello"));
        assert_eq!(
            c.open(CF_EVENTS, b"k1", &a).expect("open").as_ref(),
            b"hello"
        );
        let plain = ValueCipher::Plain;
        assert_eq!(
            plain.seal(CF_EVENTS, b"k", b"x".to_vec()).expect("plain"),
            b"x"
        );
    }

    /// Our XChaCha20-Poly1305 (HChaCha20 + ring's RFC 8439 AEAD) must be the standard
    /// construction: RustCrypto's implementation opens what we seal and we open what it
    /// seals, for empty, short and multi-block values.
    #[test]
    fn sealing_matches_rustcrypto_xchacha20poly1305_byte_for_byte() {
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
        let key = [0x42u8; KEY_LEN];
        let ours = ValueCipher::from_key(&key);
        let theirs = XChaCha20Poly1305::new((&key).into());
        let aad = associated_data(CF_EVENTS, b"record-key");
        for len in [0usize, 1, 63, 64, 65, 300, 4_097] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let sealed = ours
                .seal(CF_EVENTS, b"record-key", plain.clone())
                .expect("seal");
            let nonce = XNonce::from_slice(&sealed[1..1 + NONCE_LEN]);
            let (body, tag) = sealed[1 + NONCE_LEN..].split_at(len);
            let mut opened = body.to_vec();
            theirs
                .decrypt_in_place_detached(nonce, &aad, &mut opened, Tag::from_slice(tag))
                .expect("RustCrypto opens our value");
            assert_eq!(opened, plain, "len {len}");

            let mut theirs_sealed = plain.clone();
            let their_tag = theirs
                .encrypt_in_place_detached(nonce, &aad, &mut theirs_sealed)
                .expect("RustCrypto seals");
            let mut stored = vec![SEALED_FORMAT];
            stored.extend_from_slice(nonce);
            stored.extend_from_slice(&theirs_sealed);
            stored.extend_from_slice(&their_tag);
            assert_eq!(stored, sealed, "same nonce, same bytes (len {len})");
            assert_eq!(
                ours.open(CF_EVENTS, b"record-key", &stored)
                    .expect("open")
                    .as_ref(),
                plain.as_slice()
            );
        }
    }

    #[test]
    fn moved_truncated_altered_or_foreign_values_do_not_open() {
        let c = cipher();
        let sealed = c.seal(CF_EVENTS, b"k1", b"payload".to_vec()).expect("seal");
        assert!(matches!(
            c.open(CF_EVENTS, b"k2", &sealed),
            Err(EngineError::Tampered { .. })
        ));
        assert!(c.open(CF_AGGREGATES, b"k1", &sealed).is_err());
        for len in 0..sealed.len() {
            assert!(c.open(CF_EVENTS, b"k1", &sealed[..len]).is_err(), "{len}");
        }
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 0x01;
            assert!(c.open(CF_EVENTS, b"k1", &bad).is_err(), "byte {at}");
        }
        let other = ValueCipher::from_key(&[8u8; KEY_LEN]);
        assert!(other.open(CF_EVENTS, b"k1", &sealed).is_err());
    }

    #[test]
    fn key_specs_parse_without_echoing_the_value() {
        assert!(matches!(
            KeySpec::parse("file:keys/data.key"),
            Ok(KeySpec::File(p)) if p == Path::new("keys/data.key")
        ));
        let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert!(matches!(
            KeySpec::parse(&format!("base64:{key}")),
            Ok(KeySpec::Raw(k)) if *k == [9u8; 32]
        ));
        let short = base64::engine::general_purpose::STANDARD.encode([9u8; 31]);
        let err = KeySpec::parse(&format!("base64:{short}")).expect_err("31 bytes");
        assert!(err.contains("32 bytes") && !err.contains(&short), "{err}");
        let err = KeySpec::parse("hunter2").expect_err("short passphrase");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(matches!(
            KeySpec::parse("correct horse battery staple"),
            Ok(KeySpec::Passphrase(_))
        ));
        assert!(matches!(
            KeySpec::parse("passphrase:correct horse battery staple"),
            Ok(KeySpec::Passphrase(p)) if p.as_str() == "correct horse battery staple"
        ));
        let shown = format!("{:?}", KeySpec::parse("correct horse battery staple"));
        assert!(!shown.contains("horse"), "{shown}");
    }

    #[test]
    fn records_round_trip_and_passphrases_derive_stable_keys() {
        let spec = KeySpec::Passphrase(Zeroizing::new("correct horse battery staple".into()));
        let (record, cipher) = new_record(&spec).expect("record");
        let decoded = EncryptionRecord::decode(&record.encode()).expect("decode");
        assert_eq!(decoded.kdf, record.kdf);
        assert_eq!(decoded.check, record.check);
        let again = ValueCipher::from_key(&derive_key(&spec, &decoded.kdf).expect("derive"));
        let sealed = cipher.seal(CF_EVENTS, b"k", b"v".to_vec()).expect("seal");
        assert_eq!(
            again.open(CF_EVENTS, b"k", &sealed).expect("open").as_ref(),
            b"v"
        );
        let encoded = record.encode();
        for len in 0..encoded.len() {
            assert!(EncryptionRecord::decode(&encoded[..len]).is_err(), "{len}");
        }
        assert!(matches!(
            derive_key(&KeySpec::Raw(Zeroizing::new([1; 32])), &decoded.kdf),
            Err(EngineError::EncryptionKey(_))
        ));
    }
}
