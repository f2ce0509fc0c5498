//! Search behaviour: filters inside the graph walk, tombstones, compaction,
//! content deduplication and readers running beside a writer.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{image, seed, space, unit_vector};
use imgdb::{
    Db, DbOptions, Filter, ImageFormat, ImageId, SearchOptions, Tag, Timestamp, WriteBatch, WriteOp,
};

const DIM: usize = 24;

fn options() -> DbOptions {
    Db::options()
        .space(space(DIM as u32))
        .create_if_missing(true)
}

/// What a filter must keep, checked on the record.
type Keep = Box<dyn Fn(&imgdb::ImageRecord) -> bool>;

fn brute_force(
    db: &Db,
    query: &[f32],
    k: usize,
    keep: impl Fn(&imgdb::ImageRecord) -> bool,
) -> Vec<ImageId> {
    let norm = query.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut scored: Vec<(f32, ImageId)> = db
        .records()
        .map(|r| r.unwrap())
        .filter(|r| keep(r))
        .map(|r| {
            (
                r.vector.iter().zip(query).map(|(a, b)| a * b / norm).sum(),
                r.id,
            )
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

#[test]
fn filters_hold_for_graph_walks_and_exact_scans() {
    let seed = seed("filters", 3);
    let dir = tempfile::tempdir().unwrap();
    for exact_scan_rows in [0, 100_000] {
        let db = options()
            .exact_scan_rows(exact_scan_rows)
            .open(dir.path().join(format!("db{exact_scan_rows}")))
            .unwrap();
        let mut images: Vec<_> = (0..1200).map(|n| image(n, DIM)).collect();
        for (n, img) in images.iter_mut().enumerate() {
            if n % 5 == 0 {
                img.tags = vec![Tag {
                    label: "beach".into(),
                    score: 0.9,
                }];
            }
        }
        db.insert(&space(DIM as u32), images).unwrap();

        let filters: Vec<(Filter, Keep)> = vec![
            (
                Filter {
                    under: Some(PathBuf::from("/photos/3")),
                    ..Filter::default()
                },
                Box::new(|r| r.path().starts_with("/photos/3")),
            ),
            (
                Filter {
                    tag: Some("beach".into()),
                    ..Filter::default()
                },
                Box::new(|r| r.tags.iter().any(|t| t.label == "beach")),
            ),
            (
                Filter {
                    formats: vec![ImageFormat::Png],
                    min_width: Some(130),
                    ..Filter::default()
                },
                Box::new(|r| r.format == ImageFormat::Png && r.width >= 130),
            ),
            (
                Filter {
                    modified_after: Some(Timestamp(
                        1_700_000_000_000_000_000 + 600 * 1_000_000_000,
                    )),
                    max_bytes: Some(2000),
                    ..Filter::default()
                },
                Box::new(|r| {
                    r.mtime().0 >= 1_700_000_000_000_000_000 + 600 * 1_000_000_000
                        && r.byte_size <= 2000
                }),
            ),
        ];
        for (i, (filter, keep)) in filters.iter().enumerate() {
            let mut overlap = 0;
            for q in 0..20 {
                let query = unit_vector(seed * 100 + q, DIM);
                let options = SearchOptions {
                    k: 10,
                    ef: Some(128),
                    filter: filter.clone(),
                    ..SearchOptions::default()
                };
                let hits = db.search(&query, &options).unwrap();
                assert_eq!(hits.len(), 10, "filter {i}: too few results");
                for hit in &hits {
                    assert!(
                        keep(&db.get(hit.id).unwrap().unwrap()),
                        "filter {i} let {} through",
                        hit.id
                    );
                }
                let truth = brute_force(&db, &query, 10, keep);
                overlap += hits.iter().filter(|h| truth.contains(&h.id)).count();
            }
            let recall = overlap as f64 / 200.0;
            if exact_scan_rows > 0 {
                assert_eq!(recall, 1.0, "filter {i}: exact scans must be exact");
            } else {
                assert!(
                    recall >= 0.9,
                    "filter {i}: recall@10 {recall} through the graph"
                );
            }
        }
    }
}

#[test]
fn deleted_images_never_come_back_and_compaction_keeps_answers() {
    let seed = seed("tombstones", 4);
    let dir = tempfile::tempdir().unwrap();
    // The caller schedules compaction here, to compare answers around it.
    let db = options()
        .exact_scan_rows(0)
        .compact_ratio(0.3)
        .background_maintenance(false)
        .open(dir.path().join("db"))
        .unwrap();
    let ids = db
        .insert(
            &space(DIM as u32),
            (0..1000).map(|n| image(n, DIM)).collect(),
        )
        .unwrap();
    let deleted: Vec<ImageId> = ids.iter().copied().filter(|id| id.0 % 5 == 0).collect();
    assert_eq!(db.delete(&deleted).unwrap(), 200);
    let deleted: HashSet<ImageId> = deleted.into_iter().collect();
    assert_eq!(db.stats().unwrap().tombstones, 200);
    assert!(
        !db.compact().unwrap(),
        "20% tombstones is below the 30% ratio"
    );

    let queries: Vec<Vec<f32>> = (0..30).map(|q| unit_vector(seed * 1000 + q, DIM)).collect();
    let search = |db: &Db, q: &[f32]| {
        db.search(
            q,
            &SearchOptions {
                ef: Some(200),
                ..SearchOptions::default()
            },
        )
        .unwrap()
    };
    for q in &queries {
        let hits = search(&db, q);
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| !deleted.contains(&h.id)));
    }
    // Self-queries of deleted vectors find other images.
    for n in (0..1000).step_by(5) {
        let hits = search(&db, &unit_vector(n, DIM));
        assert!(hits.iter().all(|h| !deleted.contains(&h.id)));
    }

    let more: Vec<ImageId> = ids.iter().copied().filter(|id| id.0 % 5 == 1).collect();
    db.delete(&more).unwrap();
    let before: Vec<_> = queries.iter().map(|q| search(&db, q)).collect();
    assert!(db.compact().unwrap(), "40% tombstones passes the ratio");
    let stats = db.stats().unwrap();
    assert_eq!((stats.index_points, stats.tombstones), (600, 0));
    let after: Vec<_> = queries.iter().map(|q| search(&db, q)).collect();
    let same = before
        .iter()
        .zip(&after)
        .map(|(b, a)| b.iter().filter(|h| a.contains(h)).count())
        .sum::<usize>();
    assert!(
        same as f64 / 300.0 >= 0.95,
        "compaction changed answers: {same}/300 kept"
    );
    assert!(db.verify().unwrap().is_clean());
}

#[test]
fn identical_files_share_one_image_and_moves_keep_the_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = options().open(dir.path().join("db")).unwrap();
    let s = space(DIM as u32);
    let original = image(1, DIM);
    let id = db.insert(&s, vec![original.clone()]).unwrap()[0];

    // A copy elsewhere: same content, another path -> the same image.
    let mut copy = original.clone();
    copy.path = PathBuf::from("/backup/copy.jpg");
    copy.vector = unit_vector(99, DIM); // ignored: the content is known
    assert_eq!(db.insert(&s, vec![copy.clone()]).unwrap()[0], id);
    let record = db.get(id).unwrap().unwrap();
    assert_eq!(record.files.len(), 2);
    assert_eq!(db.stats().unwrap().images, 1);
    let kept = db.vector(id).unwrap();
    for (a, b) in kept.iter().zip(&original.vector) {
        assert!(
            (a - b / norm(&original.vector)).abs() < 1e-6,
            "the copy's vector replaced the original's"
        );
    }

    // A move: link the new path, unlink the old one.
    let moved = PathBuf::from("/photos/renamed.jpg");
    let mut batch = WriteBatch::new();
    batch
        .push(WriteOp::Link {
            path: moved.clone(),
            mtime: Timestamp(5),
            id,
        })
        .push(WriteOp::Unlink {
            path: original.path.clone(),
        });
    db.write(&s, batch).unwrap();
    assert_eq!(db.get_by_path(&moved).unwrap().unwrap().id, id);
    assert!(db.get_by_path(&original.path).unwrap().is_none());

    // Changed content at a path of a shared image: the path gets a new image.
    let mut edited = copy.clone();
    edited.content_hash = imgdb::ContentHash::of(b"edited");
    edited.vector = unit_vector(7, DIM);
    let new_id = db.insert(&s, vec![edited]).unwrap()[0];
    assert_ne!(new_id, id);
    assert_eq!(db.get(id).unwrap().unwrap().files.len(), 1);

    // Unlinking the last path deletes the image.
    db.write(&s, vec![WriteOp::Unlink { path: moved }].into())
        .unwrap();
    assert!(db.get(id).unwrap().is_none());
    assert_eq!(db.stats().unwrap().images, 1);
    assert!(db.verify().unwrap().is_clean());
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[test]
fn readers_run_beside_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let db = options()
        .exact_scan_rows(0)
        .open(dir.path().join("db"))
        .unwrap();
    let s = space(DIM as u32);
    db.insert(&s, (0..200).map(|n| image(n, DIM)).collect())
        .unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..3)
            .map(|r| {
                let db = db.clone();
                let done = &done;
                scope.spawn(move || {
                    let mut searches = 0;
                    while !done.load(Ordering::Relaxed) || searches == 0 {
                        let hits = db
                            .search(
                                &unit_vector(r * 7919 + searches, DIM),
                                &SearchOptions::default(),
                            )
                            .unwrap();
                        assert_eq!(hits.len(), 10);
                        assert!(
                            hits.windows(2).all(|w| w[0].score >= w[1].score),
                            "unsorted hits"
                        );
                        // A hit may be deleted by the writer right after the
                        // search; it must still be an id that was assigned.
                        assert!(hits.iter().all(|h| (1..=600).contains(&h.id.0)));
                        searches += 1;
                    }
                    searches
                })
            })
            .collect();
        for batch in 0..20u64 {
            let images = (200 + batch * 20..200 + (batch + 1) * 20)
                .map(|n| image(n, DIM))
                .collect();
            db.insert(&s, images).unwrap();
            if batch % 4 == 0 {
                db.delete(&[ImageId(batch * 3 + 1)]).unwrap();
            }
        }
        done.store(true, Ordering::Relaxed);
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
    });
    assert!(db.verify().unwrap().is_clean());
}
