"""Prints the side-by-side table of benches/compare.sh and the summary lines
`imgdb/<peer> QPS at recall@10>=0.95: R`, `imgdb/hnswlib build rate: R` and
`imgdb 2-thread/1-thread QPS: R`. Peers search on one thread, so the
comparisons take imgdb's one-thread rows; its other thread counts get
columns of their own."""
import json
import os
import sys

TARGET = 0.95


def load(path):
    # No peers.jsonl: imgdb's phases run alone (no peers' venv), summed up alone.
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def searches(rows, system, threads=1):
    # Lines from before the thread sweep have no "threads": they were on one.
    return [r for r in rows if r.get("phase") == "search" and r["system"] == system
            and r.get("threads", 1) == threads]


def best_qps(rows, system):
    ok = [r for r in searches(rows, system) if r["recall_at_10"] >= TARGET]
    return max(ok, key=lambda r: r["qps"]) if ok else None


def thread_scaling(rows, threads=2):
    """The `imgdb N-thread/1-thread QPS` line, at the least ef whose one-thread recall reaches the target."""
    label = f"imgdb {threads}-thread/1-thread QPS"
    one = sorted((r for r in searches(rows, "imgdb") if r["recall_at_10"] >= TARGET), key=lambda r: r["ef"])
    if not one:
        print(f"{label}: n/a (imgdb never reached recall@10>={TARGET})")
        return
    many = next((r for r in searches(rows, "imgdb", threads) if r["ef"] == one[0]["ef"]), None)
    if not many:
        print(f"{label}: n/a (no {threads}-thread search at ef {one[0]['ef']})")
        return
    print(f"{label}: {many['qps'] / one[0]['qps']:.2f} "
          f"(at ef {one[0]['ef']}: {many['qps']:.0f} vs {one[0]['qps']:.0f})")


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
    # (label, system, threads) per column: one-thread figures, then imgdb's others.
    more = sorted({r.get("threads", 1) for r in rows if r.get("phase") == "search" and r["system"] == "imgdb"} - {1})
    columns = [(s, s, 1) for s in systems] + [(f"imgdb {t}t", "imgdb", t) for t in more]
    data = next((r.get("data_set", "hard") for r in rows if r.get("phase") == "prepare"), "?")
    print(f"\ndata set: {data}")
    print(f"{'ef':>5} " + " ".join(f"{label + ' recall':>20} {label + ' QPS':>17}" for label, _, _ in columns))
    efs = sorted({r["ef"] for r in rows if r.get("phase") == "search"})
    for ef in efs:
        cells = []
        for _, s, t in columns:
            r = next((r for r in searches(rows, s, t) if r["ef"] == ef), None)
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
    thread_scaling(rows)


if __name__ == "__main__":
    main()
