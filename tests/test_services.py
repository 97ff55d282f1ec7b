"""The team setup for real: `finetune services up` (make services) starts PostgreSQL, SeaweedFS's
S3 gateway and an MLflow server on them, on free ports of 127.0.0.1, with their data in a
temporary services directory; the pipeline, retraining, DVC's s3 remote and model serving run
against them, and the tests take parts away (kill the MLflow server during training, restart
PostgreSQL, stop the object store before a push) to see what the pipeline does.

The tests of this module share one stack and one tiny project and run in file order."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from finetune.core.config import compose
from finetune.core.schema import ServicesConfig
from finetune.core.validate import parse
from finetune.services import objectstore, postgres
from finetune.services.process import ServiceError, port_in_use, require_free
from finetune.services.stack import Layout, down, env_lines
from tests.conftest import REPO
from tests.helpers import BIN, env_with_venv, free_port, sh, tiny_project

MODEL = "support_tickets"


# --------------------------------------------------------------------------- without servers


def test_tracking_server_preset_points_at_the_services_mlflow_port() -> None:
    params = compose(REPO / "conf", ["tracking=server", "services.mlflow.port=5999"])
    assert params["tracking"]["uri"] == "http://127.0.0.1:5999"
    assert params["tracking"]["experiment_name"] == "finetune-pipeline"  # the rest from local
    assert compose(REPO / "conf")["tracking"]["uri"] is None, "the default stays local"


def test_dvc_s3_remote_is_in_the_services_bucket() -> None:
    config = (REPO / ".dvc" / "config").read_text()
    bucket = compose(REPO / "conf")["services"]["s3"]["bucket"]
    assert f"url = s3://{bucket}/dvc" in config
    assert "remote = local" in config, "the local directory remote stays the default"


def test_run_params_leave_out_the_services_passwords() -> None:
    from tests.conftest import typed

    params = typed(compose(REPO / "conf")).params()
    assert "services" not in params and "paths" not in params


def test_env_lines_quote_for_the_shell() -> None:
    assert env_lines({"A": "x y", "B": "it's"}) == "export A='x y'\nexport B='it'\"'\"'s'\n"


def test_a_port_in_use_is_one_line_naming_the_setting() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServiceError, match=rf"^port {port} on 127.0.0.1 \(services.mlflow"
                           r".port\) is already in use by another program: stop it, or choose "
                           r"another port with -S services.mlflow.port=<port>$"):  # fmt: skip
            require_free("127.0.0.1", {port: "services.mlflow.port"}, "services.mlflow.port")


def test_s3_ports_all_name_the_one_setting_that_moves_them() -> None:
    cfg = typed_services().s3
    ports = objectstore.ports(cfg)
    assert sorted(ports) == [cfg.port + i for i in range(4)] + [
        cfg.port + 10000 + i for i in range(4)
    ]
    assert all(what.startswith("services.s3.port") for what in ports.values())


def test_secrets_are_written_private_from_the_first_byte(tmp_path: Path) -> None:
    from finetune.services.process import write_private

    target = tmp_path / "env"
    write_private(target, "export A=1\n")
    assert target.read_text() == "export A=1\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["env"], "no temporary file left"


def typed_services() -> ServicesConfig:
    params = compose(REPO / "conf")
    return parse(params, REPO / "conf", []).services


def test_missing_postgres_binaries_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match=r"initdb is not in services.postgres.bin_dir=.*"
                       r"apt-get install postgresql"):  # fmt: skip
        postgres.binary("initdb", str(tmp_path))


# --------------------------------------------------------------------------- the stack


def free_base(span: int) -> int:
    """A port p with p..p+span-1 and the same +10000 (SeaweedFS's gRPC ports) all free."""
    for _ in range(200):
        base = free_port()
        if base + span + 10000 > 65535:
            continue
        ports = [*range(base, base + span), *range(base + 10000, base + 10000 + span)]
        if not any(port_taken(p) for p in ports):
            return base
    raise AssertionError("no free port range")


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@dataclass
class Stack:
    repo: Path
    root: Path
    overrides: list[str]
    cfg: ServicesConfig
    env: dict[str, str]
    up_seconds: float

    def cli(
        self, action: str, *extra: str, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """``finetune services <action>`` with the stack's overrides and ``extra`` ones."""
        args = [str(BIN / "finetune"), "services", action]
        for override in [*self.overrides, *extra]:
            args += ["-S", override]
        return self.run(*args, check=check, **env)

    def run(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        """``args`` in the repo with the stack's environment (what `source .services/env` gives)."""
        full = {**env_with_venv(), **self.env, **env}
        for var in ("DVC_ROOT", "DVC_EXP_NAME"):
            full.pop(var, None)
        proc = subprocess.run(
            args, cwd=self.repo, env=full, capture_output=True, text=True, timeout=900
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    @property
    def uri(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    def client(self) -> MlflowClient:
        return MlflowClient(self.uri, registry_uri=self.uri)

    def pids(self) -> dict[str, int | None]:
        layout = Layout(self.root)
        pg = (layout.postgres / "data" / "postmaster.pid").read_text().split()[0]
        return {"postgres": int(pg), "s3": layout.s3.pid(), "mlflow": layout.mlflow.pid()}

    def kill(self, name: str) -> None:
        """SIGKILL a server's process group: a crash, not a clean stop."""
        pid = self.pids()[name]
        assert pid is not None, f"{name} is not running"
        os.killpg(pid, signal.SIGKILL)
        while port_in_use("127.0.0.1", self.port(name)):
            time.sleep(0.1)

    def port(self, name: str) -> int:
        return {"s3": self.cfg.s3.port, "mlflow": self.cfg.mlflow.port}[name]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return tiny_project(tmp_path_factory.mktemp("team"), tiny_model_dir, raw_rows=240)


@pytest.fixture(scope="module")
def stack(repo: Path) -> Iterator[Stack]:
    # PostgreSQL runs as the postgres user when the tests run as root: its directory must be
    # reachable by that user, which pytest's own temporary directory (mode 0700) is not.
    root = Path(tempfile.mkdtemp(prefix="finetune-services-"))
    root.chmod(0o755)
    base = free_base(4)
    overrides = [
        f"paths.services_dir={root}",
        f"services.s3.port={base}",
        f"services.postgres.port={free_port()}",
        f"services.mlflow.port={free_port()}",
    ]
    conf = repo / "conf"
    cfg = parse(compose(conf, overrides), conf, overrides).services
    partial = Stack(repo, root, overrides, cfg, {}, 0.0)
    try:
        began = time.perf_counter()
        proc = partial.cli("up")
        seconds = time.perf_counter() - began
        env = dict(line.removeprefix("export ").split("=", 1) for line in proc.stdout.splitlines())
        print(f"finetune services up (cold: initdb, bucket, schema): {seconds:.1f} s")
        yield Stack(repo, root, overrides, cfg, env, seconds)
    finally:
        down(cfg, root)  # in-process: whatever the tests did to the repository's config
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_up_prints_and_writes_the_environment_and_a_second_up_starts_nothing(
    stack: Stack,
) -> None:
    env_file = (stack.root / "env").read_text()
    assert env_file == env_lines(stack.env)
    assert stack.env["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{stack.cfg.mlflow.port}"
    assert stack.env["AWS_ENDPOINT_URL_S3"] == f"http://127.0.0.1:{stack.cfg.s3.port}"
    assert (stack.root / "env").stat().st_mode & 0o077 == 0, "the keys are the user's alone"
    before = stack.pids()
    began = time.perf_counter()
    again = stack.cli("up")
    assert time.perf_counter() - began < 15
    assert again.stdout == env_file
    assert "already running" in again.stderr
    assert stack.pids() == before
    status = stack.cli("status")
    assert status.stdout == "postgres: healthy\ns3: healthy\nmlflow: healthy\n"


@pytest.mark.slow
def test_bad_configuration_is_one_clear_line_each(stack: Stack) -> None:
    # wrong S3 keys, as a client with the wrong environment sees them
    wrong = stack.cli("status", check=False, AWS_SECRET_ACCESS_KEY="not-the-secret")
    assert wrong.returncode == 1
    assert f"s3: S3 at http://127.0.0.1:{stack.cfg.s3.port} refuses access key 'finetune' " in (
        wrong.stdout
    )
    # a bucket that is not there: the check, and what DVC says when a remote points at it
    found = objectstore.problem(stack.cfg.s3, "127.0.0.1", bucket="no-such-bucket")
    assert found == f"S3 at http://127.0.0.1:{stack.cfg.s3.port} has no bucket 'no-such-bucket'"
    # a port another program holds: nothing started, one line, exit 1 (a second stack)
    other = Path(tempfile.mkdtemp(prefix="finetune-services-"))
    other.chmod(0o755)
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            taken = sock.getsockname()[1]
            proc = stack.cli(
                "up", f"paths.services_dir={other}", f"services.postgres.port={taken}", check=False
            )
    finally:
        shutil.rmtree(other, ignore_errors=True)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if "failed" in ln]
    assert [ln.split(" ", 1)[1] for ln in lines] == [
        f"ERROR finetune: finetune services failed: port {taken} on 127.0.0.1 "
        f"(services.postgres.port) is already in use by another program: stop it, or choose "
        f"another port with -S services.postgres.port=<port>"
    ], proc.stderr
    # the wrong database password: PostgreSQL keeps the one the cluster was made with
    proc = stack.cli("up", "services.postgres.password=wrong", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "refuses user 'finetune': " in proc.stderr
    assert "services.postgres.password must match" in proc.stderr


@pytest.mark.slow
def test_load_four_loggers_and_two_registrars_lose_nothing(stack: Stack) -> None:
    proc = stack.run(sys.executable, str(REPO / "bench" / "services_load.py"))
    print(proc.stderr.strip().splitlines()[-1])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["errors"] == 0
    assert result["points_present"] == result["points_expected"] == 4000
    assert result["versions_present"] == result["versions_expected"] == 10
    assert result["versions_distinct"], "two registrars never got the same version number"


@pytest.mark.slow
def test_postgres_restart_is_ridden_out_by_the_mlflow_server(stack: Stack) -> None:
    client = stack.client()
    experiment = client.create_experiment(f"pg-restart-{time.time_ns()}")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "before", 1.0)
    mlflow_pid = stack.pids()["mlflow"]
    postgres.restart(stack.cfg.postgres, Layout(stack.root).postgres)
    # no manual step: the server's next requests reconnect (pool pre-ping) or are retried
    client.log_metric(run.info.run_id, "after", 2.0)
    client.set_terminated(run.info.run_id)
    finished = client.get_run(run.info.run_id)
    assert finished.data.metrics == {"before": 1.0, "after": 2.0}
    assert stack.pids()["mlflow"] == mlflow_pid, "the MLflow server was not restarted"


def wait_for_checkpoint(repo: Path, child: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300
    while not any((repo / "checkpoints").glob("*/checkpoint-*/trainer_state.json")):
        assert child.poll() is None, child.stdout.read() if child.stdout else ""
        assert time.monotonic() < deadline, "no checkpoint in 300 s"
        time.sleep(0.05)


@pytest.mark.slow
def test_mlflow_server_killed_during_training_is_ridden_out(stack: Stack) -> None:
    """The server crashes after the first epoch and is started again 5 s later: the train
    stage keeps the metric points it could not send and sends them when the server answers
    again (waiting for it after training, up to tracking.outage_wait_s); the run ends FINISHED
    with every point and its model registered on the server, in one go."""
    sh(stack.repo, sys.executable, "-m", "finetune.core.config", "compose",
       "train.max_steps=-1", "train.epochs=6", "train.logging_steps=2",
       "train.keep_checkpoints=true")  # fmt: skip
    stack.run("dvc", "repro", "augment")
    env = {**env_with_venv(), **stack.env}
    child = subprocess.Popen(
        ["dvc", "repro", "train"], cwd=stack.repo, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_for_checkpoint(stack.repo, child)
    stack.kill("mlflow")
    down = time.perf_counter()
    time.sleep(5)
    stack.cli("up")  # the server comes back; PostgreSQL and S3 were never down
    outage = time.perf_counter() - down
    output, _ = child.communicate(timeout=600)
    assert child.returncode == 0, output  # ridden out
    # by the client's own bounded retries, or by keeping the points (tracking.outage_wait_s)
    assert "Connection refused" in output, "the outage was not seen: the test proves nothing"
    run_id = json.loads((stack.repo / "models" / "mlflow_run.json").read_text())["run_id"]
    client = stack.client()
    assert client.get_run(run_id).info.status == "FINISHED"
    state = max(
        (stack.repo / "checkpoints").glob("*/checkpoint-*/trainer_state.json"),
        key=lambda p: int(p.parent.name.split("-")[1]),
    )
    losses = [e["step"] for e in json.loads(state.read_text())["log_history"] if "loss" in e]
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == sorted(losses)
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert [v.run_id for v in versions] == [run_id]
    sh(stack.repo, "git", "checkout", "--", "params.yaml")
    print(f"train with the MLflow server down for {outage:.0f} s: exit 0, {len(losses)} loss "
          "points all on the server")  # fmt: skip


@pytest.mark.slow
def test_pipeline_and_retrain_move_the_aliases_on_the_server(stack: Stack) -> None:
    stack.run("dvc", "repro")  # evaluate, error_analysis, export: all logged on the server
    proc = stack.run(str(BIN / "finetune"), "retrain")  # the demo's second batch
    assert "new data: data/incoming/support_tickets_batch2.csv" in proc.stdout + proc.stderr
    client = stack.client()
    model = client.get_registered_model(MODEL)
    assert set(model.aliases) >= {"champion", "challenger"}
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert client.get_run(champion.run_id).data.tags["promotion.outcome"] == "promoted"
    shown = stack.run(str(BIN / "finetune"), "aliases").stdout
    assert f"models:/{MODEL}@champion -> version {champion.version} " in shown, shown
    # the artifacts went through the server's proxy into the bucket, not to a local folder
    s3 = objectstore.client(stack.cfg.s3, "127.0.0.1")
    keys = s3.list_objects_v2(Bucket=stack.cfg.s3.bucket, Prefix="mlflow/")
    assert any(k["Key"].endswith("model.safetensors") for k in keys.get("Contents", []))
    assert not (stack.repo / ".mlflow" / "mlflow.db").exists(), "nothing went to the local store"


@pytest.mark.slow
def test_mlflow_models_serve_answers_from_the_servers_registry(stack: Stack) -> None:
    port = free_port()
    log_path = stack.root / "serve.log"
    with log_path.open("wb") as out:
        server = subprocess.Popen(
            [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion",
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
            cwd=stack.repo, env={**env_with_venv(), **stack.env}, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        from tests.helpers import wait_until_up

        wait_until_up(f"http://127.0.0.1:{port}/ping", server, log_path, timeout_s=180)
        body = json.dumps({"inputs": ["I was charged twice for my order"]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert answer["predictions"], answer
    finally:
        from tests.helpers import stop_group

        stop_group(server)


def lock_outs(repo: Path) -> list[str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return sorted({o["path"] for st in lock["stages"].values() for o in st.get("outs", [])})


def assert_same_files(source_repo: Path, clone: Path, outs: list[str]) -> int:
    count = 0
    for out in outs:
        source = source_repo / out
        files = [p for p in source.rglob("*") if p.is_file()] if source.is_dir() else [source]
        assert files, out
        for file in files:
            twin = clone / file.relative_to(source_repo)
            assert twin.is_file(), f"{twin} not restored by dvc pull"
            assert twin.read_bytes() == file.read_bytes(), twin
            count += 1
    return count


@pytest.mark.slow
def test_store_down_fails_dvc_push_clearly_and_a_push_after_it_is_back_pulls_identically(
    stack: Stack,
) -> None:
    stack.kill("s3")
    began = time.perf_counter()
    failed = stack.run("dvc", "push", "-r", "s3", check=False)
    seconds = time.perf_counter() - began
    assert failed.returncode != 0
    message = failed.stdout + failed.stderr
    assert "ERROR" in message and "Traceback" not in message, message
    print(f"dvc push with the object store down: exit {failed.returncode} in {seconds:.0f} s: "
          f"{[ln for ln in message.splitlines() if 'ERROR' in ln][:1]}")  # fmt: skip
    began = time.perf_counter()
    stack.cli("up")  # the store is back, with what it held
    print(f"S3 store up again after a crash: {time.perf_counter() - began:.1f} s")
    began = time.perf_counter()
    pushed = stack.run("dvc", "push", "-r", "s3")
    print(f"dvc push -r s3: {time.perf_counter() - began:.1f} s")
    assert "pushed" in pushed.stdout, pushed.stdout
    sh(stack.repo, "git", "add", "-A")
    sh(stack.repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "team")
    clone = Path(tempfile.mkdtemp(dir=stack.repo.parent, prefix="team-")) / "clone"
    sh(stack.repo.parent, "git", "clone", "-q", str(stack.repo), str(clone))
    clone_stack = Stack(clone, stack.root, stack.overrides, stack.cfg, stack.env, 0)
    began = time.perf_counter()
    clone_stack.run("dvc", "pull", "-r", "s3")
    outs = lock_outs(stack.repo)
    assert "models/model" in outs and "data/processed" in outs
    files = assert_same_files(stack.repo, clone, outs)
    print(f"dvc pull -r s3 in a fresh clone: {files} files byte-identical in "
          f"{time.perf_counter() - began:.1f} s")  # fmt: skip
    assert "up to date" in clone_stack.run("dvc", "status").stdout


def wait_queue(stack: Stack, names: list[str], timeout_s: float = 600, **env: str) -> dict:
    from finetune.tuning.experiments import QUEUE_LINE

    deadline = time.monotonic() + timeout_s
    while True:
        lines = stack.run("dvc", "queue", "status", **env).stdout.splitlines()
        found = {m["name"]: m["status"] for ln in lines if (m := QUEUE_LINE.match(ln.strip()))}
        if all(found.get(n) in ("Success", "Failed") for n in names):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(2)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["server", "sqlite"])
def test_two_queue_workers_give_one_complete_run_per_experiment(stack: Stack, store: str) -> None:
    """``dvc queue start -j 2``: two experiments train at once, each in its own temporary copy,
    both logging and registering into one store (the server, or the SQLite default)."""
    env = {} if store == "server" else {"MLFLOW_TRACKING_URI": ""}
    names = [f"{store}-lr-{i}" for i in (1, 2)]
    # params of their own: DVC's run cache would restore (not train) params that ran before
    rates = ("0.0003", "0.001") if store == "server" else ("0.0004", "0.002")
    for name, rate in zip(names, rates, strict=True):
        stack.run("dvc", "exp", "run", "--queue", "-n", name, "-S",
                  f"train.learning_rate={rate}", "train", **env)  # fmt: skip
    began = time.perf_counter()
    stack.run("dvc", "queue", "start", "-j", "2", **env)
    states = wait_queue(stack, names, **env)
    seconds = time.perf_counter() - began
    logs = {n: stack.run("dvc", "queue", "logs", n, check=False).stdout[-2000:] for n in names}
    assert [states[n] for n in names] == ["Success", "Success"], logs
    uri = stack.uri if store == "server" else f"sqlite:///{stack.repo / '.mlflow' / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("finetune-pipeline")
    for name in names:
        runs = client.search_runs([experiment.experiment_id], f"tags.`dvc.experiment` = '{name}'")
        assert len(runs) == 1, f"{name}: {len(runs)} runs"
        (run,) = runs
        assert run.info.status == "FINISHED"
        assert client.get_metric_history(run.info.run_id, "loss"), name
        assert "val_f1_macro" in run.data.metrics, name
        # the run's logged model (list_artifacts would resolve it through the global tracking
        # URI, not this client's)
        logged = client.search_logged_models([experiment.experiment_id], "name = 'model'")
        assert run.info.run_id in {m.source_run_id for m in logged}, name
        # experiments log their model but do not register it (finetune.registry.register)
        assert not client.search_model_versions(f"run_id='{run.info.run_id}'"), name
    print(f"dvc queue start -j 2 on {store}: 2 experiments in {seconds:.0f} s, one complete "
          "run and logged model each")  # fmt: skip
    # The workers keep the environment they started with (the tracking URI): the next case
    # needs new ones. DVC's temporary workers exit after 10 s without a task.
    deadline = time.monotonic() + 60
    while "Worker status: 0 active, 0 idle" not in stack.run("dvc", "queue", "status").stdout:
        assert time.monotonic() < deadline, "the queue's workers did not exit"
        time.sleep(1)


@pytest.mark.slow
def test_two_node_torchrun_logs_one_run_from_rank_0(stack: Stack) -> None:
    """Two launchers, as two machines would run them (--nnodes=2, a rendezvous on the first
    host's address), training one model: rank 0 alone talks to the tracking server."""
    sh(stack.repo, sys.executable, "-m", "finetune.core.config", "compose",
       "train.max_steps=-1", "train.epochs=2", "train.num_threads=1")  # fmt: skip
    env = {**env_with_venv(), **stack.env, "OMP_NUM_THREADS": "1"}
    codes, outputs = _two_nodes(stack.repo, env)
    if codes != [0, 0] and _port_taken(outputs):  # free_port() raced another process
        codes, outputs = _two_nodes(stack.repo, env)
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    metrics = json.loads((stack.repo / "reports/train/metrics.json").read_text())
    assert metrics["processes"] == 2
    run_id = json.loads((stack.repo / "models" / "mlflow_run.json").read_text())["run_id"]
    run = stack.client().get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["train.epochs"] == "2"
    experiment = run.info.experiment_id
    assert len(stack.client().search_runs([experiment], f"attributes.run_id = '{run_id}'")) == 1
    sh(stack.repo, "git", "checkout", "--", "params.yaml")


@pytest.mark.slow
def test_down_stops_everything_and_the_data_survives_up(stack: Stack) -> None:
    client = stack.client()
    champion = client.get_model_version_by_alias(MODEL, "champion")
    experiment = client.get_run(champion.run_id).info.experiment_id
    runs = len(client.search_runs([experiment]))
    began = time.perf_counter()
    proc = stack.cli("down")
    down_s = time.perf_counter() - began
    assert "stopped: mlflow, s3, postgres" in proc.stderr
    ports = [
        stack.cfg.mlflow.port,
        stack.cfg.postgres.port,
        *objectstore.ports(stack.cfg.s3),
    ]
    assert not [p for p in ports if port_in_use("127.0.0.1", p)], "a server still listens"
    assert stack.cli("status", check=False).returncode == 1
    began = time.perf_counter()
    stack.cli("up")
    up_s = time.perf_counter() - began
    client = stack.client()
    assert client.get_model_version_by_alias(MODEL, "champion").version == champion.version
    assert len(client.search_runs([experiment])) == runs
    # the registered version's own artifact location: MLflow resolves a models:/ URI through the
    # process-wide registry URI, not the tracking_uri argument
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri(MODEL, champion.version),
        dst_path=tempfile.mkdtemp(dir=stack.repo.parent, prefix="team-downloaded-"),
        tracking_uri=stack.uri,
    )
    assert any(Path(local).rglob("model.safetensors")), "the model came back from S3"
    print(f"services down: {down_s:.1f} s; up again (warm): {up_s:.1f} s; data intact")


def _port_taken(outputs: list[str]) -> bool:
    return any("address already in use" in out.lower() or "EADDRINUSE" in out for out in outputs)


def _two_nodes(
    repo: Path, env: dict[str, str], timeout: float = 600
) -> tuple[list[int], list[str]]:
    """Two torchrun launchers (--nnodes=2, one process each) training in ``repo``: their exit
    codes and outputs. When one fails the other is stopped at once (it would wait for its
    rendezvous partner until torchrun's own timeout), so a failure shows both outputs."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"node{rank}.log" for rank in (0, 1)]
        with paths[0].open("w") as log0, paths[1].open("w") as log1:  # a pipe could fill up
            nodes = [
                subprocess.Popen(
                    [
                        str(BIN / "torchrun"),
                        "--nnodes=2",
                        "--nproc_per_node=1",
                        f"--node_rank={rank}",
                        "--master_addr=127.0.0.1",
                        f"--master_port={port}",
                        "stages/train.py",
                        "hydra.run.dir=.",
                        "hydra.output_subdir=null",
                        "hydra/job_logging=none",
                        "hydra/hydra_logging=none",
                    ],
                    cwd=repo,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                for rank, log in ((0, log0), (1, log1))
            ]
            deadline = time.monotonic() + timeout
            while any(n.poll() is None for n in nodes) and time.monotonic() < deadline:
                if any(n.poll() not in (None, 0) for n in nodes):
                    break
                time.sleep(0.5)
            for node in nodes:
                if node.poll() is None:
                    os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        return [node.returncode for node in nodes], [p.read_text() for p in paths]
