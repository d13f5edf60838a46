//! Encryption at rest: the data key, its check value, and sealing of every value that holds
//! user data before it reaches RocksDB (and so its WAL, memtables, SSTs and MANIFEST).
//!
//! [`ValueCipher`] is either `Plain` (no key configured: values pass through untouched) or
//! `Sealed`: AES-256-GCM under a per-session key derived from the data key, with a counter
//! nonce, and the record's column family and key as associated data, so a value copied to
//! another key or column family fails to open instead of being served. Values written by
//! earlier builds (XChaCha20-Poly1305, random 24-byte nonces) still open. [`is_sealed`] is
//! the one list of which values are sealed; keys stay plaintext because RocksDB orders and
//! looks up by them. Byte layouts, the key check and the argon2id parameters are documented
//! in `docs/STORAGE.md`.
//!
//! Hashing is untouched: Merkle leaves cover the plaintext canonical encoding, the committer
//! seals after hashing and every reader opens before decoding, so `verify` means the same
//! with and without a key.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use base64::Engine as _;
use chacha20::cipher::consts::U10;
use rand::rngs::OsRng;
use rand::TryRngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};
use rocksdb::{IteratorMode, WriteOptions, DB};
use zeroize::Zeroizing;

use super::codec::Reader;
use super::error::EngineError;
use super::keys::{
    CF_AGGREGATES, CF_EVENTS, CF_IDEMPOTENCY, CF_META, CF_SNAPSHOTS, META_ENCRYPTION, META_SCHEMA,
};

/// Bytes of a data encryption key (256-bit, for either cipher).
pub const KEY_LEN: usize = 32;
/// First byte of a value sealed by earlier builds: XChaCha20-Poly1305 with a random 24-byte
/// nonce. Still opened, no longer written.
pub const SEALED_FORMAT_XCHACHA: u8 = 0xE1;
/// First byte of every value sealed now: AES-256-GCM under a session key (see
/// [`SESSION_ID_LEN`]) with a counter nonce. A later format gets another tag, so old values
/// stay readable.
pub const SEALED_FORMAT: u8 = 0xE2;
/// The bytes between the format tag and the ciphertext, in both formats: XChaCha20's random
/// nonce, or a session id and a counter.
pub const NONCE_LEN: usize = 24;
/// Bytes naming the session key a value was sealed under. Every process that opens a store
/// for writing starts a session with 128 fresh random bits, so two sessions share a key with
/// probability ~2^-128 per pair: nonces never repeat under one key without any counter that
/// has to survive crashes.
pub const SESSION_ID_LEN: usize = 16;
/// Seals under one session key before a new session starts. Counter nonces cannot repeat
/// within a session; the bound keeps each key far below GCM's usage limits anyway (2^32
/// values of at most a few MiB each).
pub const SESSION_MAX_SEALS: u64 = 1 << 32;
/// Session keys kept ready for opening. A scan meets long runs of values from one session
/// (every restart of the daemon starts one), so a handful covers the working set; a miss
/// costs one derivation (~0.2 µs), not an error.
pub const OPEN_CACHE_SESSIONS: usize = 16;
/// Authentication tag (Poly1305 or GHASH, 16 bytes either way).
pub const TAG_LEN: usize = 16;
/// What sealing adds to every value: format tag, nonce and tag.
pub const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;
/// Domain separation for session keys: `blake3::keyed_hash(data key, context ‖ session id)`.
const SESSION_KEY_CONTEXT: &[u8] = b"EventDBX AES-256-GCM session key v1\0";

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
/// Cipher ids in the record: what new values are sealed with. A store created by an earlier
/// build says XChaCha20-Poly1305 until it is opened for writing by this one.
const CIPHER_XCHACHA20_POLY1305: u8 = 1;
const CIPHER_AES_256_GCM_SESSIONS: u8 = 2;
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
    every_value_sealed(cf) || (cf == CF_META && key == META_SCHEMA)
}

/// Whether every value of column family `cf` is sealed when a key is set (see
/// [`is_sealed`]); such a column family then holds nothing compression can shrink.
pub fn every_value_sealed(cf: &str) -> bool {
    matches!(
        cf,
        CF_EVENTS | CF_AGGREGATES | CF_SNAPSHOTS | CF_IDEMPOTENCY
    )
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
    /// Sealed under the store's data key (zeroized when dropped).
    Sealed(Arc<DataKey>),
}

impl std::fmt::Debug for ValueCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValueCipher::Plain => "ValueCipher::Plain",
            ValueCipher::Sealed(_) => "ValueCipher::Sealed(<key redacted>)",
        })
    }
}

/// The store's data key and the session keys derived from it.
///
/// New values are sealed with AES-256-GCM (hardware AES and carry-less multiply where the
/// CPU has them, which `ring` detects) under a *session key*: `blake3::keyed_hash(data key,
/// SESSION_KEY_CONTEXT ‖ session id)` for a random 16-byte session id drawn when the store
/// is opened, with the nonce `0x00000000 ‖ counter` for a per-session counter. The value
/// carries the session id and the counter, so opening needs no state but the data key.
///
/// Why not XChaCha20-Poly1305 with random nonces, as earlier builds did: on this project's
/// machine it opened a 300-byte value in ~0.42 µs (an HChaCha20 subkey and a fresh
/// ChaCha20-Poly1305 key per value, then the AEAD), AES-256-GCM with a ready key in ~0.1 µs,
/// and an outbox page opens a thousand values. A single AES-GCM key with random 96-bit
/// nonces would be limited to 2^32 values by NIST SP 800-38D; session keys with counter
/// nonces have no such limit and no counter that has to survive a crash.
pub(crate) struct DataKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    /// The session new values are sealed under, and the next counter.
    sealing: Mutex<SealingSession>,
    /// Session keys ready for opening, most recently derived first.
    opening: RwLock<Vec<Arc<SessionKey>>>,
}

/// One session's AES-256-GCM key (ring keeps the expanded key; its id names it in values).
struct SessionKey {
    id: [u8; SESSION_ID_LEN],
    aead: LessSafeKey,
}

struct SealingSession {
    key: Arc<SessionKey>,
    next_counter: u64,
}

impl DataKey {
    fn new(key: &[u8; KEY_LEN]) -> Result<Self, EngineError> {
        let key = Zeroizing::new(*key);
        let session = Arc::new(new_session(&key)?);
        Ok(Self {
            key,
            opening: RwLock::new(vec![Arc::clone(&session)]),
            sealing: Mutex::new(SealingSession {
                key: session,
                next_counter: 0,
            }),
        })
    }

    /// The session key named `id`, derived and cached when it is not at hand.
    fn session_for_opening(
        &self,
        id: &[u8; SESSION_ID_LEN],
    ) -> Result<Arc<SessionKey>, EngineError> {
        self.with_session(id, Arc::clone)
    }

    /// Runs `use_key` with the session key named `id`, derived and cached when it is not
    /// at hand. (A closure rather than a returned `Arc`, so opening a value updates no
    /// shared reference count.)
    fn with_session<T>(
        &self,
        id: &[u8; SESSION_ID_LEN],
        use_key: impl FnOnce(&Arc<SessionKey>) -> T,
    ) -> Result<T, EngineError> {
        {
            let cached = self.opening.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = cached.iter().find(|session| &session.id == id) {
                return Ok(use_key(found));
            }
        }
        let derived = Arc::new(session_key(&self.key, *id)?);
        let result = use_key(&derived);
        let mut cached = self.opening.write().unwrap_or_else(PoisonError::into_inner);
        cached.insert(0, derived);
        cached.truncate(OPEN_CACHE_SESSIONS);
        Ok(result)
    }

    /// The RFC 8439 key and nonce for one XChaCha nonce (values of format `0xE1`).
    fn xchacha_subkey(&self, nonce: &[u8; NONCE_LEN]) -> Result<(LessSafeKey, Nonce), EngineError> {
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

/// A fresh session: a random id and its key.
fn new_session(data_key: &[u8; KEY_LEN]) -> Result<SessionKey, EngineError> {
    let mut id = [0u8; SESSION_ID_LEN];
    fill_random(&mut id)?;
    session_key(data_key, id)
}

/// The AES-256-GCM key of session `id` (a keyed BLAKE3 hash is a PRF of the data key).
fn session_key(
    data_key: &[u8; KEY_LEN],
    id: [u8; SESSION_ID_LEN],
) -> Result<SessionKey, EngineError> {
    let mut hasher = blake3::Hasher::new_keyed(data_key);
    hasher.update(SESSION_KEY_CONTEXT);
    hasher.update(&id);
    let derived = Zeroizing::new(*hasher.finalize().as_bytes());
    let unbound = UnboundKey::new(&AES_256_GCM, &derived[..])
        .map_err(|_| EngineError::EncryptionKey("the derived session key was rejected".into()))?;
    Ok(SessionKey {
        id,
        aead: LessSafeKey::new(unbound),
    })
}

/// The 96-bit GCM nonce of counter `counter`.
fn gcm_nonce(counter: [u8; 8]) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter);
    Nonce::assume_unique_for_key(nonce)
}

/// The associated data of a value: column family, 0x00, record key. Column family names
/// contain no 0x00, so the pair is unambiguous.
#[cfg(test)]
fn associated_data(cf: &str, key: &[u8]) -> Vec<u8> {
    AssociatedData::new(cf, key).as_slice().to_vec()
}

/// Associated data (see `associated_data`) built on the stack when it fits, which it does
/// for every key but long aggregate ids and idempotency keys: one heap allocation less per
/// value sealed or opened.
enum AssociatedData {
    Inline([u8; INLINE_AAD_BYTES], usize),
    Heap(Vec<u8>),
}

/// Longest associated data built on the stack: the longest column family name, its 0x00,
/// and keys of up to ~80 bytes (event keys are 8).
const INLINE_AAD_BYTES: usize = 96;

impl AssociatedData {
    fn new(cf: &str, key: &[u8]) -> Self {
        let len = cf.len() + 1 + key.len();
        if len <= INLINE_AAD_BYTES {
            let mut bytes = [0u8; INLINE_AAD_BYTES];
            bytes[..cf.len()].copy_from_slice(cf.as_bytes());
            bytes[cf.len() + 1..len].copy_from_slice(key);
            AssociatedData::Inline(bytes, len)
        } else {
            let mut bytes = Vec::with_capacity(len);
            bytes.extend_from_slice(cf.as_bytes());
            bytes.push(0);
            bytes.extend_from_slice(key);
            AssociatedData::Heap(bytes)
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            AssociatedData::Inline(bytes, len) => &bytes[..*len],
            AssociatedData::Heap(bytes) => bytes,
        }
    }
}

impl ValueCipher {
    fn from_key(key: &[u8; KEY_LEN]) -> Result<Self, EngineError> {
        Ok(ValueCipher::Sealed(Arc::new(DataKey::new(key)?)))
    }

    /// A sealed cipher under a fixed key, for other modules' unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        match Self::from_key(&[7u8; KEY_LEN]) {
            Ok(cipher) => cipher,
            Err(err) => panic!("test key: {err}"),
        }
    }

    /// The bytes to store for `value` at `key` in `cf`: `value` itself when plain, else
    /// `SEALED_FORMAT ‖ session id ‖ counter ‖ ciphertext ‖ tag`.
    pub fn seal(&self, cf: &str, key: &[u8], value: Vec<u8>) -> Result<Vec<u8>, EngineError> {
        match self {
            ValueCipher::Plain => Ok(value),
            ValueCipher::Sealed(data_key) => seal_with(data_key, cf, key, &value),
        }
    }

    /// [`seal`](Self::seal) for a caller that keeps the plaintext (the commit path keeps an
    /// event's for the opened tail of the history): the sealed bytes, or `None` in a plain
    /// store, where `value` itself is what to store.
    pub fn seal_kept(
        &self,
        cf: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, EngineError> {
        match self {
            ValueCipher::Plain => Ok(None),
            ValueCipher::Sealed(data_key) => seal_with(data_key, cf, key, value).map(Some),
        }
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
        let ValueCipher::Sealed(data_key) = self else {
            return Ok(Cow::Borrowed(stored));
        };
        let mut plain = Vec::new();
        open_sealed(data_key, cf, key, stored, &mut plain, None)?;
        Ok(Cow::Owned(plain))
    }

    /// [`open`](Self::open) for scans: a sealed value's plaintext is written into
    /// `scratch` (reused from value to value, so a long scan allocates once) and borrowed
    /// from there, and the session key of the last value is kept at hand for the next.
    pub fn open_reusing<'a>(
        &self,
        cf: &'static str,
        key: &[u8],
        stored: &'a [u8],
        scratch: &'a mut OpenScratch,
    ) -> Result<&'a [u8], EngineError> {
        match self {
            ValueCipher::Plain => Ok(stored),
            ValueCipher::Sealed(data_key) => {
                open_sealed(
                    data_key,
                    cf,
                    key,
                    stored,
                    &mut scratch.plaintext,
                    Some(&mut scratch.session),
                )?;
                Ok(&scratch.plaintext)
            }
        }
    }
}

/// Seals `value` for `key` in `cf` under the current sealing session (see [`ValueCipher::seal`]).
fn seal_with(
    data_key: &DataKey,
    cf: &str,
    key: &[u8],
    value: &[u8],
) -> Result<Vec<u8>, EngineError> {
    let header = 1 + NONCE_LEN;
    let mut out = Vec::with_capacity(SEAL_OVERHEAD + value.len());
    out.push(SEALED_FORMAT);
    out.extend_from_slice(&[0u8; NONCE_LEN]);
    out.extend_from_slice(value);
    let aad = AssociatedData::new(cf, key);
    // The session lock is held through the AEAD (~0.1 µs) so a counter is never used
    // before the session it belongs to is the one that is sealing; sealers are almost
    // always the one committer anyway.
    let mut session = data_key
        .sealing
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if session.next_counter >= SESSION_MAX_SEALS {
        let fresh = Arc::new(new_session(&data_key.key)?);
        *session = SealingSession {
            key: fresh,
            next_counter: 0,
        };
    }
    let counter = session.next_counter.to_be_bytes();
    session.next_counter += 1;
    out[1..1 + SESSION_ID_LEN].copy_from_slice(&session.key.id);
    out[1 + SESSION_ID_LEN..header].copy_from_slice(&counter);
    let tag = session
        .key
        .aead
        .seal_in_place_separate_tag(
            gcm_nonce(counter),
            Aad::from(aad.as_slice()),
            &mut out[header..],
        )
        .map_err(|_| EngineError::TooLarge {
            what: "sealed value",
            size: value.len(),
            limit: u32::MAX as usize,
        })?;
    drop(session);
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// What a scan reuses from one sealed value to the next (see
/// [`ValueCipher::open_reusing`]): the plaintext buffer, and the last session key used, so
/// a run of values from one session skips the shared key cache.
#[derive(Default)]
pub(crate) struct OpenScratch {
    plaintext: Vec<u8>,
    session: Option<Arc<SessionKey>>,
}

/// Opens a sealed value of either format into `plain` (cleared first).
fn open_sealed(
    data_key: &DataKey,
    cf: &'static str,
    key: &[u8],
    stored: &[u8],
    plain: &mut Vec<u8>,
    last_session: Option<&mut Option<Arc<SessionKey>>>,
) -> Result<(), EngineError> {
    let tampered = || EngineError::Tampered {
        cf,
        key: key.escape_ascii().to_string(),
    };
    let mut reader = Reader::new(stored);
    let format = reader.u8();
    let nonce = reader.array::<NONCE_LEN>().ok_or_else(tampered)?;
    let body = reader.take(stored.len().saturating_sub(SEAL_OVERHEAD));
    let tag_present = reader.array::<TAG_LEN>().is_some();
    let (Some(body), true) = (body, tag_present && reader.is_empty()) else {
        return Err(tampered());
    };
    // `ciphertext ‖ tag` is the tail of the stored value, as `open_in_place` takes it.
    plain.clear();
    plain.extend_from_slice(stored.get(1 + NONCE_LEN..).ok_or_else(tampered)?);
    let aad = AssociatedData::new(cf, key);
    let aad = Aad::from(aad.as_slice());
    let opened = match format {
        Some(SEALED_FORMAT) => {
            let (id, counter) = nonce.split_at(SESSION_ID_LEN);
            let (Ok(id), Ok(counter)) = (id.try_into(), counter.try_into()) else {
                return Err(tampered());
            };
            let mut open = |session: &SessionKey| {
                session
                    .aead
                    .open_in_place(gcm_nonce(counter), aad, plain)
                    .map(|opened| opened.len())
            };
            match last_session {
                Some(Some(session)) if session.id == id => open(session),
                Some(last) => {
                    let session = data_key.session_for_opening(&id)?;
                    let opened = open(&session);
                    *last = Some(session);
                    opened
                }
                None => data_key.with_session(&id, |session| open(session))?,
            }
            .map_err(|_| tampered())?
        }
        Some(SEALED_FORMAT_XCHACHA) => {
            let (subkey, short_nonce) = data_key.xchacha_subkey(&nonce)?;
            subkey
                .open_in_place(short_nonce, aad, plain)
                .map_err(|_| tampered())?
                .len()
        }
        _ => return Err(tampered()),
    };
    debug_assert_eq!(opened, body.len());
    plain.truncate(opened);
    Ok(())
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
    /// What new values are sealed with ([`CIPHER_AES_256_GCM_SESSIONS`] once this build has
    /// written to the store); either way every format this build knows is opened.
    cipher: u8,
    kdf: Kdf,
    /// `KEY_CHECK_PLAINTEXT` sealed under the data key at `meta/encryption`.
    check: Vec<u8>,
}

impl EncryptionRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.check.len());
        out.push(RECORD_VERSION);
        out.push(self.cipher);
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
        let cipher = match r.u8() {
            Some(known @ (CIPHER_XCHACHA20_POLY1305 | CIPHER_AES_256_GCM_SESSIONS)) => known,
            _ => return Err(corrupt("unknown cipher")),
        };
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
        Ok(Self { cipher, kdf, check })
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
    let cipher = ValueCipher::from_key(&*derive_key(spec, &kdf)?)?;
    let check = cipher.seal(CF_META, META_ENCRYPTION, KEY_CHECK_PLAINTEXT.to_vec())?;
    Ok((
        EncryptionRecord {
            cipher: CIPHER_AES_256_GCM_SESSIONS,
            kdf,
            check,
        },
        cipher,
    ))
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
            let cipher = ValueCipher::from_key(&*derive_key(spec, &record.kdf)?)?;
            match cipher.open(CF_META, META_ENCRYPTION, &record.check) {
                Ok(plain) if plain.as_ref() == KEY_CHECK_PLAINTEXT => {}
                _ => {
                    return Err(EngineError::EncryptionKey(format!(
                        "data_encryption_key does not open the store at {}: the key check \
                         failed (wrong key or passphrase); configure the key the store was \
                         encrypted with",
                        dir.display()
                    )))
                }
            }
            if stamp && record.cipher != CIPHER_AES_256_GCM_SESSIONS {
                // This open will write values an earlier build cannot read: say so in the
                // record, so such a build refuses the store at open instead of failing on
                // the first new value it meets.
                let upgraded = EncryptionRecord {
                    cipher: CIPHER_AES_256_GCM_SESSIONS,
                    check: cipher.seal(CF_META, META_ENCRYPTION, KEY_CHECK_PLAINTEXT.to_vec())?,
                    ..record
                };
                let mut write = WriteOptions::default();
                write.set_sync(true);
                db.put_cf_opt(meta, META_ENCRYPTION, upgraded.encode(), &write)?;
            }
            Ok(cipher)
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
    use super::store::ValueForm;
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
    let source = super::store::open(from, DEFAULT_BLOCK_CACHE_BYTES, ValueForm::of(from_key))?;
    let opener = open_cipher(&source, from, from_key, false)?;
    std::fs::create_dir_all(to).map_err(|source| EngineError::Io {
        path: to.display().to_string(),
        source,
    })?;
    let target = super::store::open(to, DEFAULT_BLOCK_CACHE_BYTES, ValueForm::of(to_key))?;
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
        ValueCipher::for_tests()
    }

    fn data_key(cipher: &ValueCipher) -> &DataKey {
        match cipher {
            ValueCipher::Sealed(key) => key,
            ValueCipher::Plain => panic!("a sealed cipher"),
        }
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

    /// Values sealed by earlier builds (XChaCha20-Poly1305, draft-irtf-cfrg-xchacha) must
    /// keep opening: RustCrypto's implementation seals them here, for empty, short and
    /// multi-block values, and a changed byte still fails.
    #[test]
    fn xchacha_values_of_earlier_builds_still_open() {
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        let key = [0x42u8; KEY_LEN];
        let ours = ValueCipher::from_key(&key).expect("key");
        let theirs = XChaCha20Poly1305::new((&key).into());
        let aad = associated_data(CF_EVENTS, b"record-key");
        for len in [0usize, 1, 63, 64, 65, 300, 4_097] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let nonce_bytes: [u8; NONCE_LEN] = std::array::from_fn(|i| (i * 13 + len) as u8);
            let nonce = XNonce::from_slice(&nonce_bytes);
            let mut body = plain.clone();
            let tag = theirs
                .encrypt_in_place_detached(nonce, &aad, &mut body)
                .expect("RustCrypto seals");
            let mut stored = vec![SEALED_FORMAT_XCHACHA];
            stored.extend_from_slice(nonce);
            stored.extend_from_slice(&body);
            stored.extend_from_slice(&tag);
            assert_eq!(
                ours.open(CF_EVENTS, b"record-key", &stored)
                    .expect("open")
                    .as_ref(),
                plain.as_slice(),
                "len {len}"
            );
            let last = stored.len() - 1;
            stored[last] ^= 1;
            assert!(ours.open(CF_EVENTS, b"record-key", &stored).is_err());
        }
    }

    /// A value of format `0xE2` is exactly the documented construction: RustCrypto's
    /// AES-256-GCM, under `blake3::keyed_hash(data key, context ‖ session id)` with the nonce
    /// `0x00000000 ‖ counter`, opens what we seal, and we open what it seals.
    #[test]
    fn sealing_matches_the_documented_aes_gcm_construction() {
        use aes_gcm::aead::{AeadInPlace, KeyInit};
        use aes_gcm::{Aes256Gcm, Tag};
        let key = [0x42u8; KEY_LEN];
        let ours = ValueCipher::from_key(&key).expect("key");
        let aad = associated_data(CF_EVENTS, b"record-key");
        for (expected_counter, len) in [0usize, 1, 15, 16, 17, 300, 4_097].into_iter().enumerate() {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let sealed = ours
                .seal(CF_EVENTS, b"record-key", plain.clone())
                .expect("seal");
            assert_eq!(sealed[0], SEALED_FORMAT);
            assert_eq!(sealed.len(), len + SEAL_OVERHEAD);
            let session_id = &sealed[1..1 + SESSION_ID_LEN];
            let counter = &sealed[1 + SESSION_ID_LEN..1 + NONCE_LEN];
            assert_eq!(counter, (expected_counter as u64).to_be_bytes());

            let mut hasher = blake3::Hasher::new_keyed(&key);
            hasher.update(b"EventDBX AES-256-GCM session key v1\0");
            hasher.update(session_id);
            let theirs = Aes256Gcm::new(hasher.finalize().as_bytes().into());
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(counter);
            let (body, tag) = sealed[1 + NONCE_LEN..].split_at(len);
            let mut opened = body.to_vec();
            theirs
                .decrypt_in_place_detached((&nonce).into(), &aad, &mut opened, Tag::from_slice(tag))
                .expect("RustCrypto opens our value");
            assert_eq!(opened, plain, "len {len}");

            let mut their_body = plain.clone();
            let their_tag = theirs
                .encrypt_in_place_detached((&nonce).into(), &aad, &mut their_body)
                .expect("RustCrypto seals");
            let mut stored = sealed[..1 + NONCE_LEN].to_vec();
            stored.extend_from_slice(&their_body);
            stored.extend_from_slice(&their_tag);
            assert_eq!(
                stored, sealed,
                "same session and counter, same bytes (len {len})"
            );
        }
    }

    #[test]
    fn every_open_starts_a_session_and_a_full_session_rotates() {
        let key = [5u8; KEY_LEN];
        let (first, second) = (
            ValueCipher::from_key(&key).expect("key"),
            ValueCipher::from_key(&key).expect("key"),
        );
        let a = first.seal(CF_EVENTS, b"k", b"v".to_vec()).expect("seal");
        let b = second.seal(CF_EVENTS, b"k", b"v".to_vec()).expect("seal");
        assert_ne!(a[1..17], b[1..17], "each open draws its own session id");
        assert_eq!(a[17..25], b[17..25], "both counters start at 0");
        // Either instance opens the other's values: the id names the key.
        assert_eq!(
            first.open(CF_EVENTS, b"k", &b).expect("open").as_ref(),
            b"v"
        );

        data_key(&first).sealing.lock().expect("lock").next_counter = SESSION_MAX_SEALS - 1;
        let last = first.seal(CF_EVENTS, b"k", b"v".to_vec()).expect("seal");
        assert_eq!(last[1..17], a[1..17]);
        assert_eq!(last[17..25], (SESSION_MAX_SEALS - 1).to_be_bytes());
        let rotated = first.seal(CF_EVENTS, b"k", b"v".to_vec()).expect("seal");
        assert_ne!(
            rotated[1..17],
            a[1..17],
            "a full session gives way to a new one"
        );
        assert_eq!(rotated[17..25], 0u64.to_be_bytes());
        for value in [&a, &last, &rotated] {
            assert_eq!(
                first.open(CF_EVENTS, b"k", value).expect("open").as_ref(),
                b"v"
            );
        }
    }

    #[test]
    fn values_of_more_sessions_than_the_cache_holds_all_open() {
        let key = [6u8; KEY_LEN];
        let reader = ValueCipher::from_key(&key).expect("key");
        let sealed: Vec<Vec<u8>> = (0..OPEN_CACHE_SESSIONS * 2 + 1)
            .map(|i| {
                ValueCipher::from_key(&key)
                    .expect("key")
                    .seal(CF_EVENTS, b"k", vec![i as u8; 3])
                    .expect("seal")
            })
            .collect();
        for _ in 0..2 {
            for (i, value) in sealed.iter().enumerate() {
                assert_eq!(
                    reader.open(CF_EVENTS, b"k", value).expect("open").as_ref(),
                    [i as u8; 3]
                );
            }
        }
        let cached = data_key(&reader).opening.read().expect("lock").len();
        assert_eq!(cached, OPEN_CACHE_SESSIONS);
    }

    /// A store last written by an earlier build records XChaCha20-Poly1305 and a key check
    /// sealed with it. A read-only check leaves it alone; opening it for writing keeps every
    /// old value readable and rewrites the record to say AES-256-GCM sessions, so an earlier
    /// build would refuse the store at open rather than fail on a new value.
    #[test]
    fn a_store_of_an_earlier_build_opens_and_its_record_is_upgraded_on_write() {
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        let dir = tempfile::tempdir().expect("tempdir");
        let key = [0x24u8; KEY_LEN];
        let xchacha_sealed = |cf: &str, record_key: &[u8], plain: &[u8]| {
            let nonce_bytes = [0x11u8; NONCE_LEN];
            let mut body = plain.to_vec();
            let tag = XChaCha20Poly1305::new((&key).into())
                .encrypt_in_place_detached(
                    XNonce::from_slice(&nonce_bytes),
                    &associated_data(cf, record_key),
                    &mut body,
                )
                .expect("seal");
            let mut stored = vec![SEALED_FORMAT_XCHACHA];
            stored.extend_from_slice(&nonce_bytes);
            stored.extend_from_slice(&body);
            stored.extend_from_slice(&tag);
            stored
        };
        let db =
            super::super::store::open(dir.path(), 1 << 20, super::super::store::ValueForm::Plain)
                .expect("store");
        let meta = super::super::cf(&db, CF_META).expect("meta");
        let old_record = EncryptionRecord {
            cipher: CIPHER_XCHACHA20_POLY1305,
            kdf: Kdf::Raw,
            check: xchacha_sealed(CF_META, META_ENCRYPTION, KEY_CHECK_PLAINTEXT),
        };
        db.put_cf(meta, META_ENCRYPTION, old_record.encode())
            .expect("record");
        let old_value = xchacha_sealed(CF_EVENTS, b"k", b"written by an earlier build");
        let spec = KeySpec::Raw(Zeroizing::new(key));

        open_cipher(&db, dir.path(), Some(&spec), false).expect("read-only check");
        let stored = db
            .get_cf(meta, META_ENCRYPTION)
            .expect("get")
            .expect("record");
        assert_eq!(stored, old_record.encode(), "a check changes nothing");

        let cipher = open_cipher(&db, dir.path(), Some(&spec), true).expect("open for writing");
        let stored = db
            .get_cf(meta, META_ENCRYPTION)
            .expect("get")
            .expect("record");
        let upgraded = EncryptionRecord::decode(&stored).expect("decode");
        assert_eq!(upgraded.cipher, CIPHER_AES_256_GCM_SESSIONS);
        assert_eq!(upgraded.check[0], SEALED_FORMAT);
        assert_eq!(
            cipher
                .open(CF_EVENTS, b"k", &old_value)
                .expect("old value")
                .as_ref(),
            b"written by an earlier build"
        );
        let wrong = KeySpec::Raw(Zeroizing::new([0x25u8; KEY_LEN]));
        assert!(matches!(
            open_cipher(&db, dir.path(), Some(&wrong), true),
            Err(EngineError::EncryptionKey(_))
        ));
        open_cipher(&db, dir.path(), Some(&spec), true).expect("reopens after the upgrade");
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
        let other = ValueCipher::from_key(&[8u8; KEY_LEN]).expect("key");
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
        assert_eq!(decoded.cipher, CIPHER_AES_256_GCM_SESSIONS);
        let again =
            ValueCipher::from_key(&derive_key(&spec, &decoded.kdf).expect("derive")).expect("key");
        let sealed = cipher.seal(CF_EVENTS, b"k", b"v".to_vec()).expect("seal");
        assert_eq!(
            again.open(CF_EVENTS, b"k", &sealed).expect("open").as_ref(),
            b"v"
        );
        let mut encoded = record.encode();
        encoded[1] = CIPHER_XCHACHA20_POLY1305;
        assert_eq!(
            EncryptionRecord::decode(&encoded)
                .expect("earlier cipher")
                .cipher,
            CIPHER_XCHACHA20_POLY1305
        );
        encoded[1] = 3;
        assert!(
            EncryptionRecord::decode(&encoded).is_err(),
            "unknown cipher"
        );
        encoded[1] = CIPHER_AES_256_GCM_SESSIONS;
        for len in 0..encoded.len() {
            assert!(EncryptionRecord::decode(&encoded[..len]).is_err(), "{len}");
        }
        assert!(matches!(
            derive_key(&KeySpec::Raw(Zeroizing::new([1; 32])), &decoded.kdf),
            Err(EngineError::EncryptionKey(_))
        ));
    }
}
