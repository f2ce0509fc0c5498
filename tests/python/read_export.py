"""Reads an imgdb export as clip-retrieval's tools and autofaiss do (numpy for
img_emb/*.npy, pyarrow for metadata/*.parquet), checks that the two agree,
and prints what it read as one JSON object for the Rust test to compare:
{"shards": N, "rows": N, "dim": D, "columns": [...], "rows_by_path": {path: {...}}}.

Usage: python read_export.py EXPORT_DIR   (run by tests/exchange_laion.rs)
"""

import json
import pathlib
import sys

import numpy as np
import pyarrow.parquet as pq


def main(root: pathlib.Path) -> None:
    manifest = json.loads((root / "imgdb_export.json").read_text())
    rows_by_path = {}
    columns = None
    shards = 0
    dim = manifest["dim"]
    while (root / "img_emb" / f"img_emb_{shards}.npy").exists():
        vectors = np.load(root / "img_emb" / f"img_emb_{shards}.npy")
        table = pq.read_table(root / "metadata" / f"metadata_{shards}.parquet")
        assert vectors.dtype == np.float32, vectors.dtype
        assert vectors.ndim == 2 and vectors.shape[1] == dim, vectors.shape
        assert vectors.shape[0] == table.num_rows, (vectors.shape, table.num_rows)
        if len(vectors):
            norms = np.linalg.norm(vectors, axis=1)
            assert np.allclose(norms, 1.0, atol=1e-5), norms
        columns = table.column_names
        for i, row in enumerate(table.to_pylist()):
            row["tags"] = json.loads(row["tags"])
            row["other_paths"] = json.loads(row["other_paths"])
            row["vector_head"] = [float(x) for x in vectors[i, :4]]
            rows_by_path[row["image_path"]] = row
        shards += 1
    assert len(rows_by_path) == manifest["count"], (len(rows_by_path), manifest["count"])
    print(json.dumps({
        "shards": shards,
        "rows": len(rows_by_path),
        "dim": dim,
        "columns": columns,
        "rows_by_path": rows_by_path,
    }))


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
