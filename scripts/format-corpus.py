#!/usr/bin/env python3
"""Measures imgdb's decoders against Pillow on a corpus of image files.

    OMP_NUM_THREADS=1 .cache/venv-formats/bin/python scripts/format-corpus.py \
        [--imgdb target/debug/imgdb] [--json report.json] DIR...
    .cache/venv-formats/bin/python scripts/format-corpus.py --encode OUT

`--encode OUT` writes a corpus of its own instead: the photos of fixtures/photos/
as HEIC and AVIF (qualities, 4:4:4 chroma, alpha, all eight orientations, which
both writers turn into irot/imir), WebP and PNG with EXIF orientations, and
TIFF in each compression, tiling, planar layout and depth (tifffile, Pillow).

For every file under the folders, the reference is what `make_parity_refs.py`
computes: `ImageOps.exif_transpose(Image.open(file))` with pillow-heif's opener
registered, then transformers' `CLIPImageProcessorPil` with
`fixtures/parity/configs/tiny64.json`, un-normalised to 8-bit levels. imgdb's
side is `imgdb debug preprocess FILE --config tiny64.json`, un-normalised the
same way. A file counts as within parity under the bound of
`tests/preprocess_parity.rs`: max |difference| <= 2 levels, mean <= 0.5.

Per format that imgdb claims (by Pillow's reading of the file, not its name) it
prints how many files Pillow decodes, how many of those imgdb decodes, the
share, and how many are within the bound; then every file that falls short,
with imgdb's message or the difference. Files Pillow cannot decode are not
counted (they are the corpus's invalid ones); files over imgdb's decode limits
(150 megapixels) are listed apart, refused by design. Files Pillow opens as
greyscale deeper than 8 bits (modes I;16*, I) are counted apart too
("deliberate"): Pillow's convert("RGB") clips them to 0..255, almost all white,
where imgdb keeps the high byte (schema/model.md). A TIFF of 3 colour samples
that is off Pillow's reference is read again with tifffile (an independent
reader; 16-bit samples to their high byte, as Pillow means to): when imgdb is
within the bound of tifffile's pixels and Pillow is not, the file counts as
"pillow wrong" (Pillow 13 misreads 16-bit planar RGB). `share+` counts parity
and "pillow wrong" files, the deliberate ones left out. Pillow's libtiff
warnings go to stderr: add 2>/dev/null.

Needs Pillow, pillow-heif, numpy and transformers (no torchvision), as in
scripts/fixtures/requirements.txt, plus `pip install pillow-heif`.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from PIL import Image, ImageOps
import pillow_heif

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "fixtures/parity/configs/tiny64.json")
# Pillow's format name -> the format imgdb files it under.
CLAIMED = {
    "JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp", "GIF": "gif",
    "BMP": "bmp", "DIB": "bmp", "TIFF": "tiff", "HEIF": "heif", "AVIF": "avif",
}
MAX_PIXELS = 150_000_000
CLIPPED_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I")
MAX_MEAN, MAX_ABS = 0.5, 2

Image.MAX_IMAGE_PIXELS = None
warnings.simplefilter("ignore")
pillow_heif.register_heif_opener()


def processor():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    with open(CONFIG) as f:
        proc = CLIPImageProcessorPil.from_dict(json.load(f))
    assert proc.backend == "pil"
    return proc


def to_levels(pixel_values: np.ndarray, proc) -> np.ndarray:
    mean = np.array(proc.image_mean, np.float64).reshape(3, 1, 1)
    std = np.array(proc.image_std, np.float64).reshape(3, 1, 1)
    return (pixel_values.reshape(3, *pixel_values.shape[-2:]).astype(np.float64) * std + mean) * 255


def reference(path: str, proc):
    """(format, mode, size, levels) as Pillow sees the file, or None when it cannot."""
    try:
        with Image.open(path) as raw:
            fmt = raw.format
            if fmt not in CLAIMED:
                return None
            size, mode = raw.size, raw.mode
            if size[0] * size[1] > MAX_PIXELS:
                return CLAIMED[fmt], mode, size, None
            img = ImageOps.exif_transpose(raw)
            img.load()
            px = proc(images=img, return_tensors="np")["pixel_values"]
            return CLAIMED[fmt], mode, size, to_levels(px, proc)
    except Exception:  # noqa: BLE001 - any failure means "Pillow does not decode it"
        return None


def tifffile_levels(path: str, proc):
    """The levels of a 3-sample TIFF as tifffile reads it, or None."""
    try:
        import tifffile
        pixels = tifffile.imread(path)
    except Exception:  # noqa: BLE001 - no second opinion then
        return None
    if pixels.ndim == 3 and pixels.shape[0] == 3 and pixels.shape[-1] != 3:
        pixels = np.moveaxis(pixels, 0, -1)
    if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.dtype not in (np.uint8, np.uint16):
        return None
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    px = proc(images=Image.fromarray(pixels), return_tensors="np")["pixel_values"]
    return to_levels(px, proc)


def within(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two level arrays are within the parity bound."""
    diff = np.abs(a - b)
    # Both sides are whole levels carried through float32 (within 1e-3).
    return float(diff.max()) <= MAX_ABS + 0.01 and float(diff.mean()) <= MAX_MEAN


def ours(path: str, imgdb: str, proc, scratch: str):
    """(levels, None) from imgdb, or (None, its message)."""
    out = os.path.join(scratch, "x.npy")
    run = subprocess.run([imgdb, "debug", "preprocess", path, "--config", CONFIG, "--out", out],
                         capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        lines = (run.stderr.strip() or f"exit {run.returncode}").splitlines()
        return None, " / ".join(lines[-3:])
    return to_levels(np.load(out), proc), None


def encode(out: str):
    """Writes the --encode corpus to `out`."""
    import glob
    import tifffile

    os.makedirs(out, exist_ok=True)
    photos = sorted(glob.glob(os.path.join(ROOT, "fixtures/photos/*.[jp][pn]g")))
    for n, photo in enumerate(photos):
        stem = os.path.splitext(os.path.basename(photo))[0]
        rgb = Image.open(photo).convert("RGB")
        w, h = rgb.size
        ramp = Image.linear_gradient("L").resize((w, h)).rotate(90 * n)
        rgba = rgb.copy()
        rgba.putalpha(ramp)
        path = lambda name: os.path.join(out, f"{stem}_{name}")  # noqa: E731
        for fmt, ext in (("HEIF", "heic"), ("AVIF", "avif")):
            for quality in (30, 75, 95):
                rgb.save(path(f"q{quality}.{ext}"), fmt, quality=quality)
            # Pillow's AVIF writer takes `subsampling` (it ignores `chroma`);
            # pillow-heif's HEIF writer takes `chroma`.
            chroma = {"subsampling": "4:4:4"} if fmt == "AVIF" else {"chroma": "444"}
            rgb.save(path(f"444.{ext}"), fmt, quality=80, **chroma)
            rgba.save(path(f"alpha.{ext}"), fmt, quality=80)
            for orientation in range(2, 9):
                exif = Image.Exif()
                exif[0x0112] = orientation
                rgb.save(path(f"orient{orientation}.{ext}"), fmt, quality=80, exif=exif.tobytes())
        for orientation in range(2, 9):
            exif = Image.Exif()
            exif[0x0112] = orientation
            rgb.save(path(f"orient{orientation}.webp"), "WEBP", quality=85, exif=exif.tobytes())
            rgb.save(path(f"orient{orientation}.png"), "PNG", exif=exif.tobytes())
            rgb.save(path(f"orient{orientation}.tif"), "TIFF", exif=exif.tobytes())
        rgba.save(path("alpha.webp"), "WEBP", quality=85)
        for compression in ("raw", "tiff_lzw", "tiff_adobe_deflate", "packbits", "jpeg"):
            rgb.save(path(f"{compression}.tif"), "TIFF", compression=compression)
        rgb.convert("CMYK").save(path("cmyk_lzw.tif"), "TIFF", compression="tiff_lzw")
        rgb.convert("L").save(path("grey_deflate.tif"), "TIFF", compression="tiff_adobe_deflate")
        rgb.convert("1").save(path("bilevel_g4.tif"), "TIFF", compression="group4")
        rgb.quantize(64).save(path("palette.tif"), "TIFF", compression="tiff_lzw")
        rgba.save(path("rgba_lzw.tif"), "TIFF", compression="tiff_lzw")
        deep = (np.asarray(rgba).astype(np.uint16) * 257) ^ 0x5A  # low bytes unlike high ones
        for alpha in ("unassalpha", "assocalpha"):
            data = deep.copy()
            if alpha == "assocalpha":
                data[..., :3] = (data[..., :3].astype(np.uint32) * data[..., 3:] // 65535).astype(np.uint16)
            for layout, kw in (("strips", {}), ("tiled_planar", {"tile": (32, 32), "planarconfig": "separate"}),
                               ("tiled", {"tile": (32, 32)}), ("planar", {"planarconfig": "separate"})):
                tifffile.imwrite(path(f"rgba16_{alpha}_{layout}.tif"), planes(data, kw), photometric="rgb",
                                 extrasamples=[alpha], compression="zlib", **kw)
        for layout, kw in (("tiled_planar", {"tile": (32, 32), "planarconfig": "separate"}),
                           ("planar", {"planarconfig": "separate"})):
            tifffile.imwrite(path(f"rgb8_{layout}.tif"), planes(np.asarray(rgb), kw), photometric="rgb",
                             compression="zlib", **kw)
            tifffile.imwrite(path(f"rgb16_{layout}.tif"), planes(deep[..., :3], kw), photometric="rgb", **kw)
        tifffile.imwrite(path("grey16.tif"), deep[..., 0], photometric="minisblack")
        rgb.save(path("rgb.bmp"), "BMP")
        rgb.quantize(16).save(path("palette16.bmp"), "BMP")
        rgb.quantize(256).save(path("palette256.bmp"), "BMP")
        rgb.convert("1").save(path("bilevel.bmp"), "BMP")
        rgba.save(path("rgba.bmp"), "BMP")
    print(f"wrote {len(os.listdir(out))} files to {out}")


def planes(data: np.ndarray, kw: dict) -> np.ndarray:
    """tifffile takes separate planes as (samples, height, width)."""
    return np.moveaxis(data, -1, 0) if kw.get("planarconfig") == "separate" else data


def files(folders):
    for folder in folders:
        for dirpath, _, names in os.walk(folder):
            for name in sorted(names):
                yield os.path.join(dirpath, name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*")
    ap.add_argument("--encode", metavar="OUT", help="write the corpus of own encodes to OUT and stop")
    ap.add_argument("--imgdb", default=os.path.join(ROOT, "target/debug/imgdb"))
    ap.add_argument("--json", help="also write every file's result here")
    args = ap.parse_args()
    if args.encode:
        return encode(args.encode)
    proc = processor()
    counts = collections.defaultdict(collections.Counter)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for path in files(args.folders):
            ref = reference(path, proc)
            if ref is None:
                continue
            fmt, mode, size, levels = ref
            row = {"file": path, "format": fmt, "mode": mode, "size": list(size)}
            if levels is None:
                counts[fmt]["over_limits"] += 1
                results.append(row | {"result": "over_limits"})
                continue
            counts[fmt]["pillow"] += 1
            mine, problem = ours(path, args.imgdb, proc, scratch)
            if mine is None:
                results.append(row | {"result": "not_decoded", "why": problem})
                continue
            counts[fmt]["imgdb"] += 1
            diff = np.abs(mine - levels)
            worst, mean = float(diff.max()), float(diff.mean())
            row |= {"max": round(worst, 2), "mean": round(mean, 3)}
            second = tifffile_levels(path, proc) if fmt == "tiff" else None
            if within(mine, levels):
                counts[fmt]["parity"] += 1
                results.append(row | {"result": "parity"})
            elif mode in CLIPPED_MODES:
                counts[fmt]["deliberate"] += 1
                results.append(row | {"result": "deliberate"})
            elif second is not None and within(mine, second) and not within(levels, second):
                counts[fmt]["pillow_wrong"] += 1
                results.append(row | {"result": "pillow_wrong"})
            else:
                results.append(row | {"result": "off_reference"})
    print(f"{'format':<6} {'pillow':>7} {'imgdb':>6} {'share':>7} {'parity':>7} {'share':>7} "
          f"{'deliberate':>10} {'pillow wrong':>12} {'share+':>7} {'>limits':>8}")
    total = collections.Counter()
    for fmt in sorted(counts):
        c = counts[fmt]
        total.update(c)
        print_row(fmt, c)
    print_row("all", total)
    for r in results:
        if r["result"] == "not_decoded":
            print(f"NOT DECODED   {r['file']} ({r['format']}): {r['why']}")
        elif r["result"] == "off_reference":
            print(f"OFF REFERENCE {r['file']} ({r['format']}, {r['mode']}): max {r['max']}, mean {r['mean']}")
        elif r["result"] == "deliberate":
            print(f"DELIBERATE    {r['file']} ({r['format']}, {r['mode']}): max {r['max']}, mean {r['mean']}")
        elif r["result"] == "pillow_wrong":
            print(f"PILLOW WRONG  {r['file']} ({r['format']}, {r['mode']}): imgdb within the bound of "
                  f"tifffile, Pillow off by max {r['max']}, mean {r['mean']}")
        elif r["result"] == "over_limits":
            print(f"OVER LIMITS   {r['file']} ({r['format']}): {r['size'][0]}x{r['size'][1]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"counts": counts, "files": results}, f, indent=1)


def print_row(fmt, c):
    """share+: within the bound of Pillow or, where Pillow misreads, of tifffile; the deliberate
    differences left out of the count."""
    share = lambda n, d=0: f"{100 * n / (c['pillow'] - d):.1f}%" if c["pillow"] > d else "-"  # noqa: E731
    print(f"{fmt:<6} {c['pillow']:>7} {c['imgdb']:>6} {share(c['imgdb']):>7} "
          f"{c['parity']:>7} {share(c['parity']):>7} {c['deliberate']:>10} {c['pillow_wrong']:>12} "
          f"{share(c['parity'] + c['pillow_wrong'], c['deliberate']):>7} {c['over_limits']:>8}")


if __name__ == "__main__":
    sys.exit(main())
