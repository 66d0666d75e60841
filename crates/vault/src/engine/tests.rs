use std::path::Path;

use time::OffsetDateTime;

use super::io::{CHUNK, SPLIT, SourceFile};
use super::*;
use crate::format::{FORMAT, encode, index_name, manifest_mac, snapshot_name};
use crate::pagemap::PageMap;
use crate::store::aligned_start;

fn vault(dir: &Path) -> Vault {
    let regions = vec![RegionStore::new("in", dir.join("in")), RegionStore::new("sg", dir.join("sg"))];
    let settings = VaultSettings { segment_size: 64 << 10, pack_size: 1 << 20, ..VaultSettings::default() };
    Vault::open(regions, &dir.join("vault.key"), settings).expect("open").0
}

#[test]
fn a_second_backup_stores_only_the_changed_pages_and_both_restore_exactly() {
    let dir = tempfile::tempdir().expect("dir");
    let v = vault(dir.path());
    let file = dir.path().join("db.sqlite");
    // 1,000 pages of varied, compressible data.
    let mut data: Vec<u8> = (0..4096 * 1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 % 61).collect();
    std::fs::write(&file, &data).expect("write");
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
    let files = vec![("db.sqlite".to_string(), file.clone(), 4096)];
    let first = v.backup("db1", &files, t0, &|_, _| {}).expect("first");
    assert!(first.added > 0);
    // Change 1% of the pages.
    for p in (0..1000).step_by(100) {
        data[p * 4096 + 7] ^= 0xff;
    }
    std::fs::write(&file, &data).expect("write");
    let second = v.backup("db1", &files, t0 + time::Duration::hours(24), &|_, _| {}).expect("second");
    assert!(second.added * 20 < first.added, "incremental stored {} vs {}", second.added, first.added);
    for (snap, expected_changed) in [(&first, false), (&second, true)] {
        let out = dir.path().join(format!("restore-{}", &snap.id[..8]));
        v.restore(&snap.id, &out, &|_, _| {}).expect("restore");
        let got = std::fs::read(out.join("db.sqlite")).expect("read");
        assert_eq!(got == data, expected_changed);
        assert_eq!(got.len(), data.len());
    }
    assert!(v.check(true, &|_, _| {}).expect("check").is_empty());
    // Another master key cannot read anything.
    std::fs::write(dir.path().join("other.key"), data_encoding::HEXLOWER.encode(&[7u8; 32])).expect("key");
    let regions = vec![RegionStore::new("in", dir.path().join("in"))];
    let stranger = Vault::open(regions, &dir.path().join("other.key"), VaultSettings::default()).expect("open").0;
    assert!(stranger.restore(&first.id, &dir.path().join("x"), &|_, _| {}).is_err());
}

#[test]
fn change_maps_spare_hashing_unchanged_blocks_but_a_damaged_or_old_map_is_ignored() {
    let dir = tempfile::tempdir().expect("dir");
    let maps = dir.path().join("maps");
    let v = vault(dir.path()).with_change_maps(maps.clone());
    let file = dir.path().join("db.sqlite");
    let mut data: Vec<u8> = (0..4096 * 300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(&file, &data).expect("write");
    let files = vec![("db.sqlite".to_string(), file.clone(), 4096)];
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
    let blocks_of = |id: &str| v.manifest(id).expect("manifest").1.files[0].blocks.clone();
    let key = || v.db_key("db1", false).expect("key");
    let expected = |data: &[u8]| -> Vec<blake3::Hash> {
        data.chunks(4096).map(|b| blake3::keyed_hash(&key().hash_key(), b)).collect()
    };
    let first = v.backup("db1", &files, t0, &|_, _| {}).expect("first");
    assert_eq!(blocks_of(&first.id), expected(&data));
    // Changed pages are hashed again; the rest come from the map.
    for p in [0usize, 7, 299] {
        data[p * 4096 + 100] ^= 0x5a;
    }
    std::fs::write(&file, &data).expect("write");
    let second = v.backup("db1", &files, t0 + time::Duration::hours(1), &|_, _| {}).expect("second");
    assert_eq!(blocks_of(&second.id), expected(&data));
    let out = dir.path().join("restored");
    v.restore(&second.id, &out, &|_, _| {}).expect("restore");
    assert_eq!(std::fs::read(out.join("db.sqlite")).expect("read"), data);

    // The map is trusted for a block whose fingerprint it records: one
    // that says page 1 holds page 2 is believed (why it is sealed).
    let mut map = PageMap::load(&maps, &key(), "db1", "db.sqlite").expect("a map");
    assert_eq!(map.entries.len(), 300);
    map.entries[1].1 = map.entries[2].1;
    map.store(&maps, &key(), "db1", "db.sqlite").expect("store");
    let believed = v.backup("db1", &files, t0 + time::Duration::hours(2), &|_, _| {}).expect("third");
    assert_eq!(blocks_of(&believed.id)[1], expected(&data)[2], "the map was used");
    // A damaged map is ignored as a whole: every block is hashed again.
    let mut map = PageMap::load(&maps, &key(), "db1", "db.sqlite").expect("a map");
    map.entries[1].1 = map.entries[2].1;
    map.store(&maps, &key(), "db1", "db.sqlite").expect("store");
    let path = std::fs::read_dir(maps.join("db1")).expect("dir").next().expect("file").expect("entry").path();
    let mut sealed = std::fs::read(&path).expect("read");
    let at = sealed.len() / 2;
    sealed[at] ^= 1;
    std::fs::write(&path, &sealed).expect("write");
    let fourth = v.backup("db1", &files, t0 + time::Duration::hours(3), &|_, _| {}).expect("fourth");
    assert_eq!(blocks_of(&fourth.id), expected(&data));
    // So is a map of another epoch, even an intact one.
    let mut map = PageMap::load(&maps, &key(), "db1", "db.sqlite").expect("a map");
    map.entries[1].1 = map.entries[2].1;
    map.store(&maps, &key(), "db1", "db.sqlite").expect("store");
    let later = t0 + time::Duration::days(v.settings.epoch_days);
    let fifth = v.backup("db1", &files, later, &|_, _| {}).expect("fifth");
    assert_eq!(blocks_of(&fifth.id), expected(&data));
    assert!(v.check(true, &|_, _| {}).expect("check").is_empty());
}

#[test]
fn a_backup_told_which_pages_changed_reads_only_those_and_only_against_its_own_map() {
    let dir = tempfile::tempdir().expect("dir");
    let v = vault(dir.path()).with_change_maps(dir.path().join("maps"));
    let file = dir.path().join("db.sqlite");
    // 3,000 pages: several chunks, read by several readers.
    let mut data: Vec<u8> = (0..4096 * 3000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(&file, &data).expect("write");
    let files = vec![("db.sqlite".to_string(), file.clone(), 4096)];
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
    let first = v.backup("db1", &files, t0, &|_, _| {}).expect("first");
    let restored = |id: &str| {
        let out = dir.path().join(format!("restore-{}", &id[..12]));
        v.restore(id, &out, &|_, _| {}).expect("restore");
        std::fs::read(out.join("db.sqlite")).expect("read")
    };
    // Pages 6, 7 (a run), 2,000 and a new last page are listed; page 21
    // changes too but is not listed, which only a backup that did not
    // read it misses.
    let before = data.clone();
    for p in [5usize, 6, 1999, 20] {
        data[p * 4096 + 9] ^= 0x77;
    }
    data.extend(std::iter::repeat_n(3u8, 4096));
    std::fs::write(&file, &data).expect("write");
    let listed = [6u32, 7, 2000, 3001, 9999];
    let changed = Changed { file: 0, since: &first.id, pages: &listed };
    let second =
        v.backup_changed("db1", &files, Some(changed), t0 + time::Duration::hours(1), &|_, _| {}).expect("second");
    let got = restored(&second.id);
    let mut expected = data.clone();
    expected[20 * 4096 + 9] = before[20 * 4096 + 9];
    assert!(got == expected, "listed pages read, the unlisted one taken from the map");
    // The manifest is the one a full read of that content makes.
    assert_eq!(v.manifest(&second.id).expect("manifest").1.files[0].size, data.len() as u64);
    assert!(v.check(true, &|_, _| {}).expect("check").is_empty());

    // A list against another snapshot than the map's is not used.
    let stale = Changed { file: 0, since: &first.id, pages: &listed };
    let third = v.backup_changed("db1", &files, Some(stale), t0 + time::Duration::hours(2), &|_, _| {}).expect("third");
    assert!(restored(&third.id) == data, "read whole");
    // Nor when most of the file is listed: then it is read in one stream.
    data[20 * 4096 + 10] ^= 0x11;
    std::fs::write(&file, &data).expect("write");
    let most: Vec<u32> = (1..=2000).collect();
    let wide = Changed { file: 0, since: &third.id, pages: &most };
    let fourth =
        v.backup_changed("db1", &files, Some(wide), t0 + time::Duration::hours(3), &|_, _| {}).expect("fourth");
    assert!(restored(&fourth.id) == data);
}

#[test]
fn the_pipeline_stores_a_repeated_block_once_and_restores_odd_sized_and_empty_files_exactly() {
    let dir = tempfile::tempdir().expect("dir");
    let v = vault(dir.path());
    // 3 MiB + 100 bytes: several chunks for the workers, a short last block,
    // and one page repeated all through it.
    let mut data: Vec<u8> = (0..(3u32 << 20) + 100).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8).collect();
    for page in (0..data.len() / 4096).step_by(3) {
        data[page * 4096..(page + 1) * 4096].fill(0xab);
    }
    let (db, empty, attachment) =
        (dir.path().join("db.sqlite"), dir.path().join("empty"), dir.path().join("notes.txt"));
    std::fs::write(&db, &data).expect("write");
    std::fs::write(&empty, b"").expect("write");
    std::fs::write(&attachment, b"a short attachment").expect("write");
    let files = vec![
        ("db.sqlite".to_string(), db, 4096),
        ("files/empty".to_string(), empty, 64 << 10),
        ("files/notes.txt".to_string(), attachment, 64 << 10),
    ];
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
    let snap = v.backup("db1", &files, t0, &|_, _| {}).expect("backup");
    let (_, m) = v.manifest(&snap.id).expect("manifest");
    let stored: usize =
        v.indexes(&m.indexes).expect("indexes").iter().flat_map(|i| &i.segments).map(|s| s.blocks.len()).sum();
    let distinct: HashSet<&blake3::Hash> = m.files.iter().flat_map(|f| &f.blocks).collect();
    assert_eq!(stored, distinct.len(), "every distinct block is stored exactly once");
    assert!(distinct.len() < m.files[0].blocks.len() * 7 / 10);
    let out = dir.path().join("restored");
    v.restore(&snap.id, &out, &|_, _| {}).expect("restore");
    assert_eq!(std::fs::read(out.join("db.sqlite")).expect("read"), data);
    assert_eq!(std::fs::read(out.join("files/empty")).expect("read"), b"");
    assert_eq!(std::fs::read(out.join("files/notes.txt")).expect("read"), b"a short attachment");
}

#[test]
fn a_source_file_reads_the_same_bytes_direct_or_through_the_page_cache() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("f");
    let data: Vec<u8> = (0..(3 * CHUNK + 5000) as u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).expect("write");
    for direct in [true, false] {
        // From the second chunk on, as a second reader does.
        let mut f = SourceFile::open(&path, CHUNK as u64, direct).expect("open");
        let (mut buf, mut got) = (Vec::new(), Vec::new());
        let at = aligned_start(&mut buf, CHUNK);
        loop {
            let n = f.read_chunk(&mut buf[at..at + CHUNK]).expect("read");
            got.extend_from_slice(&buf[at..at + n]);
            if n < CHUNK {
                break;
            }
        }
        assert!(got == data[CHUNK..], "direct: {direct}, {} bytes", got.len());
    }
}

#[test]
fn direct_and_buffered_restores_write_the_same_bytes_whatever_the_blocks() {
    let dir = tempfile::tempdir().expect("dir");
    // Parts of 100 KiB: a database's 4 KiB pages start every part on an
    // aligned offset (written direct, the short last block padded then
    // cut); 1000-byte blocks do not (written through the page cache).
    let regions = vec![RegionStore::new("in", dir.path().join("in"))];
    let settings = VaultSettings { restore_part: 100 << 10, ..VaultSettings::default() };
    let v = Vault::open(regions, &dir.path().join("vault.key"), settings).expect("open").0;
    let data: Vec<u8> = (0..(3u32 << 20) + 100).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8 % 53).collect();
    let (db, attachment) = (dir.path().join("db.sqlite"), dir.path().join("scan.pdf"));
    std::fs::write(&db, &data).expect("write");
    std::fs::write(&attachment, &data[77..]).expect("write");
    let files = vec![("db.sqlite".to_string(), db, 4096), ("files/scan.pdf".to_string(), attachment, 1000)];
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
    let snap = v.backup("db1", &files, t0, &|_, _| {}).expect("backup");
    let out = dir.path().join("restored");
    v.restore(&snap.id, &out, &|_, _| {}).expect("restore");
    assert!(std::fs::read(out.join("db.sqlite")).expect("read") == data, "byte for byte");
    assert!(std::fs::read(out.join("files/scan.pdf")).expect("read") == data[77..], "byte for byte");
}

#[test]
fn a_file_read_by_several_readers_at_once_restores_exactly() {
    let dir = tempfile::tempdir().expect("dir");
    let v = vault(dir.path());
    let file = dir.path().join("db.sqlite");
    // Enough chunks to be split between the readers, and a short last one.
    let len = 2 * SPLIT * CHUNK + 3 * 4096 + 123;
    let data: Vec<u8> = (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 % 61).collect();
    std::fs::write(&file, &data).expect("write");
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
    let snap = v.backup("db1", &[("db.sqlite".into(), file.clone(), 4096)], t0, &|_, _| {}).expect("backup");
    assert_eq!(snap.size, len as u64);
    let out = dir.path().join("restored");
    v.restore(&snap.id, &out, &|_, _| {}).expect("restore");
    assert!(std::fs::read(out.join("db.sqlite")).expect("read") == data, "byte for byte");

    // Then a few scattered pages change: mostly known blocks, read by
    // more readers through the page cache, their chunks handed back in
    // any order. The manifest still lists every page in order.
    let mut data = data;
    for page in (0..len / 4096).step_by(97) {
        data[page * 4096 + 17] ^= 0x55;
    }
    std::fs::write(&file, &data).expect("write");
    let later = t0 + time::Duration::hours(1);
    let second = v.backup("db1", &[("db.sqlite".into(), file.clone(), 4096)], later, &|_, _| {}).expect("backup");
    assert!(second.added < snap.added / 2, "only the changed pages are stored: {} of {}", second.added, snap.added);
    let (_, m) = v.manifest(&second.id).expect("manifest");
    let hash_key = v.db_key("db1", false).expect("key").hash_key();
    let expected: Vec<blake3::Hash> = data.chunks(4096).map(|b| blake3::keyed_hash(&hash_key, b)).collect();
    assert!(m.files[0].blocks == expected, "every block's hash, in order");
    // Each new segment holds pages of one reader's stretch, in file order,
    // not pages from every stretch by turns: a restore, which writes the
    // file stretch by stretch, then decompresses it once, not once a stretch.
    let (_, first) = v.manifest(&snap.id).expect("manifest");
    let page_of: HashMap<blake3::Hash, usize> = expected.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    let new: Vec<String> = m.indexes.iter().filter(|i| !first.indexes.contains(i)).cloned().collect();
    let segments: Vec<Segment> = v.indexes(&new).expect("indexes").into_iter().flat_map(|i| i.segments).collect();
    assert!(!segments.is_empty());
    for seg in &segments {
        let pages: Vec<usize> = seg.blocks.iter().map(|b| page_of[&b.hash]).collect();
        assert!(pages.windows(2).all(|w| w[0] < w[1]), "a new segment's pages in file order: {pages:?}");
    }
    let out = dir.path().join("restored-second");
    v.restore(&second.id, &out, &|_, _| {}).expect("restore");
    assert!(std::fs::read(out.join("db.sqlite")).expect("read") == data, "byte for byte");
}

#[test]
fn a_region_that_cannot_be_written_fails_the_backup_with_its_own_error_and_leaves_no_snapshot() {
    let dir = tempfile::tempdir().expect("dir");
    // Singapore takes the database's key, but no pack: its pack folder is a file.
    std::fs::create_dir_all(dir.path().join("sg/objects")).expect("dir");
    std::fs::write(dir.path().join("sg/objects/packs"), b"not a folder").expect("write");
    let v = vault(dir.path());
    let file = dir.path().join("db.sqlite");
    // Enough data that every channel of the pipeline fills up behind the failed writer.
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    std::fs::write(&file, &data).expect("write");
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
    let err = v.backup("db1", &[("db.sqlite".into(), file, 4096)], t0, &|_, _| {}).expect_err("sg fails");
    assert!(err.to_string().contains("region sg: cannot create the folder of packs/db1/"), "the cause: {err}");
    assert!(v.list(None).expect("list").is_empty(), "no snapshot without every region");
}

#[test]
fn earlier_formats_still_restore_and_a_reordered_block_list_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let v = vault(dir.path());
    let file = dir.path().join("db.sqlite");
    let data: Vec<u8> = (0..4096 * 300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8 % 37).collect();
    std::fs::write(&file, &data).expect("write");
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
    let snap = v.backup("db1", &[("db.sqlite".into(), file, 4096)], t0, &|_, _| {}).expect("backup");
    let (_, mut m) = v.manifest(&snap.id).expect("manifest");
    assert_eq!(m.format, FORMAT);
    let current = m.clone();
    let key = v.db_key("db1", false).expect("key");
    // Formats 1 and 2 wrote manifests and indexes as JSON, hashes in hex.
    let put = |m: &Manifest| {
        let bytes = serde_json::to_vec(m).expect("json");
        assert!(String::from_utf8_lossy(&bytes).contains(&m.files[0].blocks[0].to_hex().to_string()));
        let id = content_hash(&bytes);
        v.put_all(&snapshot_name("db1", &id), &bytes, 0).expect("put");
        id
    };
    let indexes = v.indexes(&m.indexes).expect("indexes");
    m.indexes = indexes
        .iter()
        .map(|idx| {
            let bytes = serde_json::to_vec(idx).expect("json");
            let name = index_name("db1", &content_hash(&bytes));
            v.put_all(&name, &bytes, 0).expect("put");
            name
        })
        .collect();
    let mut second = m.clone();
    second.format = 2;
    let out = dir.path().join("second");
    v.restore(&put(&second), &out, &|_, _| {}).expect("restore format 2");
    assert_eq!(std::fs::read(out.join("db.sqlite")).expect("read"), data);
    // The manifest as format 1 wrote it: the keyed hash of the file's bytes.
    let mut old = m.clone();
    old.format = 1;
    old.files[0].hash = blake3::keyed_hash(&key.hash_key(), &data).to_hex().to_string();
    let out = dir.path().join("old");
    v.restore(&put(&old), &out, &|_, _| {}).expect("restore format 1");
    assert_eq!(std::fs::read(out.join("db.sqlite")).expect("read"), data);
    old.files[0].hash = "00".repeat(32);
    let err = v.restore(&put(&old), &dir.path().join("old-bad"), &|_, _| {}).expect_err("wrong hash");
    assert!(err.to_string().contains("does not match the snapshot's hash"), "{err}");
    // Format 2: two blocks swapped in the list no longer match the file's hash.
    let mut swapped = second.clone();
    swapped.files[0].blocks.swap(3, 200);
    let err = v.restore(&put(&swapped), &dir.path().join("swapped"), &|_, _| {}).expect_err("swapped");
    assert!(err.to_string().contains("block list does not match"), "{err}");
    // Format 3: the same change breaks the manifest's MAC.
    let mut swapped = current;
    swapped.files[0].blocks.swap(3, 200);
    let err = v.restore(&put(&swapped), &dir.path().join("swapped3"), &|_, _| {}).expect_err("swapped");
    assert!(err.to_string().contains("not authentic"), "{err}");
}

#[test]
fn a_restore_refuses_a_manifest_not_made_with_the_key_and_a_segment_its_index_does_not_name() {
    let dir = tempfile::tempdir().expect("dir");
    let v = vault(dir.path());
    let file = dir.path().join("db.sqlite");
    let data: Vec<u8> = (0..4096 * 100u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8).collect();
    std::fs::write(&file, &data).expect("write");
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
    let snap = v.backup("db1", &[("db.sqlite".into(), file, 4096)], t0, &|_, _| {}).expect("backup");
    let (_, m) = v.manifest(&snap.id).expect("manifest");
    let put = |m: &Manifest| {
        let bytes = encode(m).expect("encode");
        let id = content_hash(&bytes);
        v.put_all(&snapshot_name("db1", &id), &bytes, 0).expect("put");
        id
    };
    // Anyone can write a manifest, but not its MAC.
    let forged = put(&Manifest { taken_at: m.taken_at + 1, ..m.clone() });
    let err = v.restore(&forged, &dir.path().join("forged"), &|_, _| {}).expect_err("forged");
    assert!(err.to_string().contains("not authentic"), "{err}");
    let problems = v.check(false, &|_, _| {}).expect("check");
    assert!(
        problems.iter().any(|p| p.object.ends_with(&forged) && p.problem.contains("not authentic")),
        "{problems:?}"
    );

    // An index (here under a valid MAC, as a bug could make it) that puts
    // one sealed segment where another is: it decrypts, but is refused.
    let mut idx = v.indexes(&m.indexes).expect("indexes").remove(0);
    assert!(idx.segments.len() >= 2 && idx.segments.iter().all(|s| s.nonce.is_some()));
    let (a, b) = (idx.segments[0].clone(), idx.segments[1].clone());
    (idx.segments[0].offset, idx.segments[0].len) = (b.offset, b.len);
    (idx.segments[1].offset, idx.segments[1].len) = (a.offset, a.len);
    let bytes = encode(&idx).expect("encode");
    let iname = index_name("db1", &content_hash(&bytes));
    v.put_all(&iname, &bytes, 0).expect("put");
    let mut moved = m.clone();
    moved.indexes[0] = iname;
    moved.mac = manifest_mac(&v.db_key("db1", false).expect("key").hash_key(), &moved).expect("mac");
    let err = v.restore(&put(&moved), &dir.path().join("moved"), &|_, _| {}).expect_err("moved");
    assert!(err.to_string().contains("is not the one its index names"), "{err}");
    let problems = v.check(true, &|_, _| {}).expect("check");
    assert!(problems.iter().any(|p| p.problem.contains("not the segment its index names")), "{problems:?}");
    // The genuine snapshot is untouched by all this.
    v.restore(&snap.id, &dir.path().join("genuine"), &|_, _| {}).expect("restore");
    assert!(std::fs::read(dir.path().join("genuine/db.sqlite")).expect("read") == data);
}

// promise: BAK-1
#[test]
fn what_an_interrupted_run_left_in_one_region_is_no_problem_but_a_lost_snapshot_object_is() {
    let dir = tempfile::tempdir().expect("dir");
    let v = vault(dir.path());
    let file = dir.path().join("db.sqlite");
    std::fs::write(&file, vec![5u8; 4096 * 50]).expect("write");
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
    let files = [("db.sqlite".to_string(), file, 4096)];
    let snap = v.backup("db1", &files, t0, &|_, _| {}).expect("backup");
    // A run for db2 killed before its manifest: its key, packs and
    // indexes reached India, some of them Singapore.
    let other = v.backup("db2", &files, t0, &|_, _| {}).expect("backup");
    for region in ["in", "sg"] {
        std::fs::remove_file(dir.path().join(region).join("objects").join(snapshot_name("db2", &other.id)))
            .expect("no manifest");
    }
    std::fs::remove_file(dir.path().join("sg").join("objects").join(key_name("db2"))).expect("no key in sg");
    assert!(v.check(false, &|_, _| {}).expect("check").is_empty(), "leftovers of an interrupted run are no problem");
    // A snapshot's own object lost in one region is.
    let manifest = snapshot_name("db1", &snap.id);
    std::fs::remove_file(dir.path().join("sg").join("objects").join(&manifest)).expect("remove");
    let problems = v.check(false, &|_, _| {}).expect("check");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!((problems[0].region.as_str(), problems[0].object.as_str()), ("sg", manifest.as_str()));
}

// promise: BAK-4
#[test]
fn a_run_after_one_that_left_objects_in_one_region_writes_a_snapshot_each_region_restores_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let v = vault(dir.path());
    let file = dir.path().join("db.sqlite");
    let data: Vec<u8> = (0..4096 * 700u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(&file, &data).expect("write");
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
    let files = [("db.sqlite".to_string(), file, 4096)];
    // A run killed after India had its packs and indexes, before
    // Singapore had any, and before the manifest.
    let killed = v.backup("db1", &files, t0, &|_, _| {}).expect("backup");
    for region in ["in", "sg"] {
        std::fs::remove_file(dir.path().join(region).join("objects").join(snapshot_name("db1", &killed.id)))
            .expect("no manifest");
    }
    for kind in ["indexes", "packs"] {
        std::fs::remove_dir_all(dir.path().join("sg").join("objects").join(kind).join("db1")).expect("not in sg");
    }
    let next = v.backup("db1", &files, t0 + time::Duration::seconds(1), &|_, _| {}).expect("next run");
    assert!(v.check(false, &|_, _| {}).expect("check").is_empty(), "every region holds what the snapshot needs");
    for region in ["in", "sg"] {
        let settings = VaultSettings { segment_size: 64 << 10, pack_size: 1 << 20, ..VaultSettings::default() };
        let alone = Vault::open(
            vec![RegionStore::new(region, dir.path().join(region))],
            &dir.path().join("vault.key"),
            settings,
        )
        .expect("open")
        .0;
        let out = dir.path().join(format!("restored-{region}"));
        alone.restore(&next.id, &out, &|_, _| {}).unwrap_or_else(|e| panic!("{region} alone: {e}"));
        assert!(std::fs::read(out.join("db.sqlite")).expect("restored") == data, "{region} alone restores it exactly");
    }
}

#[test]
fn a_snapshot_is_not_written_when_a_region_lacks_what_it_needs_and_none_can_supply_it() {
    let dir = tempfile::tempdir().expect("dir");
    let v = vault(dir.path());
    let file = dir.path().join("db.sqlite");
    let data: Vec<u8> = (0..4096 * 300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(&file, &data).expect("write");
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
    let files = [("db.sqlite".to_string(), file, 4096)];
    v.backup("db1", &files, t0, &|_, _| {}).expect("backup");
    // A pack lost everywhere after its index was read: the check before
    // the manifest finds it, and no region gets the new snapshot.
    let pack = v.names("packs/db1").expect("packs").into_iter().next().expect("a pack");
    v.ensure_everywhere("db1", std::slice::from_ref(&pack), ms(t0)).expect("present everywhere");
    for region in ["in", "sg"] {
        std::fs::remove_file(dir.path().join(region).join("objects").join(&pack)).expect("lose it");
    }
    let err = v.ensure_everywhere("db1", std::slice::from_ref(&pack), ms(t0)).expect_err("refused");
    assert!(err.to_string().contains("was not written") && err.to_string().contains(&pack), "{err}");
}

// promise: BAK-4
#[test]
fn a_manifest_a_killed_run_wrote_to_one_region_reaches_the_other_with_the_next_run() {
    let dir = tempfile::tempdir().expect("dir");
    let v = vault(dir.path());
    let file = dir.path().join("db.sqlite");
    std::fs::write(&file, vec![3u8; 4096 * 40]).expect("write");
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
    let files = [("db.sqlite".to_string(), file, 4096)];
    let first = v.backup("db1", &files, t0, &|_, _| {}).expect("backup");
    let manifest = snapshot_name("db1", &first.id);
    std::fs::remove_file(dir.path().join("sg").join("objects").join(&manifest)).expect("killed before sg had it");
    assert_eq!(v.check(false, &|_, _| {}).expect("check").len(), 1);
    v.backup("db1", &files, t0 + time::Duration::seconds(1), &|_, _| {}).expect("next run");
    assert!(dir.path().join("sg").join("objects").join(&manifest).is_file(), "copied to sg");
    assert!(v.check(false, &|_, _| {}).expect("check").is_empty());
}
