//! Query terms beyond texts and files: an image's bytes (an upload) and an
//! image of the database by id, alone and mixed, on the tiny model.

mod common;

use std::sync::Arc;

use imgdb::ingest::IngestOptions;
use imgdb::{Db, Encoder, EncoderOptions, ErrorKind, Query, QueryTerm};

fn tiny_model() -> Encoder {
    Encoder::load(
        common::root().join("fixtures/models/tiny-clip"),
        &EncoderOptions::default(),
    )
    .unwrap()
}

fn photos_db(dir: &std::path::Path, encoder: &Encoder) -> Db {
    let db = Db::open_or_create(dir.join("db"), encoder.space().clone()).unwrap();
    let photos = common::root().join("fixtures/photos");
    db.ingest(encoder, &[photos], &IngestOptions::default(), &mut ())
        .unwrap();
    db
}

fn bytes_of(name: &str) -> Arc<[u8]> {
    std::fs::read(common::root().join("fixtures/photos").join(name))
        .unwrap()
        .into()
}

#[test]
fn an_uploaded_image_finds_its_indexed_copy_first() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = tiny_model();
    let db = photos_db(dir.path(), &encoder);
    let query = Query {
        terms: vec![QueryTerm::ImageBytes {
            bytes: bytes_of("coffee.jpg"),
            weight: 1.0,
        }],
        ..Query::text("").k(3)
    };
    let hits = db.query(&encoder, &query).unwrap();
    assert!(hits[0].path.ends_with("coffee.jpg"), "{:?}", hits[0].path);
    assert!(hits[0].score > 0.999, "the same pixels: {}", hits[0].score);
    assert!(hits[1].score < hits[0].score);
}

#[test]
fn an_indexed_image_by_id_finds_itself_and_mixes_with_text() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = tiny_model();
    let db = photos_db(dir.path(), &encoder);
    let rocket = db
        .get_by_path(
            &common::root()
                .join("fixtures/photos/rocket.jpg")
                .canonicalize()
                .unwrap(),
        )
        .unwrap()
        .unwrap();
    let hits = db
        .query(&encoder, &Query::similar_to(rocket.id).k(2))
        .unwrap();
    assert_eq!(hits[0].id, rocket.id);
    assert!(hits[0].score > 0.999);

    // The id's stored vector is the file's: the mix equals the one made
    // with the file itself.
    let by_id = Query::similar_to(rocket.id).plus_text("a photo", 0.5);
    let by_file = Query::image(rocket.path()).plus_text("a photo", 0.5);
    let by_id = db.query_vector(&encoder, &by_id).unwrap();
    let by_file = db.query_vector(&encoder, &by_file).unwrap();
    let cosine: f32 = by_id.iter().zip(&by_file).map(|(a, b)| a * b).sum();
    assert!(cosine > 0.9999, "{cosine}");
}

#[test]
fn an_unknown_id_or_bytes_that_are_no_image_are_errors_of_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = tiny_model();
    let db = photos_db(dir.path(), &encoder);
    let unknown = db
        .query(&encoder, &Query::similar_to(imgdb::ImageId(999_999)))
        .unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::NotFound);
    assert_eq!(unknown.to_string(), "no image with id 999999");
    let text = Query {
        terms: vec![QueryTerm::ImageBytes {
            bytes: Arc::from(&b"not an image at all"[..]),
            weight: 1.0,
        }],
        ..Query::text("")
    };
    let error = db.query(&encoder, &text).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
}
