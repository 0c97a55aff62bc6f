"""Peers of `examples/bench_vector.rs`: LanceDB IVF_PQ and FAISS IVF-PQ / HNSW on the vectors
and queries the benchmark exported (f32, the table's scan order), recall@k against the exact
answers it computed, p50/p99 latency without and with a one-tenant filter, build time, index
bytes. Prints one JSON object on stdout; progress on stderr.

    python bench_vector_peers.py EXPORT_DIR

Needs numpy, faiss-cpu and lancedb (not in the test venv: a benchmark-only environment).
"""

import json
import os
import sys
import tempfile
import time

import numpy as np


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def pct(ms, p):
    ms = sorted(ms)
    return ms[int(round((len(ms) - 1) * p))] if ms else float("nan")


def recall(got, want):
    if not want:
        return 1.0
    got = set(int(x) for x in got)
    return sum(1 for w in want if w in got) / len(want)


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def main():
    export = sys.argv[1]
    meta = json.load(open(os.path.join(export, "meta.json")))
    n, dim, k = meta["rows"], meta["dim"], meta["k"]
    vectors = np.memmap(os.path.join(export, "vectors.f32"), dtype="<f4", mode="r", shape=(n, dim))
    queries = np.fromfile(os.path.join(export, "queries.f32"), dtype="<f4").reshape(-1, dim)
    tenants = np.array(json.load(open(os.path.join(export, "tenants.json"))))
    qt = meta["query_tenants"]
    truth, truth_t = meta["truth"], meta["truth_tenant"]
    results, builds = [], []
    # Cosine: normalise once (the sample vectors are unit length already, up to f32 rounding).
    x = np.array(vectors, dtype="float32")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1
    x /= norms
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    lists = max(16, int(round(n ** 0.5)))
    by_tenant = {t: np.nonzero(tenants == t)[0] for t in set(qt)}

    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    # FAISS IVF-PQ: 64 sub-quantizers × 8 bits (64 bytes a vector), re-ranked from the full
    # vectors (IndexRefineFlat), inner product on normalised vectors.
    for m in (64,):
        t0 = time.perf_counter()
        quant = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFPQ(quant, dim, lists, m, 8, faiss.METRIC_INNER_PRODUCT)
        train = x[np.linspace(0, n - 1, min(n, lists * 40)).astype(int)]
        ivf.train(train)
        ivf.add(x)
        build_s = time.perf_counter() - t0
        code_bytes = ivf.sa_code_size() * n + lists * dim * 4
        builds.append({"system": f"faiss IVF{lists},PQ{m}", "build_s": build_s,
                       "rows_per_s": n / build_s, "index_bytes": code_bytes})
        log(f"faiss IVF-PQ built in {build_s:.1f}s")
        refine = faiss.IndexRefineFlat(ivf, faiss.swig_ptr(x))
        for nprobe in (8, 16, 32, 64):
            for kf in (4, 16):
                ivf.nprobe = nprobe
                refine.k_factor = kf
                times, rec = [], 0.0
                for i in range(len(q)):
                    t = time.perf_counter()
                    _, ids = refine.search(q[i:i + 1], k)
                    times.append((time.perf_counter() - t) * 1e3)
                    rec += recall(ids[0], truth[i])
                times_t, rec_t = [], 0.0
                for i in range(len(q)):
                    sel = faiss.IDSelectorBatch(by_tenant[qt[i]])
                    params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
                    t = time.perf_counter()
                    _, ids = ivf.search(q[i:i + 1], k * kf, params=params)
                    cand = ids[0][ids[0] >= 0]
                    if len(cand):
                        scores = x[cand] @ q[i]
                        ids_t = cand[np.argsort(-scores)[:k]]
                    else:
                        ids_t = []
                    times_t.append((time.perf_counter() - t) * 1e3)
                    rec_t += recall(ids_t, truth_t[i])
                results.append({"system": "faiss IVF-PQ", "setting": f"nprobe {nprobe} refine {kf}",
                                "recall": rec / len(q), "p50_ms": pct(times, .5), "p99_ms": pct(times, .99),
                                "tenant_recall": rec_t / len(q), "tenant_p50_ms": pct(times_t, .5),
                                "tenant_p99_ms": pct(times_t, .99)})
        del refine, ivf

    # FAISS HNSW (flat vectors + graph), M = 32.
    if os.environ.get("BENCH_VECTOR_HNSW", "1") == "1":
        t0 = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 64
        hnsw.add(x)
        build_s = time.perf_counter() - t0
        builds.append({"system": "faiss HNSW32", "build_s": build_s, "rows_per_s": n / build_s,
                       "index_bytes": n * dim * 4 + n * 32 * 2 * 4})
        log(f"faiss HNSW built in {build_s:.1f}s")
        for ef in (32, 64, 128):
            hnsw.hnsw.efSearch = ef
            times, rec = [], 0.0
            for i in range(len(q)):
                t = time.perf_counter()
                _, ids = hnsw.search(q[i:i + 1], k)
                times.append((time.perf_counter() - t) * 1e3)
                rec += recall(ids[0], truth[i])
            results.append({"system": "faiss HNSW", "setting": f"efSearch {ef}", "recall": rec / len(q),
                            "p50_ms": pct(times, .5), "p99_ms": pct(times, .99)})
        del hnsw

    # LanceDB IVF_PQ with a tenant column (prefilter), cosine.
    import lancedb
    import pyarrow as pa

    with tempfile.TemporaryDirectory() as d:
        db = lancedb.connect(d)
        t0 = time.perf_counter()
        step = 100_000

        def batches():
            for s in range(0, n, step):
                e = min(n, s + step)
                yield pa.record_batch([
                    pa.array(np.arange(s, e)),
                    pa.array(tenants[s:e]),
                    pa.FixedSizeListArray.from_arrays(pa.array(x[s:e].reshape(-1)), dim),
                ], names=["id", "tenant", "vector"])

        schema = pa.schema([("id", pa.int64()), ("tenant", pa.string()),
                            ("vector", pa.list_(pa.float32(), dim))])
        tbl = db.create_table("v", data=pa.RecordBatchReader.from_batches(schema, batches()))
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        tbl.create_index(metric="cosine", vector_column_name="vector", index_type="IVF_PQ",
                         num_partitions=lists, num_sub_vectors=64)
        build_s = time.perf_counter() - t0
        index_dir = os.path.join(d, "v.lance", "_indices")
        builds.append({"system": f"lancedb IVF_PQ {lists} partitions, 64 sub-vectors",
                       "build_s": build_s, "rows_per_s": n / build_s, "load_s": load_s,
                       "index_bytes": dir_bytes(index_dir)})
        log(f"lancedb IVF_PQ built in {build_s:.1f}s")
        for nprobes in (8, 16, 32, 64):
            for rf in (4, 16, 64):
                times, rec, times_t, rec_t = [], 0.0, [], 0.0
                for i in range(len(q)):
                    t = time.perf_counter()
                    res = (tbl.search(q[i]).metric("cosine").nprobes(nprobes).refine_factor(rf)
                           .limit(k).select(["id", "_distance"]).to_arrow())
                    times.append((time.perf_counter() - t) * 1e3)
                    rec += recall(res["id"].to_pylist(), truth[i])
                    t = time.perf_counter()
                    res = (tbl.search(q[i]).metric("cosine").nprobes(nprobes).refine_factor(rf)
                           .where(f"tenant = '{qt[i]}'", prefilter=True).limit(k).select(["id", "_distance"]).to_arrow())
                    times_t.append((time.perf_counter() - t) * 1e3)
                    rec_t += recall(res["id"].to_pylist(), truth_t[i])
                results.append({"system": "lancedb IVF_PQ", "setting": f"nprobes {nprobes} refine {rf}",
                                "recall": rec / len(q), "p50_ms": pct(times, .5), "p99_ms": pct(times, .99),
                                "tenant_recall": rec_t / len(q), "tenant_p50_ms": pct(times_t, .5),
                                "tenant_p99_ms": pct(times_t, .99)})
    json.dump({"results": results, "builds": builds}, sys.stdout)


if __name__ == "__main__":
    main()
