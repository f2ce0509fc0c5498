//! The JSON forms of images, results and paths that the CLI's `--json`
//! and the HTTP API share (`schema/cli.md`, "image object";
//! `schema/api/openapi.yaml`), so that a query gives the same fields
//! whichever face answers it.

use std::path::Path;

use base64::Engine;
use imgdb::{ImageRecord, QueryHit, Stats, Tag, Timestamp};
use serde_json::{Value, json};

/// What `imgdb stats --json` prints and `GET /v1/stats` answers.
pub fn stats_json(stats: &Stats) -> Value {
    json!({
        "images": stats.images, "files": stats.files, "failures": stats.failures,
        "model": stats.space.model_id, "dim": stats.space.dim,
        "fingerprint": stats.space.fingerprint.to_hex(), "variant": stats.space.variant.name(),
        "index_points": stats.index_points, "tombstones": stats.tombstones,
        "index_origin": format!("{:?}", stats.origin), "store_bytes": stats.store_bytes,
        "snapshot_bytes": stats.snapshot_bytes, "format_version": stats.format_version,
        "m": stats.index_params.m, "ef_construction": stats.index_params.ef_construction,
        "ef_search": stats.index_params.ef_search, "index_memory": stats.index_memory.name(),
        "resident_vector_bytes": stats.resident_vector_bytes,
    })
}

/// A path: a string when it is UTF-8, else `{"bytes": BASE64}` with the
/// OS's bytes in standard base64, so that no path is changed on its way out.
pub fn path_json(path: &Path) -> Value {
    match path.to_str() {
        Some(text) => Value::String(text.to_string()),
        None => json!({"bytes": base64::engine::general_purpose::STANDARD
            .encode(path.as_os_str().as_encoded_bytes())}),
    }
}

/// Tags as `[{"label", "score"}]`.
pub fn tags_json(tags: &[Tag]) -> Value {
    Value::Array(
        tags.iter()
            .map(|t| json!({"label": t.label, "score": t.score}))
            .collect(),
    )
}

/// An image record.
pub fn image_json(record: &ImageRecord) -> Value {
    json!({
        "id": record.id.0,
        "path": path_json(record.path()),
        "paths": record.files.iter().map(|f| path_json(&f.path)).collect::<Vec<_>>(),
        "width": record.width,
        "height": record.height,
        "format": record.format.name(),
        "bytes": record.byte_size,
        "mtime": timestamp_text(record.mtime()),
        "content_hash": record.content_hash.to_hex(),
        "tags": tags_json(&record.tags),
    })
}

/// A query result: its image with `rank` (from 1) and `score`, and the
/// `source` (`{url, caption, key}`, each a string or null) of a row
/// imported from a LAION / clip-retrieval shard.
pub fn hit_json(rank: usize, hit: &QueryHit) -> Value {
    let mut value = image_json(&hit.record);
    let object = value.as_object_mut().expect("an object");
    object.insert("rank".into(), json!(rank));
    object.insert("score".into(), json!(hit.score));
    if let Some(source) = &hit.source {
        object.insert(
            "source".into(),
            json!({"url": source.url, "caption": source.caption, "key": source.key}),
        );
    }
    value
}

/// RFC 3339 in UTC.
pub fn timestamp_text(t: Timestamp) -> String {
    t.to_rfc3339()
}
