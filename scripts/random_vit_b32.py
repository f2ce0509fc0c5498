"""Export a randomly initialised CLIP ViT-B/32 (transformers' default CLIPConfig:
12-layer ViT-B/32 image tower, 12-layer 512-wide text tower, 512-d embeddings)
to ONNX in the Hugging Face/Xenova layout, for speed figures where real weights
cannot be fetched: the encoder's cost depends on the shapes, not the values.

    python scripts/random_vit_b32.py OUT_DIR

Needs torch, transformers and onnx. The tokenizer files come from the tiny
model (the same CLIP BPE vocabulary); preprocessing is CLIP's at 224 px.
The vectors mean nothing: use it for benchmarks only.
"""

import json
import os
import shutil
import sys

import torch
from transformers import CLIPConfig, CLIPTextModelWithProjection, CLIPVisionModelWithProjection

TINY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models", "tiny-clip")


class Vision(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.model = CLIPVisionModelWithProjection(config.vision_config)

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).image_embeds


class Text(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.model = CLIPTextModelWithProjection(config.text_config)

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).text_embeds


def export(module, args, path, inputs, output, axes):
    with torch.no_grad():
        torch.onnx.export(module.eval(), args, path, input_names=inputs, output_names=[output],
                          dynamic_axes={**axes, output: {0: "batch_size"}}, opset_version=17,
                          dynamo=False, do_constant_folding=True)


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    config = CLIPConfig()
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    export(Vision(config), (torch.zeros(1, 3, 224, 224),), os.path.join(out, "onnx", "vision_model.onnx"),
           ["pixel_values"], "image_embeds", {"pixel_values": {0: "batch_size"}})
    ids = torch.tensor([[49406, 320, 1929, 49407, 49407]])
    export(Text(config), (ids, torch.ones_like(ids)), os.path.join(out, "onnx", "text_model.onnx"),
           ["input_ids", "attention_mask"], "text_embeds",
           {"input_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "sequence_length"}})
    for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        shutil.copy(os.path.join(TINY, name), os.path.join(out, name))
    preprocess = json.load(open(os.path.join(TINY, "preprocessor_config.json")))
    preprocess["size"] = {"shortest_edge": 224}
    preprocess["crop_size"] = {"height": 224, "width": 224}
    json.dump(preprocess, open(os.path.join(out, "preprocessor_config.json"), "w"), indent=2)
    json.dump({**config.to_dict(), "note": "random weights, for benchmarks only"},
              open(os.path.join(out, "config.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
