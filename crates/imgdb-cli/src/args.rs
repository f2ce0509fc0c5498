//! Command-line arguments (clap), as typed; `main.rs` validates and runs them.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Find images by what they show: an embedded CLIP image-search database.
#[derive(Parser, Debug)]
#[command(name = "imgdb", version, about, max_term_width = 100)]
pub struct Cli {
    /// The database folder [default: $IMGDB_DB, else $XDG_DATA_HOME/imgdb/db].
    #[arg(long, global = true, value_name = "DIR")]
    pub db: Option<PathBuf>,

    /// The model folder (see schema/model.md) [default: $IMGDB_MODEL, else the model
    /// `imgdb model pull` fetched].
    #[arg(long, global = true, value_name = "DIR")]
    pub model: Option<PathBuf>,

    /// Where the model runs: cpu, cuda, tensorrt or auto (CUDA if it starts, else CPU)
    /// [default: $IMGDB_DEVICE, else cpu].
    #[arg(long, global = true, value_name = "DEVICE")]
    pub device: Option<String>,

    /// Which weights of the model run: fp32 (the reference vectors), fp16, int8, uint8,
    /// quantized, q4, q4f16, or auto (int8 on the CPU, fp16 on a GPU, when the model folder
    /// has them) [default: $IMGDB_MODEL_VARIANT, else fp32].
    #[arg(long, global = true, value_name = "VARIANT")]
    pub model_variant: Option<String>,

    /// Let the model's other variants read and write a database built with one of them
    /// (their vectors are close, not equal); without it, another variant is refused.
    #[arg(long, global = true)]
    pub accept_variant: bool,

    /// Where a new database's index keeps its exact vectors: resident (in memory, the
    /// default) or compact (memory-mapped from the index snapshot: about a quarter of the
    /// memory, the same results). Chosen at creation; naming another for an existing
    /// database is an error.
    #[arg(long, global = true, value_name = "MODE", value_parser = parse_index_memory)]
    pub index_memory: Option<imgdb::IndexMemory>,

    /// Only errors on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// More log output on stderr (repeat for more).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Index images under folders (recursively) or files; re-running updates.
    Ingest(IngestArgs),
    /// Search by text, by image, or a mix.
    Query(QueryArgs),
    /// List the files that could not be indexed.
    Failures(FailuresArgs),
    /// Label every image zero-shot from a list of labels (stored as tags).
    Tag(TagArgs),
    /// Rank labels for one image, zero-shot.
    Classify(ClassifyArgs),
    /// Groups of near-duplicate images.
    Dupes(DupesArgs),
    /// Counts, sizes, model and provider.
    Stats(JsonArgs),
    /// Check the database's consistency (exit 1 on any problem).
    Check(JsonArgs),
    /// Remove files or folders from the database (not from the disk).
    Rm(RmArgs),
    /// Re-encode every image with the current model, keeping metadata.
    Reindex,
    /// Write embeddings and metadata in clip-retrieval's layout (img_emb/*.npy + metadata/*.parquet).
    Export(ExportArgs),
    /// Load an export, or LAION / clip-retrieval shards (their model named with --model).
    Import(ImportArgs),
    /// Zero-shot accuracy and text-to-image recall on an ImageFolder.
    Eval(EvalArgs),
    /// Watch folders, index them by itself and serve search over HTTP with a web page.
    Daemon(DaemonArgs),
    /// Models: fetch one from the Hugging Face hub.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Look at what the model sees: the input tensor or the vector.
    #[command(subcommand)]
    Debug(DebugCommand),
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// A folder to watch (repeatable); added to the roots the database keeps, so that a
    /// restart needs no flags.
    #[arg(long, value_name = "DIR")]
    pub watch: Vec<PathBuf>,
    /// Where the HTTP API listens [default: 127.0.0.1:7474]; an address that is not
    /// loopback requires a token.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// The TOML config file (schema/daemon.md); flags override its keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The bearer token every request must carry [default: $IMGDB_TOKEN].
    #[arg(
        long,
        env = "IMGDB_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

#[derive(Args, Debug)]
pub struct FailuresArgs {
    /// Only failures of this kind: unsupported, corrupt, too_large, io, … (schema/cli.md).
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// JSON Lines output (schema/cli.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct JsonArgs {
    /// JSON Lines output (schema/cli.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Folders or files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Progress and results as JSON Lines events (schema/cli.md).
    #[arg(long)]
    pub json: bool,
    /// Decode threads [default: the cores].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Images per model run [default: 32].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Also index hidden files and folders (names starting with a dot).
    #[arg(long)]
    pub hidden: bool,
    /// Follow symbolic links.
    #[arg(long)]
    pub follow_links: bool,
    /// Keep indexed files that are gone from the folders.
    #[arg(long)]
    pub keep_missing: bool,
    /// Decode large JPEGs at a reduced scale: several times faster, slightly
    /// different vectors (BENCHMARKS.md).
    #[arg(long)]
    pub fast_decode: bool,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// A text to search for.
    pub text: Option<String>,
    /// More text terms; `TEXT::WEIGHT` weighs one (default 1).
    #[arg(long = "text", value_name = "TEXT[::W]")]
    pub texts: Vec<String>,
    /// Image terms: images like this one; `PATH::WEIGHT` weighs one.
    #[arg(long = "image", value_name = "PATH[::W]")]
    pub images: Vec<OsString>,
    /// Texts to steer away from (weight -1).
    #[arg(long, value_name = "TEXT")]
    pub minus: Vec<String>,
    /// How many results.
    #[arg(short, default_value_t = 10)]
    pub k: usize,
    /// Leave out results under this cosine similarity.
    #[arg(long, value_name = "SCORE")]
    pub min_score: Option<f32>,
    /// Only images under this folder.
    #[arg(long, value_name = "DIR")]
    pub under: Option<PathBuf>,
    /// Only images with this tag.
    #[arg(long, value_name = "LABEL")]
    pub tag: Option<String>,
    /// Only these formats (jpeg, png, webp, gif, bmp, tiff).
    #[arg(long, value_name = "FORMAT")]
    pub format: Vec<String>,
    /// Only images at least this wide.
    #[arg(long, value_name = "PIXELS")]
    pub min_width: Option<u32>,
    /// Only images at least this high.
    #[arg(long, value_name = "PIXELS")]
    pub min_height: Option<u32>,
    /// Only files modified at or after this time (2024-05-01 or RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub after: Option<String>,
    /// Only files modified before this time.
    #[arg(long, value_name = "TIME")]
    pub before: Option<String>,
    /// The graph search's ef (speed/recall).
    #[arg(long)]
    pub ef: Option<usize>,
    /// JSON Lines output (schema/cli.md).
    #[arg(long, conflicts_with = "paths")]
    pub json: bool,
    /// One path per line (for xargs).
    #[arg(long)]
    pub paths: bool,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    /// A file with one label per line.
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// The prompt; `{}` marks the label.
    #[arg(long, default_value = imgdb::eval::DEFAULT_TEMPLATE)]
    pub template: String,
    /// Labels kept per image.
    #[arg(long, default_value_t = 1)]
    pub top: usize,
    /// Leave out labels under this probability.
    #[arg(long, default_value_t = 0.0)]
    pub min_score: f32,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// The image.
    pub image: PathBuf,
    /// A file with one label per line.
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// The prompt; `{}` marks the label.
    #[arg(long, default_value = imgdb::eval::DEFAULT_TEMPLATE)]
    pub template: String,
    /// How many labels to print.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// JSON Lines output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DupesArgs {
    /// Cosine similarity from which images are duplicates.
    #[arg(long, default_value_t = 0.95)]
    pub threshold: f32,
    /// JSON Lines output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Files or folders.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The folder to write (created).
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The folder to read: img_emb/img_emb_N.npy with metadata/metadata_N.parquet (or .jsonl).
    /// Shards from elsewhere carry no manifest: --model must name the model of their space.
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// An ImageFolder: one subfolder of images per class.
    pub dir: PathBuf,
    /// The prompt; `{}` marks the class name (underscores read as spaces).
    #[arg(long, default_value = imgdb::eval::DEFAULT_TEMPLATE)]
    pub template: String,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Download a model folder from the Hugging Face hub ($HF_ENDPOINT honoured).
    Pull {
        /// The repository [default: Xenova/clip-vit-base-patch32].
        name: Option<String>,
        /// The variant whose towers to fetch (fp32, fp16, int8, uint8, quantized, q4,
        /// q4f16) [default: --model-variant, else fp32].
        #[arg(long, value_name = "VARIANT")]
        variant: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DebugCommand {
    /// Write the exact model input of an image as .npy (float32 [1, 3, H, W]).
    Preprocess {
        /// The image.
        image: PathBuf,
        /// A preprocessor_config.json to use instead of the model's.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The .npy file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write the vector of an image or a text as .npy (float32 [1, dim]).
    Embed {
        /// The image.
        #[arg(required_unless_present = "text")]
        image: Option<PathBuf>,
        /// A text instead of an image.
        #[arg(long, conflicts_with = "image")]
        text: Option<String>,
        /// The .npy file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

fn parse_index_memory(name: &str) -> Result<imgdb::IndexMemory, String> {
    imgdb::IndexMemory::from_name(name).ok_or_else(|| "resident or compact".to_string())
}
