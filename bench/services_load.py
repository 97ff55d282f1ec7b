"""Load on the team's MLflow server: W processes each log N metric points (one request per point,
the worst case: the pipeline's own logging sends batches), while R processes register model
versions of one registered model at once. Checks that every point and version arrived.

    make services && source .services/env
    python bench/services_load.py                      # 4 x 1,000 points, 2 x 5 versions
    python bench/services_load.py --loggers 8 --points 500 --tracking-uri http://host:5000

Prints the figures, then one JSON line (tests/test_services.py reads it).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import tempfile
import time
import uuid
from pathlib import Path

log = logging.getLogger("bench.services_load")


def log_points(uri: str, experiment_id: str, worker: int, points: int, start: mp.Event) -> dict:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.create_run(experiment_id, run_name=f"load-{worker}")
    start.wait()
    began = time.perf_counter()
    errors = 0
    for step in range(points):
        try:
            client.log_metric(run.info.run_id, "load", float(step), step=step)
        except MlflowException:  # the figure is how many failed (after the client's retries)
            errors += 1
    seconds = time.perf_counter() - began
    client.set_terminated(run.info.run_id)
    return {"run_id": run.info.run_id, "seconds": seconds, "errors": errors}


def register(uri: str, experiment_id: str, model: str, worker: int, versions: int,
             start: mp.Event) -> dict:  # fmt: skip
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    run = client.create_run(experiment_id, run_name=f"register-{worker}")
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "model" / "weights.bin"
        weights.parent.mkdir()
        weights.write_bytes(os.urandom(64 * 1024))
        client.log_artifacts(run.info.run_id, str(weights.parent), "model")
    start.wait()
    began = time.perf_counter()
    made, errors = [], 0
    for _ in range(versions):
        try:
            version = client.create_model_version(
                model, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
            )
            made.append(version.version)
        except MlflowException:  # counted and reported
            errors += 1
    client.set_terminated(run.info.run_id)
    return {"versions": made, "seconds": time.perf_counter() - began, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--loggers", type=int, default=4)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--registrars", type=int, default=2)
    parser.add_argument("--versions", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.tracking_uri or not args.tracking_uri.startswith("http"):
        parser.error("needs the server: --tracking-uri http://... or MLFLOW_TRACKING_URI")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(args.tracking_uri, registry_uri=args.tracking_uri)
    tag = uuid.uuid4().hex[:8]
    experiment_id = client.create_experiment(f"load-{tag}")
    model = f"load-{tag}"
    client.create_registered_model(model)

    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(args.loggers + args.registrars) as pool:
        start = manager.Event()
        loggers = [
            pool.apply_async(log_points, (args.tracking_uri, experiment_id, w, args.points, start))
            for w in range(args.loggers)
        ]
        registrars = [
            pool.apply_async(
                register, (args.tracking_uri, experiment_id, model, w, args.versions, start)
            )
            for w in range(args.registrars)
        ]
        time.sleep(1.0)
        began = time.perf_counter()
        start.set()
        logged = [r.get(timeout=600) for r in loggers]
        registered = [r.get(timeout=600) for r in registrars]
        wall = time.perf_counter() - began

    present = sum(len(client.get_metric_history(r["run_id"], "load")) for r in logged)
    versions = sorted(
        int(v.version) for v in client.search_model_versions(f"name='{model}'", max_results=1000)
    )
    expected_points = args.loggers * args.points
    expected_versions = args.registrars * args.versions
    result = {
        "loggers": args.loggers,
        "points_per_logger": args.points,
        "registrars": args.registrars,
        "versions_per_registrar": args.versions,
        "points_expected": expected_points,
        "points_present": present,
        "versions_expected": expected_versions,
        "versions_present": len(versions),
        "versions_distinct": versions == list(range(1, expected_versions + 1)),
        "errors": sum(r["errors"] for r in logged + registered),
        "wall_s": round(wall, 2),
        "points_per_s": round(expected_points / wall, 1),
        "point_latency_ms": round(1000 * max(r["seconds"] for r in logged) / args.points, 2),
        "registration_s": round(max(r["seconds"] for r in registered) / args.versions, 3),
        "experiment": f"load-{tag}",
    }
    log.info(
        "%d processes x %d metric points + %d x %d model versions in %.1f s: %.0f points/s "
        "(%.1f ms a point per process), %.2f s a version; present: %d/%d points, %d/%d versions; "
        "%d errors",
        args.loggers, args.points, args.registrars, args.versions, wall, result["points_per_s"],
        result["point_latency_ms"], result["registration_s"], present, expected_points,
        len(versions), expected_versions, result["errors"],
    )  # fmt: skip
    print(json.dumps(result))  # noqa: T201


if __name__ == "__main__":
    main()
