//! Sequences of operations on a database (write batches, searches, query
//! mixes, checkpoints, compactions, reopens) decoded from the input, as
//! redb's fuzzer drives its database. After every step `Db::verify` finds
//! no problem; a failed write changes nothing; a reopen finds every record
//! as it was; searches return live images that pass their filter, best
//! first, and exact scans miss none.
#![no_main]

use std::path::{Path, PathBuf};

use arbitrary::Arbitrary;
use imgdb::{
    ContentHash, Db, EmbeddingSpace, ErrorKind, Failure, FailureReason, Filter, ImageFormat,
    ImageId, ImageRecord, IndexParams, NewImage, SearchOptions, Tag, Timestamp, WriteBatch,
    WriteOp,
};
use libfuzzer_sys::fuzz_target;

const DIM: usize = 8;
/// Few paths, contents and labels, so that operations meet: a path
/// re-pointed, content shared by two files, a label on several images.
const PATHS: u8 = 12;
const CONTENTS: u8 = 8;
const LABELS: u8 = 4;
/// Steps and changes per input, so that one input stays well under a second.
const MAX_STEPS: usize = 24;
const MAX_CHANGES: usize = 8;
const FORMATS: [ImageFormat; 3] = [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP];

#[derive(Arbitrary, Debug)]
struct Input {
    /// Searches walk the graph (else they scan, as below 10 000 rows).
    graph_walks: bool,
    /// `M`, from 2 to 8: small graphs get upper layers with few points.
    m: u8,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Write(Vec<Change>),
    Search {
        vector: Vector,
        k: u8,
        ef: Option<u8>,
        filter: FilterSpec,
        min_score: Option<f32>,
    },
    /// A query mix: weighted stored vectors summed (as `Db::query_vector`
    /// sums its terms), weights as `TEXT::W` parses them (NaN and infinity
    /// included).
    Mix(Vec<(Pick, f32)>),
    Checkpoint,
    Compact,
    Reopen,
}

#[derive(Arbitrary, Debug)]
enum Change {
    Insert {
        path: u8,
        content: u8,
        vector: Vector,
        labels: Vec<u8>,
        width: u8,
        height: u8,
    },
    Link {
        path: u8,
        image: Pick,
    },
    Unlink {
        path: u8,
    },
    Delete {
        image: Pick,
    },
    SetTags {
        image: Pick,
        labels: Vec<u8>,
    },
    RecordFailure {
        path: u8,
    },
    ClearFailure {
        path: u8,
    },
}

/// An image: one a write returned (by index), or an id that may not exist.
#[derive(Arbitrary, Debug)]
enum Pick {
    Known(u8),
    Raw(u64),
}

/// A vector: a well-spread one chosen by a byte, or any floats (NaN,
/// infinities, zeros, the wrong length).
#[derive(Arbitrary, Debug)]
enum Vector {
    Seeded(u8),
    Raw(Vec<f32>),
}

#[derive(Arbitrary, Debug)]
struct FilterSpec {
    /// Under the folder of even (false) or odd (true) paths.
    under: Option<bool>,
    tag: Option<u8>,
    formats: Vec<u8>,
    min_width: Option<u8>,
    min_height: Option<u8>,
}

impl Vector {
    fn floats(&self) -> Vec<f32> {
        match self {
            // 17 is invertible mod 13: the components are never all zero.
            Vector::Seeded(n) => (0..DIM)
                .map(|i| ((usize::from(*n) * 31 + i * 17) % 13) as f32 - 6.0)
                .collect(),
            Vector::Raw(v) => v.clone(),
        }
    }
}

impl FilterSpec {
    fn filter(&self) -> Filter {
        Filter {
            under: self.under.map(folder),
            tag: self.tag.map(label),
            formats: self.formats.iter().map(|&f| format(f)).collect(),
            min_width: self.min_width.map(u32::from),
            min_height: self.min_height.map(u32::from),
            ..Filter::default()
        }
    }

    /// The oracle: whether `record` passes the filter.
    fn accepts(&self, record: &ImageRecord) -> bool {
        let filter = self.filter();
        filter
            .under
            .as_ref()
            .is_none_or(|dir| record.files.iter().any(|f| f.path.starts_with(dir)))
            && filter
                .tag
                .as_ref()
                .is_none_or(|tag| record.tags.iter().any(|t| &t.label == tag))
            && (filter.formats.is_empty() || filter.formats.contains(&record.format))
            && filter.min_width.is_none_or(|w| record.width >= w)
            && filter.min_height.is_none_or(|h| record.height >= h)
    }
}

fn folder(odd: bool) -> PathBuf {
    PathBuf::from(if odd { "/fuzz/odd" } else { "/fuzz/even" })
}

fn path(n: u8) -> PathBuf {
    let n = n % PATHS;
    folder(n % 2 == 1).join(format!("{n}.jpg"))
}

fn label(n: u8) -> String {
    format!("label-{}", n % LABELS)
}

fn format(n: u8) -> ImageFormat {
    FORMATS[usize::from(n) % FORMATS.len()]
}

fn tags(labels: &[u8]) -> Vec<Tag> {
    labels
        .iter()
        .map(|&n| Tag {
            label: label(n),
            score: f32::from(n) / 255.0,
        })
        .collect()
}

struct Run {
    dir: tempfile::TempDir,
    input_m: u8,
    graph_walks: bool,
    space: EmbeddingSpace,
    db: Option<Db>,
    /// Every id a write returned, deleted ones included.
    known: Vec<ImageId>,
}

impl Run {
    fn new(input: &Input) -> Run {
        // On tmpfs the store's fsyncs cost nothing: executions are not
        // bounded by a disk shared with the rest of the machine.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temp folder");
        let mut run = Run {
            dir,
            input_m: input.m,
            graph_walks: input.graph_walks,
            space: EmbeddingSpace::named("fuzz", DIM as u32),
            db: None,
            known: Vec::new(),
        };
        run.open();
        run
    }

    fn open(&mut self) {
        let mut options = Db::options()
            .space(self.space.clone())
            .create_if_missing(true)
            .background_maintenance(false)
            .index_params(IndexParams {
                m: 2 + usize::from(self.input_m % 7),
                ef_construction: 16,
                ef_search: 16,
            });
        if self.graph_walks {
            options = options.exact_scan_rows(0);
        }
        self.db = Some(options.open(self.dir.path()).expect("the database opens"));
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("open")
    }

    fn id(&self, pick: &Pick) -> ImageId {
        match pick {
            Pick::Known(i) if !self.known.is_empty() => {
                self.known[usize::from(*i) % self.known.len()]
            }
            Pick::Known(i) => ImageId(u64::from(*i)),
            Pick::Raw(id) => ImageId(*id),
        }
    }

    fn records(&self) -> Vec<ImageRecord> {
        let mut records: Vec<ImageRecord> = self
            .db()
            .records()
            .collect::<Result<_, _>>()
            .expect("records read");
        records.sort_by_key(|r| r.id);
        records
    }

    fn op(&self, change: &Change) -> WriteOp {
        let mtime = |n: u8| Timestamp(1_700_000_000_000_000_000 + i64::from(n));
        match change {
            Change::Insert {
                path: p,
                content,
                vector,
                labels,
                width,
                height,
            } => WriteOp::Insert(NewImage {
                path: path(*p),
                mtime: mtime(*p),
                content_hash: ContentHash::of(&[content % CONTENTS]),
                byte_size: u64::from(*content) * 1000,
                width: u32::from(*width),
                height: u32::from(*height),
                format: format(*content),
                tags: tags(labels),
                vector: vector.floats(),
            }),
            Change::Link { path: p, image } => WriteOp::Link {
                path: path(*p),
                mtime: mtime(*p),
                id: self.id(image),
            },
            Change::Unlink { path: p } => WriteOp::Unlink { path: path(*p) },
            Change::Delete { image } => WriteOp::Delete { id: self.id(image) },
            Change::SetTags { image, labels } => WriteOp::SetTags {
                id: self.id(image),
                tags: tags(labels),
            },
            Change::RecordFailure { path: p } => WriteOp::RecordFailure {
                path: path(*p),
                failure: Failure {
                    reason: FailureReason {
                        kind: ErrorKind::Corrupt,
                        message: "fuzz".into(),
                    },
                    byte_size: 1,
                    mtime: mtime(*p),
                    at: mtime(0),
                },
            },
            Change::ClearFailure { path: p } => WriteOp::ClearFailure { path: path(*p) },
        }
    }

    fn write(&mut self, changes: &[Change]) {
        let mut batch = WriteBatch::new();
        for change in changes.iter().take(MAX_CHANGES) {
            batch.push(self.op(change));
        }
        let before = self.records();
        match self.db().write(&self.space, batch) {
            Ok(ids) => self.known.extend(ids.into_iter().flatten()),
            Err(_) => assert_eq!(self.records(), before, "a failed write changed records"),
        }
    }

    fn check_hits(&self, vector: &[f32], options: &SearchOptions, spec: Option<&FilterSpec>) {
        let Ok(hits) = self.db().search(vector, options) else {
            return;
        };
        assert!(
            hits.len() <= options.k,
            "{} hits for k = {}",
            hits.len(),
            options.k
        );
        for pair in hits.windows(2) {
            assert!(
                pair[0].score >= pair[1].score,
                "hits out of order: {hits:?}"
            );
        }
        for hit in &hits {
            assert!(hit.score.is_finite(), "score {}", hit.score);
            let record = self.db().get(hit.id).expect("get").expect("a live hit");
            if let Some(spec) = spec {
                assert!(
                    spec.accepts(&record),
                    "{record:?} fails {:?}",
                    spec.filter()
                );
            }
            if let Some(min) = options.min_score {
                assert!(hit.score >= min);
            }
        }
        // An exact scan misses no match.
        if !self.graph_walks && options.min_score.is_none() {
            let matching = self
                .records()
                .iter()
                .filter(|r| spec.is_none_or(|s| s.accepts(r)))
                .count();
            assert_eq!(
                hits.len(),
                matching.min(options.k),
                "an exact scan missed matches"
            );
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Write(changes) => self.write(changes),
            Step::Search {
                vector,
                k,
                ef,
                filter,
                min_score,
            } => {
                let options = SearchOptions {
                    k: usize::from(*k),
                    ef: ef.map(usize::from),
                    min_score: *min_score,
                    filter: filter.filter(),
                };
                self.check_hits(&vector.floats(), &options, Some(filter));
            }
            Step::Mix(terms) => {
                let mut sum = vec![0.0f32; DIM];
                for (pick, weight) in terms {
                    if let Some(vector) = self.db().vector(self.id(pick)) {
                        for (s, v) in sum.iter_mut().zip(vector) {
                            *s += weight * v;
                        }
                    }
                }
                self.check_hits(&sum, &SearchOptions::default(), None);
            }
            Step::Checkpoint => self.db().checkpoint().expect("a checkpoint"),
            Step::Compact => {
                self.db().compact().expect("a compaction");
            }
            Step::Reopen => {
                let before = self.records();
                drop(self.db.take());
                self.open();
                assert_eq!(self.records(), before, "a reopen changed records");
            }
        }
        let report = self.db().verify().expect("verify runs");
        assert!(report.is_clean(), "after {step:?}: {:?}", report.problems);
    }
}

fuzz_target!(|input: Input| {
    let mut run = Run::new(&input);
    for step in input.steps.iter().take(MAX_STEPS) {
        run.step(step);
    }
    // The database closes before its folder goes.
    drop(run.db.take());
});
