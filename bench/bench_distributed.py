"""Training on a Dask cluster: overhead against one machine, and an estimate at scale.

``python bench/bench_distributed.py [--quick]`` prints

1. the time of one sparse-autoencoder cost+grad at the audio shape
   (512 visible, 256 hidden, 50,000 windows) with the single-machine Numba
   kernel on all cores, and with :mod:`fastsae.distributed` on a local
   cluster of 2 worker processes x 1 thread (same cores, data split in 2
   persisted shards), float32 and float64;
2. the fixed overhead of one distributed evaluation, on a tiny shape;
3. the per-shard kernel alone (one thread): the per-core throughput that
   the estimate uses, and its cost against the 5-GEMM single-machine kernel
   (the one-round-trip statistics need a 6th GEMM);
4. a paper estimate of one iteration on 100 million windows and 32 workers.

``pytest bench/bench_distributed.py`` runs a pytest-benchmark of the tiny
distributed evaluation.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np

from fastsae import init_params
from fastsae.core.threads import numba_threads
from fastsae.benchmarks._util import machine_summary, print_table, timeit
from fastsae.kernels import clear_workspace
from fastsae.kernels import sae as numba_sae
from fastsae.kernels import sae_stats as numba_stats

HYPER = dict(sparsity=0.01, beta=3.0, weight_decay=1e-4)
AUDIO = (512, 256, 50_000)
TINY = (64, 25, 1_000)


def make_shard(i, rows, cols, dtype):
    """Shard ``i`` of the benchmark data (made where it is needed: on a worker)."""
    return np.random.default_rng(1000 + i).uniform(0.0, 1.0, (rows, cols)).astype(dtype)


def start_cluster(n_workers=2):
    import cloudpickle
    from dask.distributed import Client, LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    return cluster, Client(cluster)


def dask_data(client, v, m, n_shards, dtype):
    import dask
    import dask.array as da

    rows = m // n_shards
    X = da.concatenate([da.from_delayed(dask.delayed(make_shard)(i, rows, v, dtype), (rows, v),
                                        dtype=dtype) for i in range(n_shards)])
    X = client.persist(X)
    from distributed import wait
    wait(X)
    return X


def local_data(v, m, n_shards, dtype):
    rows = m // n_shards
    return np.concatenate([make_shard(i, rows, v, dtype) for i in range(n_shards)])


def time_local(v, h, m, n_shards, dtype, threads, repeat):
    X = local_data(v, m, n_shards, dtype)
    theta = init_params(v, h, random_state=0)
    with numba_threads(threads):
        med, _ = timeit(lambda: numba_sae.sae_cost_grad(theta, X, v, h, **HYPER), repeat=repeat)
    return med


def time_distributed(client, v, h, m, n_shards, dtype, repeat):
    """Median seconds per evaluation; then, over ``repeat`` more evaluations, the mean
    seconds per evaluation and the busiest worker's compute seconds per evaluation (from
    Dask's task stream), whose difference is what distribution adds."""
    from collections import defaultdict

    from distributed import get_task_stream

    from fastsae import distributed

    X = dask_data(client, v, m, n_shards, dtype)
    theta = init_params(v, h, random_state=0)
    f = distributed.sae_objective(client, X, v, h, **HYPER, n_jobs=1)
    med, _ = timeit(lambda: f(theta), repeat=repeat, warmup=2)
    busy = defaultdict(float)
    with get_task_stream(client) as ts:
        t0 = time.perf_counter()
        for _ in range(repeat):
            f(theta)
        wall = (time.perf_counter() - t0) / repeat
    for rec in ts.data:
        for ss in rec.get("startstops", ()):
            if ss["action"] == "compute":
                busy[rec["worker"]] += ss["stop"] - ss["start"]
    f.close()
    del X
    return med, wall, max(busy.values()) / repeat


def time_shard_kernels(v, h, rows, dtype, repeat):
    """One thread: (stats kernel, single-machine kernel) seconds on ``rows`` rows."""
    X = make_shard(0, rows, v, dtype)
    theta = init_params(v, h, random_state=0)
    with numba_threads(1):
        t_stats, _ = timeit(lambda: numba_stats.sae_shard_stats(theta, X, v, h), repeat=repeat)
        t_sae, _ = timeit(lambda: numba_sae.sae_cost_grad(theta, X, v, h, **HYPER),
                          repeat=repeat)
    clear_workspace()
    return t_stats, t_sae


def paper_estimate(rate_per_core, v=512, h=256, n_windows=100e6, n_workers=32,
                   cores_per_worker=16, efficiency=0.8, bandwidth=1.25e9, latency=2e-3,
                   split_every=8):
    """Seconds per iteration on a cluster, from a measured per-core rate (windows/s).

    Assumptions (printed with the result): each worker holds
    ``n_windows / n_workers`` windows (in RAM, persisted) and runs the shard
    kernel on ``cores_per_worker`` cores at ``efficiency`` of linear scaling;
    the network moves ``bandwidth`` bytes/s per link (10 Gb/s); each hop of
    the scheduler protocol costs ``latency``; theta is scattered to one
    worker and, at worst, every other worker fetches its copy from that one
    over its single link (Dask picks any holder, so this is an upper bound); the statistics
    are summed by a ``split_every``-ary tree whose every node receives
    ``split_every - 1`` vectors over one link; only (cost, grad) returns.
    """
    n_params = 2 * v * h + v + h
    theta_bytes = 8 * n_params
    stats_bytes = 8 * (3 * v * h + 3 * h + v + 2)
    per_worker = n_windows / n_workers
    compute = per_worker / (rate_per_core * cores_per_worker * efficiency)
    broadcast = n_workers * theta_bytes / bandwidth
    depth = int(np.ceil(np.log(n_workers) / np.log(split_every)))
    reduce_ = depth * ((split_every - 1) * stats_bytes / bandwidth + latency)
    back = theta_bytes / bandwidth + latency
    total = compute + broadcast + latency + reduce_ + back
    return dict(per_worker=per_worker, compute=compute, broadcast=broadcast, depth=depth,
                reduce=reduce_, back=back, total=total, theta_mb=theta_bytes / 1e6,
                stats_mb=stats_bytes / 1e6,
                ram_gb_f32=per_worker * v * 4 / 1e9)


def main(quick=False):
    print(machine_summary())
    v, h, m = AUDIO
    if quick:
        m //= 10
    repeat = 3 if quick else 5
    dtypes = (np.float32, np.float64)

    rows = []
    cluster, client = start_cluster()
    try:
        cases = [(v, h, m, dt, repeat) for dt in dtypes] + [TINY + (np.float64, 20)]
        for cv, ch, cm, dt, rep in cases:
            t_loc = time_local(cv, ch, cm, 2, dt, None, rep)
            t_dist, t_wall, t_busy = time_distributed(client, cv, ch, cm, 2, dt, rep)
            rows.append((f"{cv}x{ch}, {cm:,} rows", np.dtype(dt).name, f"{t_loc * 1e3:.2f}",
                         f"{t_dist * 1e3:.2f}", f"{t_dist / t_loc:.2f}", f"{t_busy * 1e3:.2f}",
                         f"{(t_wall - t_busy) * 1e3:.2f}"))
    finally:
        client.close()
        cluster.close()
    print_table("one cost+grad: single-machine Numba (all cores) vs distributed "
                "(2 workers x 1 thread, 2 shards, same machine)",
                ["shape", "dtype", "local ms", "distributed ms", "ratio",
                 "busiest worker compute ms", "overhead ms"], rows)
    print("overhead = mean wall time - the busiest worker's task compute time, over the same "
          "evaluations (scatter, scheduling, transfers, the root sum)")

    shard_rows = m // 2
    krows, rates = [], {}
    for dt in dtypes:
        t_stats, t_sae = time_shard_kernels(v, h, shard_rows, dt, repeat)
        rates[np.dtype(dt).name] = shard_rows / t_stats
        krows.append((np.dtype(dt).name, f"{t_stats * 1e3:.1f}", f"{t_sae * 1e3:.1f}",
                      f"{t_stats / t_sae:.2f}", f"{shard_rows / t_stats:,.0f}",
                      f"{12.0 * shard_rows * v * h / t_stats / 1e9:.1f}"))
    print_table(f"one shard of {shard_rows:,} rows on 1 thread: statistics kernel (6 GEMMs) "
                "vs single-machine kernel (5 GEMMs)",
                ["dtype", "stats ms", "sae ms", "ratio", "windows/s/core", "GFLOP/s"], krows)

    for name, rate in rates.items():
        est = paper_estimate(rate)
        print(f"\npaper estimate, {name}: 100M windows of 512 values, 256 hidden, 32 workers x "
              f"16 cores at 80% of linear scaling of the measured {rate:,.0f} windows/s/core, "
              f"10 Gb/s links, 2 ms per scheduler hop, 8-ary tree")
        print(f"  per worker {est['per_worker']:,.0f} windows ({est['ram_gb_f32']:.1f} GB "
              f"float32, twice in float64); theta {est['theta_mb']:.2f} MB, shard statistics "
              f"{est['stats_mb']:.2f} MB")
        print(f"  compute {est['compute']:.2f} s + theta to workers {est['broadcast'] * 1e3:.0f} ms + "
              f"reduction ({est['depth']} levels) {est['reduce'] * 1e3:.0f} ms + result "
              f"{est['back'] * 1e3:.0f} ms = {est['total']:.2f} s per evaluation "
              f"(communication {100 * (est['total'] - est['compute']) / est['total']:.1f}%)")


def test_bench_distributed_tiny(benchmark):
    import pytest

    pytest.importorskip("distributed")
    from fastsae import distributed

    cluster, client = start_cluster()
    try:
        v, h, m = TINY
        X = dask_data(client, v, m, 2, np.float64)
        f = distributed.sae_objective(client, X, v, h, **HYPER, n_jobs=1)
        theta = init_params(v, h, random_state=0)
        f(theta)
        benchmark(f, theta)
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the rows")
    main(parser.parse_args().quick)
