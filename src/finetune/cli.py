"""``finetune`` command line: retrain, promote, register, predict, explain, monitor, tune, aliases,
services.

Exit codes: 0 success (also "no new data" and "gate kept the champion"), 1 failure (the
champion is unchanged; for monitor: bad input), 2 bad usage, 3 monitor flagged drift or a
performance drop, 75 another retrain, promote or registration holds the registry lock (nothing
was done).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from finetune.core.runner import configure_logging, report_failure
from finetune.core.schema import PipelineConfig, PromotionConfig

log = logging.getLogger("finetune")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _load_cfg(repo: str | None, tracking: bool = True) -> tuple[Path, PipelineConfig]:
    """The repository's params.yaml, validated; with ``tracking`` the store checked too."""
    from finetune.core.config import find_repo_root, load_config
    from finetune.core.store import check_tracking

    root = find_repo_root(repo)
    os.chdir(root)  # every path in params.yaml is relative to the repository root
    cfg = load_config(root)
    if tracking:
        check_tracking(cfg.tracking)
    return root, cfg


def _gate_spec(cfg: PipelineConfig, args: argparse.Namespace) -> PromotionConfig:
    """``promotion`` with the command line's margins, checked like the config."""
    from pydantic import ValidationError

    from finetune.core.errors import ConfigError

    promotion = cfg.promotion.model_dump()
    if args.min_f1_gain is not None:
        promotion["min_f1_gain"] = args.min_f1_gain
    if args.max_recall_drop is not None:
        promotion["max_recall_drop"] = args.max_recall_drop
    try:
        return PromotionConfig.model_validate(promotion)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ConfigError(f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}") from exc


def cmd_retrain(args: argparse.Namespace) -> int:
    from finetune.lifecycle.retrain import retrain
    from finetune.registry.lock import EXIT_LOCKED, RegistryLocked

    root, cfg = _load_cfg(args.repo)
    spec = cfg.retrain
    if args.wait is not None:
        spec = spec.model_copy(update={"lock_timeout_s": max(0.0, float(args.wait))})
    if args.push:
        spec = spec.model_copy(update={"push": True})
    if args.when:
        spec = spec.model_copy(update={"when": args.when})
    try:
        result = retrain(root, cfg, spec, _gate_spec(cfg, args))
    except RegistryLocked as exc:
        log.warning("%s", exc)
        return EXIT_LOCKED
    summary = {
        "no-new-data": "no new data: nothing to do",
        "no-trigger": "no new data and no unhandled drift verdict: nothing to do",
        "no-new-rows": "new file(s) held no new rows: nothing retrained",
        "promoted": f"challenger v{result.challenger_version} PROMOTED to champion",
        "kept": f"challenger v{result.challenger_version} not promoted; champion stays "
        f"v{result.champion_version}",
        "already-champion": f"v{result.challenger_version} is already the champion",
    }[result.status]
    log.info("retrain: %s%s", summary, f" ({result.reason})" if result.reason else "")
    return EXIT_OK


def cmd_promote(args: argparse.Namespace) -> int:
    from finetune.registry.gate import apply_gate
    from finetune.registry.lock import EXIT_LOCKED, RegistryLocked

    _, cfg = _load_cfg(args.repo)
    wait = cfg.retrain.lock_timeout_s if args.wait is None else max(0.0, float(args.wait))
    try:
        result = apply_gate(cfg, _gate_spec(cfg, args), wait_s=wait)
    except RegistryLocked as exc:
        log.warning("%s", exc)
        return EXIT_LOCKED
    if result.decision is None:
        log.info("promote: %s", result.skipped)
    else:
        log.info(
            "promote: v%s %s (%s); champion is v%s",
            result.challenger_version,
            result.decision.outcome,
            result.decision.reason,
            result.champion_after,
        )
    return EXIT_OK


def cmd_register(args: argparse.Namespace) -> int:
    from finetune.registry.lock import EXIT_LOCKED, RegistryLocked
    from finetune.registry.register import register_run, trained_run_id

    root, cfg = _load_cfg(args.repo)
    run_id = args.run_id or trained_run_id(cfg, root)
    wait = cfg.retrain.lock_timeout_s if args.wait is None else max(0.0, float(args.wait))
    try:
        version = register_run(cfg, run_id, wait_s=wait, root=root)
    except RegistryLocked as exc:
        log.warning("%s", exc)
        return EXIT_LOCKED
    if version is None:
        log.warning(
            "register: nothing registered: tracking.registered_model_name is null or "
            "tracking.log_model is false"
        )
    else:
        log.info("register: run %s is version %s, the challenger", run_id, version)
    return EXIT_OK


def cmd_aliases(args: argparse.Namespace) -> int:
    from finetune.registry import aliases as registry

    _, cfg = _load_cfg(args.repo)
    name = registry.model_name(cfg.tracking)
    client = registry.client(cfg.tracking)
    for alias in (registry.CHAMPION, registry.CHALLENGER):
        version = registry.alias_version(client, name, alias)
        line = f"models:/{name}@{alias} -> " + (
            f"version {version.version} (run {version.run_id})" if version else "not set"
        )
        sys.stdout.write(line + "\n")
    return EXIT_OK


def _model_tracking_uri(model: str, tracking_uri: str | None, repo: str | None) -> str | None:
    """The MLflow store a ``models:/`` or ``runs:/`` model is read from (checked reachable):
    ``--tracking-uri``, else MLFLOW_TRACKING_URI, else the project's own store when run inside
    the repository."""
    if not model.startswith(("models:/", "runs:/")):
        return tracking_uri
    if not tracking_uri:
        from finetune.core.config import find_repo_root
        from finetune.core.errors import ConfigError
        from finetune.core.store import STORE_DIR

        try:
            root = find_repo_root(repo)
            if not os.environ.get("MLFLOW_TRACKING_URI"):
                tracking_uri = f"sqlite:///{root / STORE_DIR / 'mlflow.db'}"
        except ConfigError:
            pass  # outside a repository: MLFLOW_TRACKING_URI or MLflow's own default
    from finetune.core import store as health
    from finetune.core.store import tracking_uri as resolve

    health.bound_retries()
    health.check_uri(resolve(tracking_uri))
    return tracking_uri


def _positive(value: str) -> int:
    """An argparse type: a whole number of at least 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a whole number of at least 1")
    return number


def cmd_explain(args: argparse.Namespace) -> int:
    """``finetune explain``: the configured explainers (error_analysis.explanations, over
    ``--methods``) on the command line's texts or a file's."""
    from pydantic import ValidationError

    from finetune.analysis.explain import terminal_lines
    from finetune.core.config import find_repo_root, load_config
    from finetune.core.errors import ConfigError
    from finetune.core.schema import ExplanationsConfig
    from finetune.lifecycle.explain import run_explain

    tracking_uri = _model_tracking_uri(args.model, args.tracking_uri, args.repo)
    try:
        cfg = load_config(find_repo_root(args.repo))
    except ConfigError as exc:
        raise ConfigError(
            f"finetune explain reads its settings from the project's conf/error_analysis/: "
            f"{exc} (or pass --repo)"
        ) from exc
    spec = cfg.error_analysis.explanations.model_dump()
    if args.methods is not None:
        spec["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.samples is not None:
        spec["shap_max_evals"] = spec["lime_samples"] = args.samples
    try:
        explanations = ExplanationsConfig.model_validate(spec)
    except ValidationError as exc:
        error = exc.errors()[0]
        flag, given = (
            ("--methods", args.methods)
            if error["loc"][0] == "methods"
            else ("--samples", args.samples)
        )
        raise ConfigError(f"{flag}: {error['msg']} (got {given!r})") from exc
    if not explanations.methods:
        raise ConfigError(
            "no explainer chosen: pass --methods integrated_gradients,shap,lime (or some of "
            "them), or set error_analysis.explanations.methods"
        )
    if args.output and Path(args.output).is_dir():
        raise ConfigError(f"-o {args.output} is a directory: name the .html file to write")
    ctx = run_explain(
        args.model,
        args.texts,
        explanations,
        input_path=args.input,
        text_column=args.text_column,
        label=args.label,
        output_html=args.output,
        tracking_uri=tracking_uri,
        max_length=args.max_length,
        batch_size=args.batch_size,
        seed=cfg.seed,
    )
    sys.stdout.write("".join(f"{line}\n" for line in terminal_lines(ctx, args.top)))
    if args.output:
        log.info("explanations written to %s", args.output)
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from finetune.lifecycle.predict import run_predict

    model = args.model
    tracking_uri = _model_tracking_uri(model, args.tracking_uri, args.repo)
    log_dir = args.log
    if log_dir is None and not args.no_log:
        log_dir = _configured_log_dir(args.repo)
    if args.engine == "spark":
        return _predict_on_spark(args, model, tracking_uri, log_dir)
    run_predict(
        model,
        args.input,
        args.output,
        text_column=args.text_column,
        batch_size=args.batch_size,
        max_length=args.max_length,
        input_format=args.input_format,
        output_format=args.output_format,
        tracking_uri=tracking_uri,
        log_dir=log_dir,
    )
    if args.output not in (None, "-"):
        log.info("predictions written to %s", args.output)
    return EXIT_OK


def _predict_on_spark(
    args: argparse.Namespace, model: str, tracking_uri: str | None, log_dir: str | None
) -> int:
    """``finetune predict --engine spark``: flags over the repository's conf/predict."""
    from finetune.core.config import find_repo_root, load_config
    from finetune.core.errors import ConfigError
    from finetune.lifecycle.spark_predict import SparkJob, output_format, run_spark_predict

    if args.output in (None, "-"):
        raise ConfigError("--engine spark writes a directory: pass -o/--output DIR")
    try:
        root = find_repo_root(args.repo)
    except ConfigError as exc:
        raise ConfigError(
            f"--engine spark reads its settings from the project's conf/predict/: {exc} "
            "(or pass --repo)"
        ) from exc
    spec = load_config(root).predict.spark
    conf = {key: str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in spec.conf.items()}  # fmt: skip
    for item in args.conf or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--conf {item!r}: expected KEY=VALUE, e.g. spark.executor.memory=4g")
        conf[key.strip()] = value
    summary = run_spark_predict(
        SparkJob(
            model=model,
            input=args.input,
            output=args.output,
            text_column=args.text_column,
            batch_size=args.batch_size,
            max_length=args.max_length,
            input_format=args.input_format,
            output_format=output_format(args.output, args.output_format, spec.output_format),
            master=args.master or spec.master,
            partitions=args.partitions if args.partitions is not None else spec.partitions,
            conf=conf,
            prefer_onnx=spec.prefer_onnx if args.prefer_onnx is None else args.prefer_onnx,
            overwrite=args.overwrite,
            tracking_uri=tracking_uri,
            log_dir=log_dir,
        )
    )
    log.info("predictions written to %s (%d rows)", args.output, summary.rows)
    return EXIT_OK


def _configured_log_dir(repo: str | None) -> str | None:
    """paths.prediction_log when the repository's monitor.log_predictions is on."""
    from finetune.core.config import find_repo_root, load_config
    from finetune.core.errors import ConfigError

    try:
        root = find_repo_root(repo)
    except ConfigError:
        return None  # outside a repository: only an explicit --log logs
    cfg = load_config(root)
    if not cfg.monitor.log_predictions:
        return None
    return str(root / cfg.paths.prediction_log)


def cmd_monitor(args: argparse.Namespace) -> int:
    from finetune.core.durations import parse_duration
    from finetune.lifecycle.predict import read_inputs
    from finetune.monitoring import predlog
    from finetune.monitoring.monitor import batch_from_frame, run_monitor

    root, cfg = _load_cfg(args.repo)
    if (args.input is None) == (args.log is None):
        from finetune.core.errors import ConfigError

        raise ConfigError("give the batch as -i FILE or --log DIR (one of them)")
    if args.input is not None:
        frame = read_inputs(args.input, args.text_column, args.input_format)
        source, text_column = str(args.input), args.text_column
    else:
        since = parse_duration(args.since, "--since") if args.since else None
        frame = predlog.read_log(args.log, since, retention_days=cfg.monitor.log_retention_days)
        source = f"log {args.log}" + (f" since {args.since}" if args.since else "")
        text_column = "text"
    batch = batch_from_frame(
        frame, text_column, args.label_column, source, cfg.monitor.max_texts, cfg.seed
    )
    result = run_monitor(cfg, root, args.model, batch, Path(args.output) if args.output else None)
    verdict = "DRIFT" if result.summary["drift"] else "no drift"
    sys.stdout.write(f"{verdict}: {result.out_dir / 'summary.json'}\n")
    return result.exit_code


def cmd_tune(args: argparse.Namespace) -> int:
    from finetune.core.config import find_repo_root
    from finetune.tuning.tune import run_tune

    root = find_repo_root(args.repo)
    os.chdir(root)
    flags = {k: getattr(args, k) for k in ("trials", "timeout", "jobs", "study_name")}
    result = run_tune(root, args.set_param or [], flags)
    metric = result.objective_metric
    counts, savings = result.counts(), result.pruning_savings()
    best = (
        f"best: trial {result.best.number} ({result.best.experiment}), "
        f"{metric} {result.best.value:.4f}; preset {result.preset}"
        if result.best
        else "no trial completed"
    )
    log.info(
        "tune: %d complete, %d pruned, %d failed (%.0f%% of planned steps skipped by pruning) "
        "in %.0f s; %s; figures in %s",
        counts["complete"],
        counts["pruned"],
        counts["fail"],
        100 * float(savings["share_of_steps_skipped"]),
        result.seconds,
        best,
        result.out_dir,
    )
    return EXIT_OK


def cmd_services(args: argparse.Namespace) -> int:
    from finetune.core.config import CONF_DIR, compose, find_repo_root, read_overrides
    from finetune.core.validate import parse
    from finetune.services import stack

    root = find_repo_root(args.repo)
    overrides = [*read_overrides(root), *(args.set_param or [])]
    cfg = parse(compose(root / CONF_DIR, overrides), root / CONF_DIR, overrides)
    services_dir = (root / cfg.paths.services_dir).resolve()
    if args.action == "up":
        env = stack.up(cfg.services, services_dir)
        log.info("services up; the environment is in %s (source it)", services_dir / stack.ENV_FILE)
        sys.stdout.write(stack.env_lines(env))
        return EXIT_OK
    if args.action == "down":
        stopped = stack.down(cfg.services, services_dir)
        log.info("stopped: %s; data kept in %s", ", ".join(stopped) or "nothing ran", services_dir)
        return EXIT_OK
    problems = stack.status(cfg.services, services_dir)
    for name, problem in problems.items():
        sys.stdout.write(f"{name}: {problem or 'healthy'}\n")
    return EXIT_FAILED if any(problems.values()) else EXIT_OK


def cmd_init_data(args: argparse.Namespace) -> int:
    from finetune.core.config import CONF_DIR, compose, find_repo_root
    from finetune.core.errors import ConfigError
    from finetune.core.io import atomic_path
    from finetune.core.validate import parse
    from finetune.data.onboarding import dataset_name, inspect, render

    root = find_repo_root(args.repo)
    source = Path(args.path)
    name = args.name or dataset_name(args.path)
    if name == "base":
        raise ConfigError("`base` is the generic base every data config extends: pick --name")
    target = root / CONF_DIR / "data" / f"{name}.yaml"
    if target.exists() and not args.force:
        raise ConfigError(f"{target} exists: pass --force to overwrite it, or choose --name")
    found = inspect(str(source))
    in_repo = os.path.relpath(source.resolve(), root) if source.exists() else args.path
    with atomic_path(target) as tmp:
        tmp.write_text(render(found, name, in_repo))
    try:  # what it wrote must compose and fit the schema, or it is not left behind
        parse(compose(root / CONF_DIR, [f"data={name}"]), root / CONF_DIR, [f"data={name}"])
    except ConfigError:
        target.unlink()
        raise
    splits = ", ".join(f"{k} {v}" for k, v in found.splits.items()) or "none (split by hash)"
    lines = [
        f"wrote {target.relative_to(root)}: {found.rows} rows, text column "
        f"{found.text_column!r}, label column {found.label_column!r}, "
        f"{len(found.class_counts)} "
        f"{'labels (multi-label)' if found.task == 'multi_label' else 'classes'}, "
        f"predefined splits: {splits}",
        *(f"  could not decide: {x}" for x in found.undecided),
        "next, in this repository:",
        f'  make params O="data={name}"     # make it the workspace\'s data, then',
        "  dvc repro                         # the whole pipeline on it",
        "or as an experiment beside the current default:",
        f"  dvc exp run -S data={name}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def repo_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--repo", help="repository root (default: found from the cwd)")

    def overrides_arg(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument(
            "-S", "--set-param", action="append", metavar="KEY=VALUE", help=what
        )  # fmt: skip

    def gate_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--min-f1-gain", type=float, help="override promotion.min_f1_gain")
        p.add_argument("--max-recall-drop", type=float, help="override promotion.max_recall_drop")

    lock_wait = (
        "seconds to wait for the registry lock while a retrain, promote or registration holds "
        "it (default retrain.lock_timeout_s); then exit 75"
    )
    p = sub.add_parser(
        "retrain",
        help="ingest new data, dvc repro, apply the promotion gate (for cron/CI)",
        description="Ingest new files from retrain.incoming, run `dvc repro`, apply the gate. "
        "Exit 0: done or nothing to do; 1: failed (champion unchanged); 75: another retrain, "
        "promote or registration holds the registry lock.",
    )
    repo_arg(p)
    gate_args(p)
    p.add_argument("--wait", type=float, help=lock_wait)
    p.add_argument("--push", action="store_true", help="dvc push data and models on success")
    p.add_argument(
        "--when",
        choices=["new-data", "drift", "always"],
        help="retrain on new files only (new-data), also when the last `finetune monitor` "
        "flagged drift (drift), or every run (always); default retrain.when",
    )
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser(
        "monitor",
        help="compare a batch seen in use with the training data: drift, estimated accuracy",
        description="Input drift on the model's embeddings (domain classifier, MMD), text "
        "statistics, prediction drift, label-free accuracy estimate (and real figures with "
        "--label-column). Writes summary.json, report.html and to_label.csv; logs an MLflow run. "
        "Exit 0: nothing flagged; 3: drift or a performance drop flagged; 1: bad input.",
    )
    p.add_argument("-m", "--model", required=True, help="models/model or models:/<name>@champion")
    p.add_argument("-i", "--input", help="the batch: .csv or .jsonl")
    p.add_argument("--log", help="read the batch from a prediction log directory instead")
    p.add_argument("--since", help="with --log: only the last 30m, 12h, 7d, 2w ...")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", help="labels, if the batch has them: real accuracy too")
    p.add_argument("--input-format", choices=["auto", "csv", "jsonl"], default="auto")
    p.add_argument("-o", "--output", help="output folder (default: reports/monitor/<name>-<time>)")
    repo_arg(p)
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser(
        "tune",
        help="hyperparameter search: an Optuna study of DVC experiments (conf/tune/)",
        description="Search tune.space with Optuna; each trial is a DVC experiment "
        "<study>-trial-<n> run by DVC's queue and an MLflow child run of the study's parent run; "
        "the pruner stops weak trials during training. Starting it again continues the study. "
        "Writes reports/tune/<study>/ and the best trial as conf/experiment/tuned.yaml "
        "(`dvc exp run -S experiment=tuned`).",
    )
    p.add_argument("--trials", type=int, help="finished trials the study reaches (tune.trials)")
    p.add_argument("--timeout", help="start no new trial after this long: 90s, 30m, 2h")
    p.add_argument("--jobs", type=int, help="trials at once through DVC's queue (tune.jobs)")
    p.add_argument("--study", dest="study_name", help="study name (tune.study_name)")
    overrides_arg(p, "a Hydra override for every trial, as dvc exp run -S (repeatable)")
    repo_arg(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser(
        "services",
        help="the team stack: PostgreSQL, an S3 store and the MLflow server (make services)",
        description="up: start what is not running (each waited for until healthy), print and "
        "write <paths.services_dir>/env (export lines: MLFLOW_TRACKING_URI, the S3 endpoint and "
        "keys for DVC's s3 remote). down: stop them; the data stays. status: what a client sees "
        "(exit 1 when something is wrong).",
    )
    p.add_argument("action", choices=["up", "down", "status"])
    overrides_arg(p, "a Hydra override, e.g. -S services.mlflow.port=5500 (repeatable)")
    repo_arg(p)
    p.set_defaults(func=cmd_services)

    p = sub.add_parser(
        "init-data",
        help="inspect a dataset and write conf/data/<name>.yaml for it",
        description="Look at a file, directory or glob (format, encoding, columns, likely text "
        "and label columns, predefined splits, classes, text lengths), write "
        "conf/data/<name>.yaml extending conf/data/base.yaml, and print the next commands.",
    )
    p.add_argument("path", help="a CSV/TSV/JSONL/Parquet file, a directory or a glob")
    p.add_argument("--name", help="config name (default: from the path)")
    p.add_argument("--force", action="store_true", help="overwrite an existing config")
    repo_arg(p)
    p.set_defaults(func=cmd_init_data)

    p = sub.add_parser(
        "promote",
        help="apply the promotion gate to the current challenger",
        description="Exit 0: promoted or kept; 1: failed (champion unchanged); 75: a retrain, "
        "promote or registration holds the registry lock.",
    )
    repo_arg(p)
    gate_args(p)
    p.add_argument("--wait", type=float, help=lock_wait)
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser(
        "register",
        help="register the workspace's trained model as the challenger",
        description="Registers the model logged to the run of paths.run_info (or --run-id) as "
        "a new version and makes it the challenger (the first one also champion). For a model "
        "trained by `dvc exp run` or a tune trial, which are not registered: `dvc exp apply` "
        "and `dvc repro` first. Exit 75: the registry lock is held.",
    )
    repo_arg(p)
    p.add_argument("--run-id", help="the MLflow run whose logged model to register")
    p.add_argument("--wait", type=float, help=lock_wait)
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("aliases", help="show which versions are champion and challenger")
    repo_arg(p)
    p.set_defaults(func=cmd_aliases)

    p = sub.add_parser(
        "predict",
        help="predict a CSV/JSONL file with class probabilities (--engine spark: tables on Spark)",
        description="Rows with an empty text get status=empty and no prediction; texts longer "
        "than --max-length tokens are cut as the model was trained to cut them (status=truncated), "
        "or read whole in windows by a model trained with chunks. Input order is kept.",
    )
    p.add_argument(
        "-m",
        "--model",
        required=True,
        help="model directory (models/model, or models/onnx for ONNX Runtime) or MLflow URI "
        "(models:/support_tickets@champion, models:/support_tickets-onnx/1)",
    )
    p.add_argument(
        "-i",
        "--input",
        required=True,
        help="input .csv or .jsonl (--engine spark: also .tsv/.parquet, a directory or a glob)",
    )
    p.add_argument(
        "-o",
        "--output",
        help="output .csv or .jsonl (default: JSONL on stdout); --engine spark: a directory "
        "of Parquet part files (CSV when it ends .csv or with --output-format csv)",
    )
    p.add_argument("--text-column", default="text")
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    p.add_argument(
        "--max-length",
        type=int,
        help="tokens; longer texts are cut, or read in windows of it by a chunks model (default: "
        "the length the model was trained with)",
    )
    p.add_argument(
        "--input-format", choices=["auto", "csv", "jsonl", "tsv", "parquet"], default="auto"
    )
    p.add_argument("--output-format", choices=["auto", "csv", "jsonl", "parquet"], default="auto")
    p.add_argument("--tracking-uri", help="MLflow store for models:/ URIs (default: the repo's)")
    spark = p.add_argument_group(
        "Apache Spark (--engine spark; defaults in conf/predict/, docs/export.md)"
    )
    spark.add_argument(
        "--engine",
        choices=["local", "spark"],
        default="local",
        help="local: this process; spark: Apache Spark, the model as an MLflow Spark UDF",
    )
    spark.add_argument("--master", help="Spark master (default: predict.spark.master)")
    spark.add_argument(
        "--partitions", type=int, help="tasks the input is spread over (predict.spark.partitions)"
    )
    spark.add_argument(
        "--conf", action="append", metavar="KEY=VALUE", help="a Spark setting (repeatable)"
    )
    spark.add_argument(
        "--prefer-onnx",
        action=argparse.BooleanOptionalAction,
        help="score a models:/ URI with the ONNX export of its run when registered "
        "(predict.spark.prefer_onnx)",
    )
    spark.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument(
        "--log",
        help="append the predictions to this prediction log directory (Parquet, a folder per "
        "day; default: paths.prediction_log when monitor.log_predictions is true)",
    )
    p.add_argument("--no-log", action="store_true", help="do not log, whatever the config says")
    repo_arg(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "explain",
        help="why the model predicts what it does: integrated gradients, SHAP and LIME side by "
        "side, with their faithfulness",
        description="Explains each text's predicted class (or --label) with the explainers of "
        "error_analysis.explanations (integrated gradients needs the PyTorch model; an ONNX "
        "model gets SHAP and LIME), prints the top words per explainer and how faithful each "
        "was, and with -o writes the same as one HTML page.",
    )
    p.add_argument("texts", nargs="*", help="texts to explain (or --input FILE)")
    p.add_argument(
        "-m",
        "--model",
        required=True,
        help="model directory (models/model, models/onnx) or MLflow URI "
        "(models:/support_tickets@champion)",
    )
    p.add_argument("-i", "--input", help="a .csv or .jsonl file of texts to explain instead")
    p.add_argument("--text-column", default="text")
    p.add_argument("-o", "--output", help="write the explanations page here (.html)")
    p.add_argument("--label", help="explain this class instead of the predicted one")
    p.add_argument(
        "--methods",
        help="comma-separated explainers: integrated_gradients, shap, lime "
        "(default: error_analysis.explanations.methods)",
    )
    p.add_argument(
        "--samples",
        type=int,
        help="model calls per text for SHAP and LIME (default: error_analysis.explanations."
        "shap_max_evals and lime_samples); more is steadier and slower",
    )
    p.add_argument("--top", type=_positive, default=5, help="words shown per explainer")
    p.add_argument(
        "--max-length",
        type=int,
        help="tokens the model reads (default: the length it was trained with)",
    )
    p.add_argument("--batch-size", type=_positive, default=64, help="texts per forward pass")
    p.add_argument("--tracking-uri", help="MLflow store for models:/ URIs (default: the repo's)")
    repo_arg(p)
    p.set_defaults(func=cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging("DEBUG" if args.verbose else None)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        log.error("finetune %s interrupted", args.command)
        return 130
    except Exception as exc:  # reported in one line and turned into the exit code
        report_failure(f"finetune {args.command}", exc)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
