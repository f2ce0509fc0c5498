"""Prints the side-by-side table of benches/compare.sh and the summary lines
`imgdb/<peer> QPS at recall@10>=0.95: R` and `imgdb/hnswlib build rate: R`."""
import json
import os
import sys

TARGET = 0.95


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def best_qps(rows, system):
    ok = [r for r in rows if r.get("phase") == "search" and r["system"] == system and r["recall_at_10"] >= TARGET]
    return max(ok, key=lambda r: r["qps"]) if ok else None


def build_rates(rows):
    """The build-rate lines: `Db::insert` (prepare) and the bulk rebuild, each over hnswlib's."""
    theirs = next((r for r in rows if r.get("phase") == "build" and r.get("system") == "hnswlib"), None)
    ours = [("imgdb", "prepare", "insert_vectors_per_s"), ("imgdb-rebuilt", "rebuild", "build_vectors_per_s")]
    for system, phase, key in ours:
        r = next((r for r in rows if r.get("phase") == phase), None)
        if r and theirs:
            print(f"{system}/hnswlib build rate: {r[key] / theirs['build_vectors_per_s']:.2f} "
                  f"({system} {r[key]:.0f} vectors/s, hnswlib {theirs['build_vectors_per_s']:.0f})")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "target/ann"
    rows = load(os.path.join(out, "imgdb.jsonl")) + load(os.path.join(out, "peers.jsonl"))
    systems = [s for s in ("imgdb", "imgdb-rebuilt", "hnswlib", "faiss", "usearch") if any(r.get("system") == s for r in rows)]
    print(f"\n{'ef':>5} " + " ".join(f"{s + ' recall':>20} {s + ' QPS':>17}" for s in systems))
    efs = sorted({r["ef"] for r in rows if r.get("phase") == "search"})
    for ef in efs:
        cells = []
        for s in systems:
            r = next((r for r in rows if r.get("phase") == "search" and r["system"] == s and r["ef"] == ef), None)
            cells.append(f"{r['recall_at_10']:>20.4f} {r['qps']:>17.0f}" if r else f"{'-':>20} {'-':>17}")
        print(f"{ef:>5} " + " ".join(cells))
    print()
    for r in rows:
        if r.get("phase") in ("prepare", "reopen", "rebuild", "build", "done", "search-done"):
            print(json.dumps(r))
    print()
    ours = best_qps(rows, "imgdb")
    for peer in [s for s in systems if not s.startswith("imgdb")]:
        theirs = best_qps(rows, peer)
        if ours and theirs:
            print(f"imgdb/{peer} QPS at recall@10>={TARGET}: {ours['qps'] / theirs['qps']:.2f} "
                  f"(imgdb {ours['qps']:.0f} at ef {ours['ef']}, {peer} {theirs['qps']:.0f} at ef {theirs['ef']})")
        else:
            print(f"imgdb/{peer} QPS at recall@10>={TARGET}: n/a (a system never reached the target)")
    build_rates(rows)


if __name__ == "__main__":
    main()
