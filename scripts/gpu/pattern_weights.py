"""Copy a model folder with every large ONNX initializer replaced by its own first values
repeated, so that the folder compresses to a few megabytes and travels to a GPU host that has
no network (scripts/gpu-bundle.sh). Speed depends on the shapes, not on the values; each tensor
keeps its own scale, so activations stay in range and the embeddings stay non-zero. The vectors
mean nothing: benchmarks only.

    python scripts/gpu/pattern_weights.py SRC_MODEL_DIR DST_MODEL_DIR

Only the fp32 towers (`onnx/vision_model.onnx`, `onnx/text_model.onnx`) are copied; make the
variants from them with scripts/fixtures/make_variants.py.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

# A prime number of elements: no row of a weight matrix repeats the row before it.
PERIOD = 4099


def pattern(model: onnx.ModelProto) -> None:
    for init in model.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.size <= PERIOD:
            continue
        flat = values.reshape(-1)
        tiled = np.resize(flat[:PERIOD], flat.size).reshape(values.shape).astype(values.dtype)
        init.CopyFrom(numpy_helper.from_array(tiled, init.name))


def main() -> None:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    (dst / "onnx").mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.is_file():
            shutil.copy(entry, dst / entry.name)
    for tower in ("vision_model", "text_model"):
        model = onnx.load(src / "onnx" / f"{tower}.onnx")
        pattern(model)
        onnx.save(model, dst / "onnx" / f"{tower}.onnx")
        print(f"{dst}/onnx/{tower}.onnx")


if __name__ == "__main__":
    main()
