"""Helpers of benches/daemon.sh (standard library and numpy only).

  latency URL SRC DEST N GAP_MS [TOKEN]
      Copies N files of SRC (sorted, every file distinct) into DEST one at a
      time, GAP_MS apart; after each, polls GET /v1/status every 10 ms until
      the indexer has applied it (indexed + linked grew) and prints one JSON
      line with the p50/p90/p99/max of the latencies in ms.
  vectors EXPORT OUT N SEED
      Writes a clip-retrieval layout in OUT of N unit vectors drawn around
      the real vectors of EXPORT (an `imgdb export` of the tiny model's
      space: its manifest is copied, so the import checks the space), noise
      sigma 0.35 per unit vector; the paths are under /imgdb-bench/ (no files).
  distinct SRC DEST N
      Copies files of SRC (round robin) into DEST as N distinct files: each
      copy gets a trailer of its own after the image's end, so its content
      hash differs and the indexer decodes and encodes every one.
  rss PID
      Prints VmRSS and VmHWM of PID in MiB.
  summary OHA_JSON...
      Prints requests/s, p50/p99/p99.9 ms and errors of oha's JSON outputs.
  sample URL FILE SECONDS / busy FILE
      Records GET /v1/status once a second; prints how long the indexer had work.
"""

import json
import shutil
import sys
import time
import urllib.request
from pathlib import Path


def status(url, token):
    request = urllib.request.Request(url + "/v1/status")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.load(r)


def applied(s):
    return s["indexed"] + s["linked"] + s["failed"]


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def latency(url, src, dest, n, gap_ms, token=""):
    files = sorted(p for p in Path(src).rglob("*") if p.is_file())[: int(n)]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    lat = []
    for i, f in enumerate(files):
        before = applied(status(url, token))
        tmp = dest / f".{i}.part"
        shutil.copyfile(f, tmp)
        start = time.monotonic()
        # A rename lands the whole file at once, as a file manager's copy does.
        tmp.rename(dest / f"{i:04}-{f.parent.name}{f.suffix}")
        while applied(status(url, token)) <= before:
            if time.monotonic() - start > 60:
                raise SystemExit(f"file {i} not applied after 60 s")
            time.sleep(0.01)
        lat.append((time.monotonic() - start) * 1000)
        time.sleep(int(gap_ms) / 1000)
    print(json.dumps({
        "files": len(lat),
        "p50_ms": round(percentile(lat, 50), 1),
        "p90_ms": round(percentile(lat, 90), 1),
        "p99_ms": round(percentile(lat, 99), 1),
        "max_ms": round(max(lat), 1),
    }))


def vectors(export, out, n, seed):
    import numpy as np

    export, out, n = Path(export), Path(out), int(n)
    base = np.concatenate([np.load(p) for p in sorted((export / "img_emb").glob("img_emb_*.npy"))])
    rng = np.random.default_rng(int(seed))
    centres = base[rng.integers(0, len(base), n)].astype(np.float32)
    noise = rng.standard_normal(centres.shape).astype(np.float32) * (0.35 / np.sqrt(base.shape[1]))
    v = centres + noise
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    (out / "img_emb").mkdir(parents=True, exist_ok=True)
    (out / "metadata").mkdir(parents=True, exist_ok=True)
    np.save(out / "img_emb" / "img_emb_0.npy", v.astype(np.float32))
    with open(out / "metadata" / "metadata_0.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"image_path": f"/imgdb-bench/{i // 1000:03}/{i:06}.jpg",
                                "byte_size": 50000 + i, "width": 640, "height": 480,
                                "format": "jpeg", "mtime": 1700000000_000000000 + i}) + "\n")
    shutil.copyfile(export / "imgdb_export.json", out / "imgdb_export.json")
    print(f"{n} vectors of dim {v.shape[1]} in {out}")


def distinct(src, dest, n):
    files = sorted(p for p in Path(src).rglob("*") if p.is_file())
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(int(n)):
        f = files[i % len(files)]
        tmp = dest / f".{i}.part"
        tmp.write_bytes(f.read_bytes() + b"imgdb-bench-%08d" % i)
        tmp.rename(dest / f"{i:05}{f.suffix}")


def rss(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    print(json.dumps(fields))


def summary(*paths):
    for path in paths:
        s = json.load(open(path))
        lat = s.get("latencyPercentiles", {})
        codes = s.get("statusCodeDistribution", {})
        # Requests still in flight when `-z` ends are oha's, not the server's.
        cut = s.get("errorDistribution", {}).get("aborted due to deadline", 0)
        errors = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(
            s.get("errorDistribution", {}).values()) - cut
        print(json.dumps({
            "run": Path(path).stem,
            "requests_per_s": round(s["summary"]["requestsPerSec"], 1),
            "p50_ms": round(lat.get("p50", 0) * 1000, 2),
            "p99_ms": round(lat.get("p99", 0) * 1000, 2),
            "p99.9_ms": round(lat.get("p99.9", 0) * 1000, 2),
            "status": codes,
            "errors": errors,
            "cut_at_deadline": cut,
        }))


def sample(url, path, seconds):
    """Writes GET /v1/status once a second for SECONDS (queued, indexing, indexed)."""
    start = time.monotonic()
    with open(path, "w") as f:
        while time.monotonic() - start < float(seconds):
            s = status(url, "")
            f.write(json.dumps({"t": round(time.monotonic() - start, 1), "queued": s["queued"],
                                "indexing": s["indexing"], "indexed": s["indexed"]}) + "\n")
            f.flush()
            time.sleep(1)


def busy(path):
    """Prints for how many seconds of a `sample` file the indexer had work."""
    rows = [json.loads(line) for line in open(path)]
    active = [r["t"] for r in rows if r["indexing"] or r["queued"]]
    print(json.dumps({"samples": len(rows), "indexer_busy_s": active[-1] if active else 0,
                      "indexed_during_run": rows[-1]["indexed"] - rows[0]["indexed"]}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"latency": latency, "vectors": vectors, "distinct": distinct, "rss": rss,
     "summary": summary, "sample": sample, "busy": busy}[command](*args)
