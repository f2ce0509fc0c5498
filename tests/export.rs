//! Streaming export: shards of bounded size that import reads back exactly,
//! and exports that only become visible when complete (a cancelled one
//! leaves the folder as it was; a smaller one leaves no stale shard), and
//! the manifest's format and variant.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use imgdb::{
    CancelToken, Db, Encoder, EncoderOptions, ExportOptions, ExportReport, ImageRecord, NewImage,
    Tag, WriteBatch,
};
use serde_json::json;

fn encoder() -> Encoder {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/tiny-clip");
    Encoder::load(model, &EncoderOptions::default()).unwrap()
}

/// A database of `count` images in the tiny model's space, one of them
/// with a second path (a copy) and tags.
fn database(dir: &Path, encoder: &Encoder, count: u64) -> Db {
    let seed = common::seed("export", 11);
    let db = Db::open_or_create(dir.join("db"), encoder.space().clone()).unwrap();
    let dim = encoder.space().dim as usize;
    let mut batch = WriteBatch::new();
    for n in 0..count {
        let mut image = common::image(seed + n, dim);
        if n == 1 {
            image.tags = vec![Tag {
                label: "cat".into(),
                score: 0.75,
            }];
            let copy = NewImage {
                path: PathBuf::from("/elsewhere/copy.jpg"),
                ..image.clone()
            };
            batch.insert(image);
            batch.insert(copy);
        } else {
            batch.insert(image);
        }
    }
    db.write(encoder.space(), batch).unwrap();
    db
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            out.insert(
                entry.path().to_path_buf(),
                std::fs::read(entry.path()).unwrap(),
            );
        }
    }
    out
}

/// What a round trip must keep of a record (its id is the importer's).
fn by_path(db: &Db) -> BTreeMap<PathBuf, ImageRecord> {
    db.records()
        .map(|record| {
            let mut record = record.unwrap();
            record.id = imgdb::ImageId(0);
            (record.path().to_path_buf(), record)
        })
        .collect()
}

fn export(db: &Db, dir: &Path, shard_rows: usize) -> ExportReport {
    let options = ExportOptions {
        shard_rows,
        ..ExportOptions::default()
    };
    db.export_with(dir, &options).unwrap()
}

#[test]
fn small_shards_stream_out_and_import_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let db = database(dir.path(), &encoder, 10);
    let out = dir.path().join("export");
    let report = export(&db, &out, 3);
    assert_eq!(
        (report.images, report.shards, report.cancelled),
        (10, 4, false)
    );

    for (shard, rows) in [3, 3, 3, 1].into_iter().enumerate() {
        let vectors: ndarray::Array2<f32> =
            ndarray_npy::read_npy(out.join(format!("img_emb/img_emb_{shard}.npy"))).unwrap();
        assert_eq!(vectors.dim(), (rows, 64), "shard {shard}");
        let metadata =
            std::fs::File::open(out.join(format!("metadata/metadata_{shard}.parquet"))).unwrap();
        let metadata = parquet::file::reader::SerializedFileReader::new(metadata).unwrap();
        use parquet::file::reader::FileReader;
        let lines = metadata.metadata().file_metadata().num_rows();
        assert_eq!(lines, rows as i64, "shard {shard}");
    }
    assert!(!out.join("img_emb/img_emb_4.npy").exists());
    assert!(
        files(&out)
            .keys()
            .all(|p| p.extension().unwrap() != "partial")
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("imgdb_export.json")).unwrap()).unwrap();
    assert_eq!(manifest["count"], 10);

    let other = Db::open_or_create(dir.path().join("other"), encoder.space().clone()).unwrap();
    assert_eq!(other.import(&encoder, &out).unwrap(), 10);
    let (before, after) = (by_path(&db), by_path(&other));
    assert_eq!(before.len(), 10);
    for (path, record) in &before {
        let imported = &after[path];
        assert_eq!(imported.files, record.files, "{}", path.display());
        assert_eq!(imported.tags, record.tags);
        assert_eq!(
            (imported.content_hash, imported.byte_size, imported.format),
            (record.content_hash, record.byte_size, record.format)
        );
        assert_eq!(
            (imported.width, imported.height),
            (record.width, record.height)
        );
        // Stored vectors are unit length: normalising them again on import
        // must not move a bit.
        assert_eq!(imported.vector, record.vector);
    }
}

/// The manifest names the variant (since format 2; format 3 writes Parquet
/// metadata); a format 1 manifest, which has none, is fp32; a newer format
/// or an unknown variant is refused.
#[test]
fn the_manifest_names_the_variant_and_its_format_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let db = database(dir.path(), &encoder, 2);
    let out = dir.path().join("export");
    export(&db, &out, 10);
    let manifest_path = out.join("imgdb_export.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(
        (&manifest["format_version"], &manifest["variant"]),
        (&json!(3), &json!("fp32"))
    );

    let import_with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut edited = manifest.clone();
        edit(&mut edited);
        std::fs::write(&manifest_path, serde_json::to_vec(&edited).unwrap()).unwrap();
        let target = tempfile::tempdir().unwrap();
        let other = Db::open_or_create(target.path().join("db"), encoder.space().clone()).unwrap();
        other.import(&encoder, &out)
    };
    let format_1 = import_with(&|m| {
        m["format_version"] = json!(1);
        m.as_object_mut().unwrap().remove("variant");
    });
    assert_eq!(format_1.unwrap(), 2);
    let newer = import_with(&|m| m["format_version"] = json!(4)).unwrap_err();
    assert_eq!(newer.kind(), imgdb::ErrorKind::Corrupt);
    assert!(
        newer.chain().contains("export format 4 is newer"),
        "{}",
        newer.chain()
    );
    let int8 = import_with(&|m| m["variant"] = json!("int8")).unwrap_err();
    assert!(
        matches!(int8, imgdb::Error::VariantMismatch { .. }),
        "{int8:?}"
    );
    let unknown = import_with(&|m| m["variant"] = json!("int3")).unwrap_err();
    assert!(
        unknown.chain().contains("unknown model variant"),
        "{}",
        unknown.chain()
    );
}

#[test]
fn a_cancelled_export_leaves_the_earlier_one_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let db = database(dir.path(), &encoder, 5);
    let out = dir.path().join("export");
    export(&db, &out, 2);
    let earlier = files(&out);
    db.insert(encoder.space(), vec![common::image(1000, 64)])
        .unwrap();

    let cancel = CancelToken::new();
    cancel.cancel();
    let options = ExportOptions {
        shard_rows: 2,
        cancel,
    };
    let report = db.export_with(&out, &options).unwrap();
    assert!(report.cancelled);
    assert_eq!(report.images, 0);
    assert_eq!(files(&out), earlier);
}

#[test]
fn a_smaller_export_leaves_no_stale_shard() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let db = database(dir.path(), &encoder, 7);
    let out = dir.path().join("export");
    assert_eq!(export(&db, &out, 2).shards, 4);
    assert_eq!(db.export(&out).unwrap(), 7);
    assert!(out.join("img_emb/img_emb_0.npy").is_file());
    assert!(!out.join("img_emb/img_emb_1.npy").exists());
    assert!(!out.join("metadata/metadata_1.parquet").exists());
    let other = Db::open_or_create(dir.path().join("other"), encoder.space().clone()).unwrap();
    assert_eq!(other.import(&encoder, &out).unwrap(), 7);
}

#[test]
fn an_empty_database_exports_one_empty_shard() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = encoder();
    let db = database(dir.path(), &encoder, 0);
    let out = dir.path().join("export");
    assert_eq!(export(&db, &out, 3).shards, 1);
    let vectors: ndarray::Array2<f32> =
        ndarray_npy::read_npy(out.join("img_emb/img_emb_0.npy")).unwrap();
    assert_eq!(vectors.dim(), (0, 64));
    let other = Db::open_or_create(dir.path().join("other"), encoder.space().clone()).unwrap();
    assert_eq!(other.import(&encoder, &out).unwrap(), 0);
}
