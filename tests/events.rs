//! `Db::apply_events` with the tiny model: a watcher's created, changed,
//! deleted and renamed paths settle without a walk of the roots; renames keep
//! ids and vectors; deletions leave nothing findable; observers can be moved
//! to another thread.

use std::path::{Path, PathBuf};

use imgdb::ingest::{
    FileEvent, FileOutcome, IngestEvent, IngestObserver, IngestOptions, IngestReport,
};
use imgdb::{CancelToken, Db, Encoder, EncoderOptions, ImageId, SearchOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn encoder() -> Encoder {
    Encoder::load(
        root().join("fixtures/models/tiny-clip"),
        &EncoderOptions::default(),
    )
    .unwrap()
}

/// A temporary folder of photos, a database beside it and the encoder.
struct Setup {
    _dir: tempfile::TempDir,
    photos: PathBuf,
    db: Db,
    encoder: Encoder,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let photos = dir.path().join("photos");
        std::fs::create_dir(&photos).unwrap();
        let encoder = encoder();
        let db = Db::open_or_create(dir.path().join("db"), encoder.space().clone()).unwrap();
        Setup {
            photos: photos.canonicalize().unwrap(),
            _dir: dir,
            db,
            encoder,
        }
    }

    /// Copies the fixture photo `name` to `to` (under the photos folder).
    fn put(&self, name: &str, to: &str) -> PathBuf {
        let path = self.photos.join(to);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::copy(root().join("fixtures/photos").join(name), &path).unwrap();
        path
    }

    fn ingest(&self) -> IngestReport {
        let report = self
            .db
            .ingest(
                &self.encoder,
                std::slice::from_ref(&self.photos),
                &IngestOptions::default(),
                &mut (),
            )
            .unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        report
    }

    fn apply(&self, events: &[FileEvent]) -> (IngestReport, Vec<(PathBuf, FileOutcome)>) {
        self.apply_with(events, &IngestOptions::default())
    }

    fn apply_with(
        &self,
        events: &[FileEvent],
        options: &IngestOptions,
    ) -> (IngestReport, Vec<(PathBuf, FileOutcome)>) {
        let mut recorder = Recorder::default();
        let report = self
            .db
            .apply_events(&self.encoder, events, options, &mut recorder)
            .unwrap();
        recorder.files.sort_by(|a, b| a.0.cmp(&b.0));
        (report, recorder.files)
    }

    fn id(&self, path: &Path) -> ImageId {
        self.db.get_by_path(path).unwrap().unwrap().id
    }

    fn images(&self) -> usize {
        self.db.stats().unwrap().images
    }

    /// Whether a search for this vector finds the image.
    fn findable(&self, id: ImageId, vector: &[f32]) -> bool {
        let options = SearchOptions {
            k: 100,
            ..SearchOptions::default()
        };
        let hits = self.db.search(vector, &options).unwrap();
        hits.iter().any(|hit| hit.id == id)
    }
}

/// Keeps the file outcomes an apply reports.
#[derive(Default)]
struct Recorder {
    files: Vec<(PathBuf, FileOutcome)>,
}

impl IngestObserver for Recorder {
    fn event(&mut self, event: &IngestEvent) {
        if let IngestEvent::File { path, outcome } = event {
            self.files.push((path.clone(), outcome.clone()));
        }
    }
}

#[test]
fn created_and_changed_files_are_indexed_and_nothing_else_is_walked() {
    let s = Setup::new();
    let a = s.put("astronaut.jpg", "a.jpg");
    s.ingest();
    let old = s.db.get_by_path(&a).unwrap().unwrap();

    let b = s.put("chelsea.png", "b.png");
    // Present but not named by any event: an apply must not find it.
    let unnamed = s.put("china.jpg", "unnamed.jpg");
    std::fs::copy(root().join("fixtures/photos/coffee.jpg"), &a).unwrap();
    let (report, files) = s.apply(&[FileEvent::Created(b.clone()), FileEvent::Changed(a.clone())]);

    let (new_a, id_b) = (s.id(&a), s.id(&b));
    assert_eq!(
        (report.found, report.indexed, report.linked, report.removed),
        (2, 2, 0, 0)
    );
    assert_eq!(
        files,
        vec![
            (a.clone(), FileOutcome::Indexed(new_a)),
            (b, FileOutcome::Indexed(id_b)),
        ]
    );
    assert!(s.db.get_by_path(&unnamed).unwrap().is_none());
    // The changed file shows its new content; its old image had no other
    // path and is gone.
    let record = s.db.get_by_path(&a).unwrap().unwrap();
    assert_ne!(record.content_hash, old.content_hash);
    assert!(s.db.get(old.id).unwrap().is_none());
    assert_eq!(s.images(), 2);
}

#[test]
fn a_rename_keeps_the_id_and_the_vector_and_applies_once() {
    let s = Setup::new();
    let from = s.put("rocket.jpg", "old/rocket.jpg");
    s.put("flower.jpg", "flower.jpg");
    s.ingest();
    let id = s.id(&from);
    let vector = s.db.vector(id).unwrap();

    let to = s.photos.join("new-name.jpg");
    std::fs::rename(&from, &to).unwrap();
    let events = [FileEvent::Renamed {
        from: from.clone(),
        to: to.clone(),
    }];
    let (report, files) = s.apply(&events);

    assert_eq!(
        (report.found, report.indexed, report.linked, report.removed),
        (1, 0, 1, 1)
    );
    assert_eq!(
        files,
        vec![
            (to.clone(), FileOutcome::Linked(id)),
            (from.clone(), FileOutcome::Removed),
        ]
    );
    assert_eq!(s.id(&to), id);
    assert!(s.db.get_by_path(&from).unwrap().is_none());
    assert_eq!(s.db.vector(id).unwrap(), vector);
    assert_eq!(s.images(), 2);

    // The same events again: the disk has not changed, neither does the db.
    let (again, _) = s.apply(&events);
    assert_eq!(
        (again.indexed, again.linked, again.removed, again.unchanged),
        (0, 0, 0, 1)
    );
    assert_eq!(s.id(&to), id);
}

#[test]
fn a_renamed_folder_keeps_every_id() {
    let s = Setup::new();
    let old_dir = s.photos.join("trip");
    let files = ["astronaut.jpg", "coffee.jpg"].map(|name| s.put(name, &format!("trip/{name}")));
    s.ingest();
    let ids = files.clone().map(|path| s.id(&path));
    let vectors = ids.map(|id| s.db.vector(id).unwrap());

    let new_dir = s.photos.join("trip-2025");
    std::fs::rename(&old_dir, &new_dir).unwrap();
    let (report, _) = s.apply(&[FileEvent::Renamed {
        from: old_dir.clone(),
        to: new_dir.clone(),
    }]);

    assert_eq!(
        (report.found, report.indexed, report.linked, report.removed),
        (2, 0, 2, 2)
    );
    for ((path, id), vector) in files.iter().zip(ids).zip(&vectors) {
        let moved = new_dir.join(path.file_name().unwrap());
        assert_eq!(s.id(&moved), id);
        assert_eq!(&s.db.vector(id).unwrap(), vector);
        assert!(s.db.get_by_path(path).unwrap().is_none());
    }
    assert!(s.db.paths_under(&old_dir).unwrap().is_empty());
    assert_eq!(s.images(), 2);
}

#[test]
fn a_rename_of_unknown_content_indexes_it() {
    let s = Setup::new();
    s.put("flower.jpg", "flower.jpg");
    s.ingest();
    // Appeared and moved while no one was looking.
    let to = s.put("china.jpg", "china-renamed.jpg");
    let from = s.photos.join("china.jpg");
    let (report, files) = s.apply(&[FileEvent::Renamed {
        from,
        to: to.clone(),
    }]);
    assert_eq!((report.indexed, report.linked, report.removed), (1, 0, 0));
    assert_eq!(files, vec![(to.clone(), FileOutcome::Indexed(s.id(&to)))]);
    assert_eq!(s.images(), 2);
}

#[test]
fn deleted_files_and_folders_are_unlinked_and_unsearchable() {
    let s = Setup::new();
    let kept = s.put("astronaut.jpg", "kept.jpg");
    let single = s.put("chelsea.png", "single.png");
    let nested = ["coffee.jpg", "rocket.jpg"].map(|name| s.put(name, &format!("a/b/{name}")));
    let broken = s.photos.join("a/broken.jpg");
    std::fs::write(&broken, b"not a jpeg").unwrap();
    let report =
        s.db.ingest(
            &s.encoder,
            std::slice::from_ref(&s.photos),
            &IngestOptions::default(),
            &mut (),
        )
        .unwrap();
    assert_eq!((report.indexed, report.failures.len()), (4, 1));
    let gone: Vec<(ImageId, Vec<f32>)> = [&single, &nested[0], &nested[1]]
        .into_iter()
        .map(|path| {
            let id = s.id(path);
            (id, s.db.vector(id).unwrap())
        })
        .collect();
    for (id, vector) in &gone {
        assert!(s.findable(*id, vector));
    }

    std::fs::remove_file(&single).unwrap();
    std::fs::remove_dir_all(s.photos.join("a")).unwrap();
    let (report, files) = s.apply(&[
        FileEvent::Deleted(single.clone()),
        FileEvent::Deleted(s.photos.join("a")),
    ]);

    assert_eq!((report.found, report.indexed, report.removed), (0, 0, 3));
    let mut expected = vec![
        (nested[0].clone(), FileOutcome::Removed),
        (nested[1].clone(), FileOutcome::Removed),
        (single, FileOutcome::Removed),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(files, expected);
    for (id, vector) in &gone {
        assert!(s.db.get(*id).unwrap().is_none());
        assert!(!s.findable(*id, vector));
    }
    assert!(s.db.failure(&broken).unwrap().is_none());
    assert_eq!(s.images(), 1);
    assert!(s.db.get_by_path(&kept).unwrap().is_some());
}

#[test]
fn a_created_folder_is_walked() {
    let s = Setup::new();
    s.ingest();
    let files = ["astronaut.jpg", "flower.jpg"].map(|name| s.put(name, &format!("new/{name}")));
    s.put("coffee.jpg", "new/.hidden.jpg");
    let (report, _) = s.apply(&[FileEvent::Created(s.photos.join("new"))]);
    assert_eq!((report.found, report.indexed), (2, 2));
    for path in &files {
        s.id(path);
    }
    assert_eq!(s.images(), 2);
}

#[test]
fn a_copy_links_to_the_known_image() {
    let s = Setup::new();
    let original = s.put("coffee.jpg", "coffee.jpg");
    s.ingest();
    let copy = s.put("coffee.jpg", "copies/coffee.jpg");
    let (report, files) = s.apply(&[FileEvent::Created(copy.clone())]);
    let id = s.id(&original);
    assert_eq!((report.indexed, report.linked), (0, 1));
    assert_eq!(files, vec![(copy.clone(), FileOutcome::Linked(id))]);
    assert_eq!(s.id(&copy), id);
    assert_eq!(s.images(), 1);
}

#[test]
fn a_cancelled_apply_writes_and_removes_nothing() {
    let s = Setup::new();
    let doomed = s.put("rocket.jpg", "rocket.jpg");
    s.ingest();
    std::fs::remove_file(&doomed).unwrap();
    let added = s.put("flower.jpg", "flower.jpg");
    let cancel = CancelToken::new();
    cancel.cancel();
    let options = IngestOptions {
        cancel,
        ..IngestOptions::default()
    };
    let (report, files) = s.apply_with(
        &[
            FileEvent::Deleted(doomed.clone()),
            FileEvent::Created(added.clone()),
        ],
        &options,
    );
    assert!(report.cancelled);
    assert_eq!((report.indexed, report.removed), (0, 0));
    assert!(files.is_empty());
    assert!(s.db.get_by_path(&doomed).unwrap().is_some());
    assert!(s.db.get_by_path(&added).unwrap().is_none());
}

#[test]
fn an_observer_can_be_handed_to_a_worker_thread() {
    let s = Setup::new();
    let photo = s.put("chelsea.png", "chelsea.png");
    // `Box<dyn IngestObserver>` crosses threads only because the trait is `Send`.
    let mut observer: Box<dyn IngestObserver> = Box::new(Recorder::default());
    let report = std::thread::scope(|scope| {
        scope
            .spawn(move || {
                s.db.apply_events(
                    &s.encoder,
                    &[FileEvent::Created(photo)],
                    &IngestOptions::default(),
                    &mut *observer,
                )
                .unwrap()
            })
            .join()
            .unwrap()
    });
    assert_eq!(report.indexed, 1);
}

#[test]
fn a_renamed_file_with_its_size_and_mtime_is_linked_unread() {
    let s = Setup::new();
    let from = s.put("coffee.jpg", "coffee.jpg");
    s.ingest();
    let id = s.id(&from);
    let to = s.photos.join("renamed.jpg");
    std::fs::rename(&from, &to).unwrap();
    // Other bytes of the same size under the same mtime: only a read could
    // tell. Like an ingest's unchanged check, a rename trusts size and mtime
    // (this is what spares reading every file of a renamed folder).
    let mtime = std::fs::metadata(&to).unwrap().modified().unwrap();
    let size = std::fs::metadata(&to).unwrap().len() as usize;
    let file = std::fs::File::create(&to).unwrap();
    file.set_len(size as u64).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    let (report, _) = s.apply(&[FileEvent::Renamed {
        from,
        to: to.clone(),
    }]);
    assert_eq!(
        (report.indexed, report.linked, report.failures.len()),
        (0, 1, 0)
    );
    assert_eq!(s.id(&to), id);
}
