//! What the vault stores: keys, sealed segments, pack indexes and snapshot
//! manifests. Every object but a key is named by the BLAKE3 hash of its
//! bytes, so any change to a stored object is detectable.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::VaultError;

/// A 256-bit key (the master key, or a database's key): never printed,
/// zeroed when the last copy is dropped.
#[derive(Clone, Debug)]
pub struct Key(std::sync::Arc<secrecy::SecretBox<[u8; 32]>>);

impl Key {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(std::sync::Arc::new(secrecy::SecretBox::new(Box::new(bytes))))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        use secrecy::ExposeSecret;
        self.0.expose_secret()
    }

    pub fn random() -> Result<Self, VaultError> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| VaultError::Crypto(format!("no randomness: {e}")))?;
        Ok(Self::new(k))
    }

    /// The key for block hashes: keyed, so stored hashes say nothing about
    /// content to anyone without the database's key.
    pub fn hash_key(&self) -> [u8; 32] {
        blake3::derive_key("seldesk vault block hash v1", self.bytes())
    }
}

/// The tag AES-256-GCM appends.
const TAG_LEN: usize = 16;

/// The AES-256-GCM key for `key`. ring's implementation uses the CPU's
/// AES and carry-less multiply instructions several blocks at a time: 6 GB/s
/// here against 1.3 GB/s for the RustCrypto crate the vault used before
/// (docs/benchmarks.md), with the same bytes on the wire.
fn aead(key: &Key) -> Result<LessSafeKey, VaultError> {
    UnboundKey::new(&AES_256_GCM, key.bytes())
        .map(LessSafeKey::new)
        .map_err(|_| VaultError::Crypto("cannot set up AES-256-GCM".into()))
}

/// Encrypts with AES-256-GCM: 12-byte random nonce, then ciphertext and tag.
pub fn seal(key: &Key, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| VaultError::Crypto(format!("no randomness: {e}")))?;
    let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    // A fresh random nonce per seal: 96 bits make a repeat under one key
    // negligible for the number of segments a database ever has.
    let tag = aead(key)?
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[NONCE_LEN..])
        .map_err(|_| VaultError::Crypto("encryption failed".into()))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Decrypts what [`seal`] made; any change to the bytes or the context fails.
pub fn open(key: &Key, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
    let mut buf = sealed.to_vec();
    let len = open_in_place(key, &mut buf, aad)?.len();
    buf.copy_within(NONCE_LEN..NONCE_LEN + len, 0);
    buf.truncate(len);
    Ok(buf)
}

/// [`open`] without a copy: decrypts `sealed` where it lies and returns
/// the plaintext, a part of it.
pub fn open_in_place<'a>(key: &Key, sealed: &'a mut [u8], aad: &[u8]) -> Result<&'a [u8], VaultError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(VaultError::Corrupt("sealed data too short".into()));
    }
    let (nonce, body) = sealed.split_at_mut(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Corrupt("bad nonce".into()))?;
    let plain = aead(key)?
        .open_in_place(nonce, Aad::from(aad), body)
        .map_err(|_| VaultError::Corrupt("authentication failed (changed bytes or wrong key)".into()))?;
    Ok(plain)
}

pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// The hash of a whole file (formats 2 and 3): keyed BLAKE3 over its size
/// and the hex hashes of its blocks in order. Each block is proven when
/// restored (`Vault::restore`), so this proves the whole file without
/// hashing every byte twice.
pub fn file_hash(hash_key: &[u8; 32], size: u64, blocks: &[blake3::Hash]) -> String {
    let mut h = file_hasher(hash_key, size);
    // A thousand blocks' hex at a time: [`file_hash_of_hex`] says why.
    let mut hex = vec![0u8; 64 * 1024];
    for group in blocks.chunks(1024) {
        let out = &mut hex[..group.len() * 64];
        hex_of_blocks(group, out);
        h.update(out);
    }
    h.finalize().to_hex().to_string()
}

fn file_hasher(hash_key: &[u8; 32], size: u64) -> blake3::Hasher {
    let mut h = blake3::Hasher::new_keyed(hash_key);
    h.update(b"seldesk vault file v2");
    h.update(&size.to_le_bytes());
    h
}

/// Writes the hex of `blocks` into `out` (64 bytes each): what [`file_hash`]
/// hashes, so a backup can write it chunk by chunk while it reads.
pub fn hex_of_blocks(blocks: &[blake3::Hash], out: &mut [u8]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(64)) {
        data_encoding::HEXLOWER.encode_mut(b.as_bytes(), o);
    }
}

/// [`file_hash`] of blocks whose hex [`hex_of_blocks`] wrote. One update
/// hashes many chunks side by side; one block's 64 bytes at a time hash
/// serially (13 ms against ~2 ms for a 532 MB database's 130,000 blocks).
pub fn file_hash_of_hex(hash_key: &[u8; 32], size: u64, hex: &[u8]) -> String {
    let mut h = file_hasher(hash_key, size);
    h.update(hex);
    h.finalize().to_hex().to_string()
}

/// The format new manifests are written in. 3: binary manifests and
/// indexes; the manifest carries a MAC under the database's key and each
/// segment the nonce it was sealed with, so a restore trusts every block
/// location without hashing each block again.
pub const FORMAT: u32 = 3;

/// The MAC of a format-3 manifest: keyed BLAKE3 (a key derived from the
/// database's) over the manifest as encoded with an empty `mac`. It covers
/// the names of the indexes, which are named by the hash of their bytes, so
/// it vouches for every block location they hold.
pub fn manifest_mac(hash_key: &[u8; 32], m: &Manifest) -> Result<String, VaultError> {
    // A manifest being written has no MAC yet: encoded as it is, not copied.
    let bytes = if m.mac.is_empty() { encode(m)? } else { encode(&Manifest { mac: String::new(), ..m.clone() })? };
    Ok(mac_of(hash_key, &bytes))
}

/// The MAC of a manifest encoded with an empty `mac`.
fn mac_of(hash_key: &[u8; 32], unsigned: &[u8]) -> String {
    let key = blake3::derive_key("seldesk vault manifest mac v3", hash_key);
    blake3::keyed_hash(&key, unsigned).to_hex().to_string()
}

/// Sets the MAC of a manifest being written and encodes it, encoding it
/// once, not twice: `mac` is its last field, so the manifest encoded with an
/// empty one (what the MAC covers) is the manifest with that field's one
/// byte, the empty string's length, in place of the MAC.
pub fn sign_and_encode(hash_key: &[u8; 32], m: &mut Manifest) -> Result<Vec<u8>, VaultError> {
    m.mac.clear();
    // Presized: growing a 4 MB manifest by doubling copies it twice over.
    let blocks: usize = m.files.iter().map(|f| f.blocks.len()).sum();
    let mut bytes = Vec::with_capacity(256 + 33 * blocks + 80 * m.indexes.len() + 128 * m.files.len());
    bytes.extend_from_slice(BINARY);
    let mut bytes = postcard::to_extend(&*m, bytes).map_err(|e| VaultError::Io(format!("cannot encode: {e}")))?;
    m.mac = mac_of(hash_key, &bytes);
    if bytes.pop() != Some(0) {
        return Err(VaultError::Io("a manifest's MAC is not its last field".into()));
    }
    postcard::to_extend(&m.mac, bytes).map_err(|e| VaultError::Io(format!("cannot encode: {e}")))
}

/// Marks a binary (format 3) manifest or index; formats 1 and 2 wrote JSON.
const BINARY: &[u8; 8] = b"SDVAULT3";

/// A manifest or index as stored: [`BINARY`], then postcard. Block hashes
/// are raw bytes, a third of their JSON hex, and decode without parsing.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, VaultError> {
    let out = BINARY.to_vec();
    postcard::to_extend(value, out).map_err(|e| VaultError::Io(format!("cannot encode: {e}")))
}

/// Reads what [`encode`] wrote, or the JSON of formats 1 and 2.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.strip_prefix(BINARY.as_slice()) {
        Some(rest) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
        None => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
    }
}

/// Block hashes as hex in JSON (formats 1 and 2), as 32 raw bytes in binary.
mod hex_hash {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &blake3::Hash, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(h.to_hex().as_str()) } else { s.serialize_bytes(h.as_bytes()) }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<blake3::Hash, D::Error> {
        if d.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            blake3::Hash::from_hex(s.as_bytes()).map_err(D::Error::custom)
        } else {
            let b = <&'de [u8]>::deserialize(d)?;
            <[u8; 32]>::try_from(b).map(blake3::Hash::from_bytes).map_err(|_| D::Error::custom("a hash is 32 bytes"))
        }
    }
}

/// A list of block hashes: hex strings in JSON, one run of bytes in binary.
mod hex_hashes {
    use serde::de::Error;
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hs: &[blake3::Hash], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut seq = s.serialize_seq(Some(hs.len()))?;
            for h in hs {
                seq.serialize_element(h.to_hex().as_str())?;
            }
            seq.end()
        } else {
            let flat: Vec<u8> = hs.iter().flat_map(|h| *h.as_bytes()).collect();
            s.serialize_bytes(&flat)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<blake3::Hash>, D::Error> {
        if d.is_human_readable() {
            let hex = <Vec<std::borrow::Cow<'de, str>>>::deserialize(d)?;
            hex.iter().map(|s| blake3::Hash::from_hex(s.as_bytes()).map_err(D::Error::custom)).collect()
        } else {
            let flat = <&'de [u8]>::deserialize(d)?;
            if flat.len() % 32 != 0 {
                return Err(D::Error::custom("a hash list is whole 32-byte hashes"));
            }
            Ok(flat
                .chunks_exact(32)
                .filter_map(|c| <[u8; 32]>::try_from(c).ok())
                .map(blake3::Hash::from_bytes)
                .collect())
        }
    }
}

/// Where a block lives: pack, the segment in it, and the block in the segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockRef {
    #[serde(with = "hex_hash")]
    pub hash: blake3::Hash,
    /// Offset of the block in the segment's plaintext.
    pub start: u32,
    pub len: u32,
}

/// A compressed and encrypted run of blocks inside a pack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Segment {
    pub offset: u64,
    pub len: u32,
    pub blocks: Vec<BlockRef>,
    /// The nonce the segment was sealed with (format 3): a sealed segment
    /// found where another should be is refused even though it decrypts.
    pub nonce: Option<[u8; 12]>,
}

impl Segment {
    /// Whether `sealed` can be this segment: a format-3 segment must carry
    /// the nonce its index recorded (earlier ones recorded none).
    pub fn holds(&self, sealed: &[u8]) -> bool {
        self.nonce.is_none_or(|n| sealed.get(..12) == Some(n.as_slice()))
    }
}

/// The index of one pack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackIndex {
    pub database: String,
    pub pack: String,
    /// Dedup epoch: later snapshots reuse this pack's blocks only within it.
    pub epoch: i64,
    pub segments: Vec<Segment>,
}

/// A file of the snapshot as a list of block hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// `db.sqlite` or `files/<name>`.
    pub path: String,
    pub size: u64,
    /// Format 1: keyed BLAKE3 of the whole file's bytes; formats 2 and 3: [`file_hash`].
    pub hash: String,
    #[serde(with = "hex_hashes")]
    pub blocks: Vec<blake3::Hash>,
}

/// A snapshot: everything needed to restore one database as it was.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub database: String,
    /// Unix ms.
    pub taken_at: i64,
    pub epoch: i64,
    pub block_size: u32,
    pub files: Vec<FileEntry>,
    /// Index objects (by name) that locate every block.
    pub indexes: Vec<String>,
    /// Bytes of the files, and bytes newly stored for this snapshot.
    pub size: u64,
    pub added: u64,
    /// Format 3: [`manifest_mac`]; earlier formats have none.
    #[serde(default)]
    pub mac: String,
}

pub fn key_name(db: &str) -> String {
    format!("keys/{db}")
}
pub fn pack_name(db: &str, id: &str) -> String {
    format!("packs/{db}/{id}")
}
pub fn index_name(db: &str, id: &str) -> String {
    format!("indexes/{db}/{id}")
}
pub fn snapshot_name(db: &str, id: &str) -> String {
    format!("snapshots/{db}/{id}")
}

/// The database and id of an object name (`packs/<db>/<id>`).
pub fn split(name: &str) -> Option<(&str, &str, &str)> {
    let mut it = name.splitn(3, '/');
    Some((it.next()?, it.next()?, it.next().unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> PackIndex {
        let blocks = (0..100u32)
            .map(|i| BlockRef { hash: blake3::hash(&i.to_le_bytes()), start: i * 4096, len: 4096 })
            .collect();
        PackIndex {
            database: "db1".into(),
            pack: "ab".repeat(32),
            epoch: 7,
            segments: vec![Segment { offset: 0, len: 9, blocks, nonce: Some([7; 12]) }],
        }
    }

    #[test]
    fn binary_objects_round_trip_at_under_half_the_size_of_json_which_still_reads() {
        let idx = index();
        let binary = encode(&idx).expect("encode");
        let json = serde_json::to_vec(&idx).expect("json");
        assert!(binary.len() * 2 < json.len(), "{} bytes against {}", binary.len(), json.len());
        for bytes in [&binary, &json] {
            let back: PackIndex = decode(bytes).expect("decode");
            assert_eq!(back.segments[0].blocks[42].hash, idx.segments[0].blocks[42].hash);
            assert_eq!((back.epoch, back.segments[0].blocks.len()), (7, 100));
        }
        // Indexes of format 2 recorded no nonces, manifests no MAC.
        let old: Segment = serde_json::from_str(r#"{"offset":0,"len":9,"blocks":[]}"#).expect("format 2");
        assert_eq!(old.nonce, None);
        // Cut short or with a wrong hash length, an object is an error, not a guess.
        assert!(decode::<PackIndex>(&binary[..binary.len() - 5]).is_err());
        let bad = String::from_utf8(json).expect("utf8").replacen(
            &idx.segments[0].blocks[0].hash.to_hex().to_string(),
            "abcd",
            1,
        );
        assert!(decode::<PackIndex>(bad.as_bytes()).is_err());
    }

    #[test]
    fn a_file_hash_depends_on_the_order_of_its_blocks_and_on_the_key() {
        let blocks: Vec<blake3::Hash> = (0..3u8).map(|i| blake3::hash(&[i])).collect();
        let h = file_hash(&[1; 32], 12288, &blocks);
        let mut swapped = blocks.clone();
        swapped.swap(0, 2);
        assert_ne!(h, file_hash(&[1; 32], 12288, &swapped));
        assert_ne!(h, file_hash(&[2; 32], 12288, &blocks));
        assert_eq!(h, file_hash(&[1; 32], 12288, &blocks));
    }

    #[test]
    fn a_manifest_signed_and_encoded_at_once_is_the_manifest_with_its_mac_encoded() {
        let mut m = Manifest {
            format: FORMAT,
            database: "db1".into(),
            taken_at: 1_790_000_000_000,
            epoch: 207,
            block_size: 4096,
            files: vec![FileEntry {
                path: "db.sqlite".into(),
                size: 8192,
                hash: "f".repeat(64),
                blocks: vec![blake3::hash(b"a"), blake3::hash(b"b")],
            }],
            indexes: vec!["indexes/db1/abc".into()],
            size: 8192,
            added: 4096,
            mac: "left over".into(),
        };
        let bytes = sign_and_encode(&[5; 32], &mut m).expect("encode");
        assert_eq!(m.mac, manifest_mac(&[5; 32], &m).expect("mac"));
        assert_eq!(bytes, encode(&m).expect("encode"));
        assert_eq!(decode::<Manifest>(&bytes).expect("decode").mac, m.mac);
        assert_ne!(m.mac, manifest_mac(&[6; 32], &m).expect("mac"));
    }

    #[test]
    fn a_file_hash_is_its_definition_whatever_the_number_of_blocks() {
        // The definition: the prefix, the size, then each block's hex in order.
        let by_definition = |size: u64, blocks: &[blake3::Hash]| {
            let mut h = blake3::Hasher::new_keyed(&[3; 32]);
            h.update(b"seldesk vault file v2");
            h.update(&size.to_le_bytes());
            for b in blocks {
                h.update(b.to_hex().as_bytes());
            }
            h.finalize().to_hex().to_string()
        };
        for n in [0usize, 1, 1023, 1024, 1025, 5000] {
            let blocks: Vec<blake3::Hash> = (0..n as u32).map(|i| blake3::hash(&i.to_le_bytes())).collect();
            assert_eq!(file_hash(&[3; 32], n as u64 * 4096, &blocks), by_definition(n as u64 * 4096, &blocks), "{n}");
            // Hex written piece by piece, as a backup writes it, hashes the same.
            let mut hex = vec![0u8; n * 64];
            for (i, piece) in blocks.chunks(7).enumerate() {
                hex_of_blocks(piece, &mut hex[i * 7 * 64..]);
            }
            assert_eq!(file_hash_of_hex(&[3; 32], n as u64 * 4096, &hex), by_definition(n as u64 * 4096, &blocks));
        }
    }

    #[test]
    fn sealed_objects_are_standard_aes_256_gcm() {
        // Test case 16 of the GCM specification (McGrew and Viega): what the
        // vault sealed with the RustCrypto crate before opens with ring.
        let hex = |s: &str| data_encoding::HEXLOWER.decode(s.as_bytes()).expect("hex");
        let key =
            Key::new(hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308").try_into().expect("32"));
        let plain = hex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let sealed = hex("cafebabefacedbaddecaf888\
             522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
             76fc6ece0f4e1768cddf8853bb2d551b");
        assert_eq!(open(&key, &sealed, &aad).expect("opens"), plain);
        let mut in_place = sealed.clone();
        assert_eq!(open_in_place(&key, &mut in_place, &aad).expect("opens"), plain.as_slice());
        // A new seal opens, under the same context only, and any flipped bit fails.
        let mine = seal(&key, &plain, &aad).expect("seal");
        assert_eq!(mine.len(), sealed.len());
        assert_eq!(open(&key, &mine, &aad).expect("opens"), plain);
        assert!(open(&key, &mine, b"another context").is_err());
        for at in [0, 12, mine.len() - 1] {
            let mut bad = mine.clone();
            bad[at] ^= 1;
            assert!(open(&key, &bad, &aad).is_err(), "flipped byte {at}");
        }
        assert!(open(&key, &mine[..27], &aad).is_err());
        assert!(open(&Key::new([9; 32]), &mine, &aad).is_err());
        // The key never prints, in any form.
        for printed in [format!("{key:?}"), format!("{key:#?}")] {
            assert!(printed.contains("REDACTED") && !printed.contains("254") && !printed.contains("fe"), "{printed}");
        }
    }
}
