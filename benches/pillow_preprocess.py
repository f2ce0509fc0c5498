"""Pillow + transformers' CLIPImageProcessor (PIL backend) on the images
benches/compare_preprocess.sh gives: milliseconds per image on one core,
full decode and, for JPEGs, Pillow's DCT-scaled `draft` mode; writes the
full-decode result (after resize and crop, before normalisation) as the
reference PNG the Rust bench compares with."""
import json
import sys
import time

import numpy as np
from PIL import Image
from transformers import CLIPImageProcessorPil


def main():
    config_path, repeats, *images = sys.argv[1:]
    repeats = int(repeats)
    config = json.load(open(config_path))
    processor = CLIPImageProcessorPil(
        **{k: v for k, v in config.items() if k not in ("feature_extractor_type", "image_processor_type")}
    )
    mean = np.array(config["image_mean"]).reshape(3, 1, 1)
    std = np.array(config["image_std"]).reshape(3, 1, 1)
    for path in images:
        modes = ["full"] + (["draft"] if path.lower().endswith((".jpg", ".jpeg")) else [])
        for mode in modes:
            started = time.perf_counter()
            for _ in range(repeats):
                image = Image.open(path)
                if mode == "draft":
                    side = config["crop_size"]["height"] if isinstance(config["crop_size"], dict) else config["crop_size"]
                    image.draft("RGB", (2 * side, 2 * side))
                pixels = processor(images=image.convert("RGB"), return_tensors="np")["pixel_values"][0]
            ms = (time.perf_counter() - started) * 1000 / repeats
            u8 = np.round((pixels * std + mean) * 255).astype(np.uint8).transpose(1, 2, 0)
            if mode == "full":
                Image.fromarray(u8).save(path + ".ref.png")
                print(json.dumps({"system": "pillow", "image": path, "mode": mode, "ms_per_image": ms,
                                  "images_per_s": 1000 / ms}))
            else:
                full = np.asarray(Image.open(path + ".ref.png")).astype(int)
                diff = np.abs(full - u8.astype(int))
                print(json.dumps({"system": "pillow", "image": path, "mode": mode, "ms_per_image": ms,
                                  "images_per_s": 1000 / ms, "max_diff": int(diff.max()),
                                  "mean_diff": float(diff.mean())}))


if __name__ == "__main__":
    main()
