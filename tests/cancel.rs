//! [`CancelToken`] stopping long operations mid-way: what an ingest
//! reported done is in the database and nothing else, the database
//! verifies clean, and the next run does exactly the rest; a cancelled
//! export leaves no file behind and the database as it was.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{root, space};
use imgdb::ingest::{FileOutcome, IngestEvent, IngestObserver, IngestOptions};
use imgdb::{CancelToken, Db, Encoder, EncoderOptions, ExportOptions, ImageId};

/// Image files of distinct content under `dir`.
fn photos(dir: &Path, count: u32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for n in 0..count {
        let pixel = image::Rgb([(n % 256) as u8, (n / 256) as u8 * 60, 128]);
        image::RgbImage::from_pixel(8, 8, pixel)
            .save(dir.join(format!("{n:03}.png")))
            .unwrap();
    }
    dir.canonicalize().unwrap()
}

/// Records what each file became, and cancels at the first one indexed.
struct CancelAtFirst {
    cancel: CancelToken,
    indexed: BTreeMap<PathBuf, ImageId>,
}

impl IngestObserver for CancelAtFirst {
    fn event(&mut self, event: &IngestEvent) {
        if let IngestEvent::File {
            path,
            outcome: FileOutcome::Indexed(id),
        } = event
        {
            self.indexed.insert(path.clone(), *id);
            self.cancel.cancel();
        }
    }
}

#[test]
fn a_cancelled_ingest_keeps_what_it_reported_and_the_next_run_does_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let photos = photos(&dir.path().join("photos"), 300);
    let encoder = Encoder::load(
        root().join("fixtures/models/tiny-clip"),
        &EncoderOptions::default(),
    )
    .unwrap();
    let db = Db::open_or_create(dir.path().join("db"), encoder.space().clone()).unwrap();
    let cancel = CancelToken::new();
    // Small batches: what is queued past the cancel point (a few encoder
    // batches) stays far below the whole.
    let options = IngestOptions {
        batch_size: Some(4),
        write_batch: 4,
        cancel: cancel.clone(),
        ..IngestOptions::default()
    };
    let mut observer = CancelAtFirst {
        cancel,
        indexed: BTreeMap::new(),
    };
    let report = db
        .ingest(
            &encoder,
            std::slice::from_ref(&photos),
            &options,
            &mut observer,
        )
        .unwrap();
    assert!(report.cancelled);
    let indexed = observer.indexed.len();
    assert_eq!(report.indexed, indexed as u64);
    assert!((1..300).contains(&indexed), "{indexed} indexed");
    assert_eq!(report.failures, []);

    // Exactly what was reported, each under its id.
    let verified = db.verify().unwrap();
    assert!(verified.is_clean(), "{:?}", verified.problems);
    assert_eq!(verified.records, indexed);
    let stored: BTreeMap<PathBuf, ImageId> = db.paths_under(&photos).unwrap().into_iter().collect();
    assert_eq!(stored, observer.indexed);

    let resumed = db
        .ingest(&encoder, &[photos], &IngestOptions::default(), &mut ())
        .unwrap();
    assert!(!resumed.cancelled);
    assert_eq!(
        (resumed.indexed, resumed.unchanged),
        (300 - indexed as u64, indexed as u64)
    );
    let verified = db.verify().unwrap();
    assert!(verified.is_clean(), "{:?}", verified.problems);
    assert_eq!(verified.records, 300);
}

#[test]
fn an_export_cancelled_mid_way_leaves_nothing_and_the_database_as_it_was() {
    const IMAGES: u64 = 4_000;
    const DIM: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_or_create(dir.path().join("db"), space(DIM as u32)).unwrap();
    for chunk in (1..=IMAGES).collect::<Vec<_>>().chunks(1_000) {
        let images = chunk.iter().map(|&n| common::image(n, DIM)).collect();
        db.insert(&space(DIM as u32), images).unwrap();
    }
    let out = dir.path().join("export");
    let cancel = CancelToken::new();
    let options = ExportOptions {
        shard_rows: 10,
        cancel: cancel.clone(),
    };
    // Cancelled once the export is under way: its second shard begun.
    let report = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let second = out.join("metadata");
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let begun = std::fs::read_dir(&second)
                    .map(|entries| entries.count())
                    .unwrap_or(0);
                if begun >= 2 {
                    cancel.cancel();
                    return;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let report = db.export_with(&out, &options).unwrap();
        watcher.join().unwrap();
        report
    });
    assert!(report.cancelled, "the export ended before the cancel");
    assert_eq!((report.images, report.shards), (0, 0));
    for folder in ["img_emb", "metadata"] {
        let left: Vec<_> = std::fs::read_dir(out.join(folder))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{folder}: {left:?}");
    }
    assert!(!out.join("imgdb_export.json").exists());
    let verified = db.verify().unwrap();
    assert!(verified.is_clean(), "{:?}", verified.problems);
    assert_eq!(verified.records, IMAGES as usize);
}
