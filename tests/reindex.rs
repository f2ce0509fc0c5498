//! `Db::reindex`: re-encoding with another model under an open handle.
//! Queries go on while it runs and every clone switches to the new database
//! when it swaps in; ids, paths and tags are kept; a cancelled reindex
//! leaves the old database as it was.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{copy_dir, micro_model, root};
use imgdb::ingest::IngestOptions;
use imgdb::{
    CancelToken, Db, Encoder, EncoderOptions, Error, ErrorKind, ImageId, ReindexConflict,
    SearchOptions, Tag, WriteBatch, WriteOp,
};

fn load(dir: &Path) -> Encoder {
    Encoder::load(dir, &EncoderOptions::default()).unwrap()
}

/// A database of the fixture photos made with the tiny model, one of them
/// tagged, and the micro model beside it.
struct Setup {
    dir: tempfile::TempDir,
    db: Db,
    tiny: Encoder,
    micro: Encoder,
    /// (path, id) of every image before the reindex.
    paths: Vec<(PathBuf, ImageId)>,
    tagged: ImageId,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let photos = dir.path().join("photos");
        copy_dir(&root().join("fixtures/photos"), &photos);
        std::fs::remove_file(photos.join("ATTRIBUTION.md")).unwrap();
        let photos = photos.canonicalize().unwrap();
        let tiny = load(&root().join("fixtures/models/tiny-clip"));
        let micro = load(&micro_model(dir.path()));
        let db = Db::open_or_create(dir.path().join("db"), tiny.space().clone()).unwrap();
        let report = db
            .ingest(&tiny, &[photos], &IngestOptions::default(), &mut ())
            .unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let paths = db.paths_under(Path::new("/")).unwrap();
        assert_eq!(paths.len(), 6);
        let tagged = paths[0].1;
        let tags = vec![Tag {
            label: "kept".into(),
            score: 0.5,
        }];
        db.write(
            tiny.space(),
            WriteBatch::from(vec![WriteOp::SetTags { id: tagged, tags }]),
        )
        .unwrap();
        Setup {
            dir,
            db,
            tiny,
            micro,
            paths,
            tagged,
        }
    }

    fn text(encoder: &Encoder, text: &str) -> Vec<f32> {
        encoder.embed_texts(&[text]).unwrap().remove(0)
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn queries_go_on_during_a_reindex_and_every_clone_switches_to_the_new_model() {
    let s = Setup::new();
    let before = s.db.clone();
    let old_query = Setup::text(&s.tiny, "a cup of coffee");
    let new_query = Setup::text(&s.micro, "a cup of coffee");
    let (old_space, new_space) = (s.tiny.space().clone(), s.micro.space().clone());

    let barrier = Arc::new(Barrier::new(2));
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (db, barrier, done, answered) = (
            s.db.clone(),
            barrier.clone(),
            done.clone(),
            answered.clone(),
        );
        let (old_space, paths) = (old_space.clone(), s.paths.clone());
        let (old_query, new_query) = (old_query.clone(), new_query.clone());
        std::thread::spawn(move || {
            barrier.wait();
            while !done.load(Ordering::SeqCst) {
                let (path, id) = &paths[answered.load(Ordering::SeqCst) % paths.len()];
                assert_eq!(db.get_by_path(path).unwrap().unwrap().id, *id);
                // A search made with the old model's vector may meet the new
                // database when it straddles the swap; any other must succeed.
                let space = db.space();
                let query = if space == old_space {
                    &old_query
                } else {
                    &new_query
                };
                let hits = db.search(query, &SearchOptions::default());
                if db.space() == space {
                    assert_eq!(hits.unwrap().len(), 6);
                }
                answered.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    barrier.wait();
    let writer = s.db.clone();
    let report =
        s.db.reindex(&s.micro, &CancelToken::new(), |_, _| {
            // Queries are answered (by the old database) while it runs, and
            // writes are refused.
            let seen = answered.load(Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(30);
            while answered.load(Ordering::SeqCst) < seen + 5 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(answered.load(Ordering::SeqCst) >= seen + 5);
            let refused = writer.write(&old_space, WriteBatch::new()).unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::InUse);
            assert!(
                matches!(
                    refused,
                    Error::Reindexing {
                        during: ReindexConflict::Write,
                        ..
                    }
                ),
                "{refused}"
            );
        })
        .unwrap();
    assert_eq!((report.reindexed, report.cancelled), (6, false));
    assert!(report.dropped.is_empty(), "{:?}", report.dropped);
    // Queries go on after the swap, on the new database.
    let after = answered.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.load(Ordering::SeqCst) < after + 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    done.store(true, Ordering::SeqCst);
    reader.join().unwrap();

    // The clone made before the reindex is on the new database.
    assert_eq!(before.space(), new_space);
    assert_eq!(before.stats().unwrap().space, new_space);
    assert_eq!(before.paths_under(Path::new("/")).unwrap(), s.paths);
    let tagged = before.get(s.tagged).unwrap().unwrap();
    assert_eq!(tagged.tags[0].label, "kept");
    // Its vectors are the new model's, and its searches find by them.
    let mut best = (f32::MIN, ImageId(0));
    for (path, id) in &s.paths {
        let expected = s.micro.embed_image_file(path).unwrap();
        let stored = before.vector(*id).unwrap();
        assert!(dot(&expected, &stored) > 0.999, "{}", path.display());
        let score = dot(&new_query, &expected);
        if score > best.0 {
            best = (score, *id);
        }
    }
    let hits = before
        .search(&new_query, &SearchOptions::default())
        .unwrap();
    assert_eq!(hits[0].id, best.1);
    // Writes are taken again, of the new space only.
    before.write(&new_space, WriteBatch::new()).unwrap();
    assert!(before.write(&old_space, WriteBatch::new()).is_err());
    assert!(before.verify().unwrap().is_clean());

    let path = s.db.path().to_path_buf();
    drop((before, writer, s.db));
    assert_eq!(Db::open(&path).unwrap().space(), new_space);
    assert!(!s.dir.path().join("db.reindex").exists());
    assert!(!s.dir.path().join("db.reindex-old").exists());
}

#[test]
fn a_cancelled_reindex_leaves_the_old_database_working() {
    let s = Setup::new();
    let cancel = CancelToken::new();
    let report =
        s.db.reindex(&s.micro, &cancel, |_, _| {
            cancel.cancel();
        })
        .unwrap();
    assert!(report.cancelled);
    assert!(!s.dir.path().join("db.reindex").exists());
    assert_eq!(s.db.space(), *s.tiny.space());
    assert_eq!(s.db.paths_under(Path::new("/")).unwrap(), s.paths);
    let query = Setup::text(&s.tiny, "a cup of coffee");
    assert_eq!(
        s.db.search(&query, &SearchOptions::default())
            .unwrap()
            .len(),
        6
    );
    // Writes are taken again.
    s.db.delete(&[s.tagged]).unwrap();
    assert_eq!(s.db.stats().unwrap().images, 5);
}
