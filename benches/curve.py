"""The table of benches/curve.sh: for each size, recall@10 (and one-thread
QPS) of imgdb and hnswlib at each ef, the build rates and memory."""
import json
import os
import sys


def rows_of(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "target/curve"
    sizes = sorted((int(d) for d in os.listdir(out) if d.isdigit()))
    print("| vectors | ef | imgdb recall@10 / QPS (p50 / p99 µs) | hnswlib recall@10 / QPS |")
    print("|---:|---:|---|---|")
    builds = []
    for n in sizes:
        rows = rows_of(os.path.join(out, str(n), "imgdb.jsonl")) + rows_of(os.path.join(out, str(n), "peers.jsonl"))
        search = {(r["system"], r["ef"]): r for r in rows
                  if r.get("phase") == "search" and r.get("threads", 1) == 1}
        for ef in sorted({ef for _, ef in search}):
            cells = []
            for system in ("imgdb", "hnswlib"):
                r = search.get((system, ef))
                cell = f"{r['recall_at_10']:.3f} / {r['qps']:.0f}" if r else "–"
                if r and "p50_us" in r:
                    cell += f" ({r['p50_us']:.0f} / {r['p99_us']:.0f})"
                cells.append(cell)
            print(f"| {n} | {ef} | {cells[0]} | {cells[1]} |")
        phase = {r.get("phase"): r for r in rows if r.get("system", "imgdb") == "imgdb"}
        peer = next((r for r in rows if r.get("phase") == "build" and r.get("system") == "hnswlib"), {})
        peer_done = next((r for r in rows if r.get("phase") == "done" and r.get("system") == "hnswlib"), {})
        builds.append((n, phase.get("prepare", {}), phase.get("reopen", {}), peer, peer_done))
    print()
    print("| vectors | imgdb build, vectors/s (s) | hnswlib build, vectors/s (s) | imgdb/hnswlib | imgdb peak RSS building | hnswlib peak RSS | imgdb reopen, RSS after |")
    print("|---:|---|---|---:|---:|---:|---|")
    for n, prep, reopen, peer, peer_done in builds:
        ours, theirs = prep.get("insert_vectors_per_s"), peer.get("build_vectors_per_s")
        ratio = f"{ours / theirs:.2f}" if ours and theirs else "–"
        print(f"| {n} | {ours or 0:.0f} ({prep.get('insert_s', 0):.0f}) | {theirs or 0:.0f} ({peer.get('build_s', 0):.0f}) "
              f"| {ratio} | {prep.get('peak_rss_mib', 0):.0f} MiB | {peer_done.get('peak_rss_mib', 0):.0f} MiB "
              f"| {reopen.get('reopen_s', 0):.2f} s, {reopen.get('peak_rss_mib_after_reopen', 0):.0f} MiB |")


if __name__ == "__main__":
    main()
