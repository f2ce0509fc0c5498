#!/usr/bin/env bash
# Decode + preprocess per core: imgdb beside Pillow + CLIPImageProcessor (PIL
# backend), on a 12 MP camera JPEG (made from a real photo Debian ships in
# mate-backgrounds) and small PNGs, in one run. Both sides run on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
work=.cache/preprocess-bench
mkdir -p "$work"
venv=.cache/venv-pillow
if ! "$venv/bin/python" -c "import PIL, transformers" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet pillow==13.0.0 numpy==2.4.6 transformers==5.24.0
fi
if [ ! -f "$work/12mp.jpg" ]; then
  (cd "$work" && apt-get download mate-backgrounds >/dev/null 2>&1 && dpkg -x mate-backgrounds_*.deb deb)
  "$venv/bin/python" - "$work" <<'PY'
import sys
from PIL import Image
work = sys.argv[1]
im = Image.open(f"{work}/deb/usr/share/backgrounds/mate/abstract/Elephants_5640x3172.jpg").convert("RGB")
w, h = im.size
side = h * 4 // 3
im = im.crop(((w - side) // 2, 0, (w - side) // 2 + side, h)).resize((4000, 3000), Image.LANCZOS)
im.save(f"{work}/12mp.jpg", quality=92)
Image.open("fixtures/photos/chelsea.png").convert("RGB").save(f"{work}/photo.png")
Image.open("fixtures/eval/shapes/large_red_circle_on_black/0.png").convert("RGB").save(f"{work}/shape.png")
PY
fi
config=fixtures/parity/configs/clip224.json
images=("$work/12mp.jpg" "$work/photo.png" "$work/shape.png")
OMP_NUM_THREADS=1 taskset -c 0 "$venv/bin/python" benches/pillow_preprocess.py "$config" 10 "${images[@]}"
cargo bench --bench preprocess --no-run --quiet
for image in "${images[@]}"; do
  taskset -c 0 cargo bench --bench preprocess --quiet -- "$image" "$image.ref.png" "$config" 10
done
