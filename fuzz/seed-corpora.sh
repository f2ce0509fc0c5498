#!/usr/bin/env bash
# Fills corpus/<target>/ with seed inputs made from the repository's fixtures
# (images, the frozen database's snapshot, the model folders' configurations)
# and fuzz/seeds/. Existing corpus files are kept: a corpus grown by earlier
# runs goes on growing. Nothing here is committed (corpus/ is ignored).
set -euo pipefail
cd "$(dirname "$0")"
fixtures=../fixtures
seed() { mkdir -p "corpus/$1"; cp -n "${@:2}" "corpus/$1/"; }

seed decode_image "$fixtures"/parity/images/* "$fixtures"/photos/*.jpg "$fixtures"/photos/*.png \
  "$fixtures"/formats/*.avif "$fixtures"/formats/*.heic "$fixtures"/formats/*.tif \
  regressions/decode_image/*.avif
snapshot=$(ls -d "$fixtures"/databases/v1/index/snapshot-*)
seed snapshot_header "$snapshot/header"
seed flat_graph "$snapshot/flat.bin"
mkdir -p corpus/store_value
python3 seeds/store_values.py corpus/store_value
# Every configuration file alone, and each layout's merged into one object
# (the target writes the same bytes to all of a folder's files).
python3 - "$fixtures/models" corpus/model_config <<'PY'
import json, sys
from pathlib import Path
models, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
names = ["preprocessor_config.json", "config.json", "tokenizer_config.json", "preprocess_cfg.json"]
for model in sorted(models.iterdir()):
    merged = {}
    for name in names:
        for path in sorted(model.rglob(name)):
            value = json.loads(path.read_text())
            (out / f"{model.name}-{path.parent.name}-{name}").write_text(json.dumps(value))
            merged.update(value)
    (out / f"{model.name}-merged.json").write_text(json.dumps(merged))
PY
# Every caption of the tokenizer parity corpus, as its own file.
python3 - "$fixtures/text/captions.jsonl" corpus/text_query <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
for n, line in enumerate(Path(sys.argv[1]).read_text().splitlines()):
    (out / f"caption-{n:03}").write_text(json.loads(line)["text"])
PY
mkdir -p corpus/query_arguments
for arg in 2024-05-01 2024-05-01T10:30:00Z 2024-05-01T10:30:00+02:00 jpeg TIF webp; do
  printf '%s' "$arg" >"corpus/query_arguments/$arg"
done
mkdir -p corpus/db_ops
# The daemon's query bodies: every field of schema/api/openapi.yaml's
# QueryRequest, accepted and refused ones, and a body nested past the limit.
mkdir -p corpus/http_query_body
python3 - corpus/http_query_body <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
bodies = [
    {"text": "a red circle"},
    {"text": "a cat", "k": 5, "offset": 10, "min_score": 0.1, "ef": 128},
    {"image_id": 3},
    {"image_base64": png},
    {"terms": [{"text": "a dog", "weight": 0.5}, {"image_id": 1, "weight": -0.25},
               {"image_base64": png}]},
    {"negative": ["blurry", "dark"], "text": "beach"},
    {"text": "x", "filter": {"under": "/photos/2024", "tag": "cat", "formats": ["jpeg", "png"],
                             "min_width": 100, "min_height": 100, "min_bytes": 1,
                             "max_bytes": 1000000, "modified_after": "2024-05-01",
                             "modified_before": "2024-05-01T10:30:00+02:00"}},
    {"text": "x", "filter": None, "k": None, "ef": None, "min_score": None},
    {"terms": [{"text": "a", "image_id": 1}]},
    {"terms": [{"weight": 2}]},
    {"text": "x", "k": 0},
    {"text": "x", "offset": 10001},
    {"text": "x", "filter": {"under": "relative/path"}},
    {"text": "x", "filter": {"formats": ["nope"], "modified_after": "yesterday"}},
    {"image_base64": "not base64!"},
    {"unknown": 1},
    {},
]
for i, body in enumerate(bodies):
    (out / f"body-{i:02}.json").write_text(json.dumps(body))
(out / "weight-overflow.json").write_text('{"terms": [{"text": "a", "weight": 1e39}]}')
(out / "nested.json").write_text('{"text": "x", "filter": ' + "[" * 40 + "]" * 40 + "}")
(out / "strings.json").write_text('{"text": "[[[{{{\\"\\\\", "negative": ["]]]}}}"]}')
PY
