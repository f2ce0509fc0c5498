"""Peer ANN libraries on the data `cargo bench --bench ann -- prepare` wrote.

hnswlib, faiss IndexHNSWFlat and usearch, all with M=16 and
ef_construction=200 and inner product on the same unit vectors; build on 2
threads, search on 1. Appends one JSON object per line to <out>/peers.jsonl,
each naming the data set (`hard` or `clip`, from <out>/data.json). Run
through benches/compare.sh, which installs them into a local venv.
"""
import argparse
import json
import os
import resource
import time

import numpy as np


def recall(found, truth, k=10):
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def report(out, obj):
    line = json.dumps(obj)
    print(line, flush=True)
    with open(os.path.join(out, "peers.jsonl"), "a") as f:
        f.write(line + "\n")


def data_set(out):
    """The set `prepare` drew: `hard` where data.json is missing (written before there was a choice)."""
    try:
        with open(os.path.join(out, "data.json")) as f:
            return json.load(f)["data_set"]
    except FileNotFoundError:
        return "hard"


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_hnswlib(base, queries, efs):
    import hnswlib

    index = hnswlib.Index(space="ip", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=16, ef_construction=200, random_seed=42)
    index.set_num_threads(2)
    started = time.perf_counter()
    index.add_items(base, np.arange(len(base)))
    build = time.perf_counter() - started
    index.set_num_threads(1)

    def search(ef):
        index.set_ef(ef)
        labels, _ = index.knn_query(queries, k=10, num_threads=1)
        return labels

    return build, search, f"hnswlib {hnswlib.__version__ if hasattr(hnswlib, '__version__') else ''}".strip()


def run_faiss(base, queries, efs):
    import faiss

    faiss.omp_set_num_threads(2)
    index = faiss.IndexHNSWFlat(base.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 200
    started = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - started
    faiss.omp_set_num_threads(1)

    def search(ef):
        index.hnsw.efSearch = ef
        _, labels = index.search(queries, 10)
        return labels

    return build, search, f"faiss {faiss.__version__} IndexHNSWFlat"


def run_usearch(base, queries, efs):
    import usearch
    from usearch.index import Index

    index = Index(ndim=base.shape[1], metric="ip", dtype="f32", connectivity=16, expansion_add=200)
    started = time.perf_counter()
    index.add(np.arange(len(base)), base, threads=2)
    build = time.perf_counter() - started

    def search(ef):
        index.expansion_search = ef
        return index.search(queries, 10, threads=1).keys

    return build, search, f"usearch {usearch.__version__}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="target/ann")
    parser.add_argument("--efs", default="10,12,16,20,24,28,32,36,40,44,48,56,64,80,96,128,192,256")
    parser.add_argument("--peers", default="hnswlib,faiss,usearch")
    args = parser.parse_args()
    base = np.load(os.path.join(args.out, "base.npy"))
    queries = np.load(os.path.join(args.out, "queries.npy"))
    truth = np.load(os.path.join(args.out, "truth.npy"))
    efs = [int(e) for e in args.efs.split(",")]
    data = data_set(args.out)
    runners = {"hnswlib": run_hnswlib, "faiss": run_faiss, "usearch": run_usearch}
    for name in args.peers.split(","):
        build, search, version = runners[name](base, queries, efs)
        report(args.out, {"phase": "build", "system": name, "data_set": data, "version": version, "threads": 2,
                          "build_s": build, "build_vectors_per_s": len(base) / build})
        for ef in efs:
            search(ef)  # warm up
            # Three timed passes, the median reported (as imgdb's bench does).
            times = []
            for _ in range(3):
                started = time.perf_counter()
                labels = search(ef)
                times.append(time.perf_counter() - started)
            seconds = sorted(times)[1]
            report(args.out, {"phase": "search", "system": name, "data_set": data, "ef": ef, "threads": 1,
                              "recall_at_10": recall(np.asarray(labels), truth),
                              "qps": len(queries) / seconds})
        report(args.out, {"phase": "done", "system": name, "data_set": data, "peak_rss_mib": peak_rss_mib()})


if __name__ == "__main__":
    main()
