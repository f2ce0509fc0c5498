//! Entry points for the fuzz targets (`fuzz/`), behind the `fuzzing`
//! feature: what `POST /v1/query` does with a JSON body before it reaches
//! the database (the nesting check, serde, then every check and the
//! conversion into an `imgdb::Query`), without a server, a model or a
//! database. Each takes arbitrary bytes and must return without panicking.

use imgdb::QueryTerm;
use serde_json::Value;

use crate::api::extract::{nesting_exceeds, parse_json};
use crate::api::query::{MAX_OFFSET, QueryBody, query_of};
use crate::config::Limits;

/// A `POST /v1/query` JSON body under the default limits. A body that is
/// accepted must ask for a query the library can run: at least one term,
/// finite weights, `1 ≤ k − offset ≤ max_k`, an offset of at most
/// [`MAX_OFFSET`], a finite `min_score`. The nesting check must agree with
/// serde_json's own parse of the same bytes.
pub fn query_body(data: &[u8]) {
    let limits = Limits::default();
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        assert_eq!(
            depth(&value) > limits.max_json_depth,
            nesting_exceeds(data, limits.max_json_depth),
            "the nesting check disagrees with the parse"
        );
    }
    let Ok(body) = parse_json::<QueryBody>(data, limits.max_json_depth) else {
        return;
    };
    let Ok((query, offset)) = query_of(body, None, limits.max_k) else {
        return;
    };
    assert!(!query.terms.is_empty(), "a query without terms");
    assert!(offset <= MAX_OFFSET, "offset {offset}");
    let page = query.k.checked_sub(offset).expect("k counts the offset");
    assert!((1..=limits.max_k).contains(&page), "k {page}");
    assert!(query.min_score.is_none_or(f32::is_finite));
    for term in &query.terms {
        let weight = match term {
            QueryTerm::Text { weight, .. }
            | QueryTerm::Image { weight, .. }
            | QueryTerm::ImageBytes { weight, .. }
            | QueryTerm::Indexed { weight, .. } => *weight,
            _ => continue,
        };
        assert!(weight.is_finite(), "weight {weight}");
    }
}

/// How deep arrays and objects nest in `value` (a scalar is 0).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
