"""finetune retrain: new data -> DVC data version -> dvc repro -> gate; lock; failures; remote.

The fast tests call the pieces directly; the slow ones run the real `finetune retrain` console
script in a temporary git + DVC copy of the project (tiny model, smoke preset, 300 raw rows),
one shared repository whose state moves forward test by test.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from finetune.core.errors import DataError
from finetune.lifecycle.retrain import find_new_files, ingest, read_ledger
from finetune.lifecycle.retrain import retrain as retrain_in_process
from finetune.registry.lock import RegistryLocked, exclusive_lock, holder_file
from tests.conftest import REPO, config, data_config
from tests.helpers import BIN, sh, tiny_project

MODEL = "support_tickets"
DATA_CFG = data_config(id_column="id")


# --------------------------------------------------------------------------- fast, in-process


def test_ingest_appends_new_rows_and_skips_known_ids(tmp_path: Path) -> None:
    raw = tmp_path / "raw.csv"
    raw.write_text('id,text,label,channel\nm1,"hello, there",billing,chat\n')
    before = raw.read_bytes()
    new = tmp_path / "new.csv"
    new.write_text("id,text,label,extra\nm1,dup,billing,x\nm2,new one,shipping,y\nm2,again,a,z\n")
    (result,) = ingest(raw, [new], DATA_CFG, tmp_path)
    assert (result.rows, result.added, result.skipped_ids) == (3, 1, ["m1", "m2"])
    assert raw.read_bytes().startswith(before), "existing bytes are untouched (append only)"
    df = pd.read_csv(raw, keep_default_na=False)
    assert df["id"].tolist() == ["m1", "m2"] and df["channel"].tolist() == ["chat", ""]


def test_ingest_rejects_a_file_without_the_label_column(tmp_path: Path) -> None:
    raw = tmp_path / "raw.csv"
    raw.write_text("id,text,label\nm1,hi,billing\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\nm2,hey\n")
    with pytest.raises(DataError, match=r"bad\.csv: missing column\(s\) \['label'\]"):
        ingest(raw, [bad], DATA_CFG, tmp_path)


def test_new_files_are_found_by_name_and_content(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    a = tmp_path / "in" / "a.csv"
    a.write_text("x")
    assert find_new_files(tmp_path, "in/*.csv", read_ledger(tmp_path / "none.json")) == [a]
    md5 = hashlib.md5(b"x").hexdigest()
    assert find_new_files(tmp_path, "in/*.csv", {"files": {"in/a.csv": {"md5": md5}}}) == []
    a.write_text("x, changed")
    assert find_new_files(tmp_path, "in/*.csv", {"files": {"in/a.csv": {"md5": md5}}}) == [a]


def test_lock_excludes_a_second_holder_and_says_who(tmp_path: Path) -> None:
    lock = tmp_path / "r.lock"
    with exclusive_lock(lock):
        began = time.monotonic()
        with (
            pytest.raises(
                RegistryLocked,
                match=r"another `finetune retrain`, `finetune promote` "
                r"or registration is running \(pid ",
            ),
            exclusive_lock(lock, timeout_s=0.6, poll_s=0.1),
        ):
            pass
        assert time.monotonic() - began >= 0.6
    with exclusive_lock(lock, timeout_s=0):
        pass  # free again once released


@pytest.mark.parametrize("method", ["stratified", "hash"])
def test_retrain_warns_when_the_split_reshuffles_as_data_grows(
    tmp_path: Path, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "raw.csv").write_text("id,text,label\nm1,hi,billing\n")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "b.csv").write_text("id,text,label\nm1,hi,billing\n")  # nothing new
    cfg = config(
        {
            "paths.retrain_ledger": "ledger.json",
            "data.path": "raw.csv",
            "data.id_column": "id",
            "data.extra_columns": [],
            "data.split.method": method,
        }
    )
    spec = cfg.retrain.model_copy(update={"incoming": "in/*.csv", "lock_file": "r.lock"})
    with caplog.at_level("WARNING", logger="finetune.lifecycle.retrain"):
        result = retrain_in_process(tmp_path, cfg, spec)
    assert result.status == "no-new-rows"
    warned = [r.getMessage() for r in caplog.records if "reshuffles the splits" in r.getMessage()]
    if method == "stratified":
        assert warned and "set data.split.method: hash" in warned[0]
    else:
        assert not warned


def test_ingest_reads_and_appends_in_the_data_encoding_and_delimiter(tmp_path: Path) -> None:
    """A latin-1, `;`-separated source (data.encoding, data.delimiter) is read and appended as
    the pipeline reads it: same encoding, same separator, the existing bytes untouched."""
    cfg = data_config(id_column="id", encoding="latin-1", delimiter=";")
    raw = tmp_path / "raw.csv"
    raw.write_bytes("id;text;label\nm1;café, crème;billing\n".encode("latin-1"))
    before = raw.read_bytes()
    new = tmp_path / "new.csv"
    new.write_bytes("id;text;label\nm2;déjà vu, again;shipping\n".encode("latin-1"))
    (result,) = ingest(raw, [new], cfg, tmp_path)
    assert (result.rows, result.added) == (1, 1)
    assert raw.read_bytes().startswith(before)
    df = pd.read_csv(raw, sep=";", encoding="latin-1", keep_default_na=False)
    assert df["text"].tolist() == ["café, crème", "déjà vu, again"]


def test_ingest_appends_to_a_tsv_source(tmp_path: Path) -> None:
    raw = tmp_path / "raw.tsv"
    raw.write_text("id\ttext\tlabel\nm1\thello, there\tbilling\n")
    new = tmp_path / "new.tsv"
    new.write_text("id\ttext\tlabel\nm2\tsemi; colon\tshipping\n")
    (result,) = ingest(raw, [new], DATA_CFG, tmp_path)
    assert result.added == 1
    df = pd.read_csv(raw, sep="\t", keep_default_na=False)
    assert df["text"].tolist() == ["hello, there", "semi; colon"]


def test_the_ledger_is_replaced_whole_not_rewritten_in_place(tmp_path: Path) -> None:
    """The ledger is written to a temporary sibling and renamed over the old one: a reader (or
    a crash) meets the old ledger or the new one, never a truncated one. A reader that opened
    the old file still reads it whole after the write, which a write in place would truncate."""
    from finetune.lifecycle.retrain import Ingested, RetrainResult, _write_ledger

    path = tmp_path / "ingested.json"
    path.write_text('{"files": {"a.csv": {"md5": "x"}}}\n')
    before = path.read_bytes()
    result = RetrainResult("kept", challenger_version="2", champion_version="1")
    with path.open("rb") as reader:
        _write_ledger(path, read_ledger(path), [Ingested("b.csv", "y", 1, 1)], result, tmp_path)
        assert reader.read() == before, "the old ledger was replaced, not rewritten in place"
    assert set(read_ledger(path)["files"]) == {"a.csv", "b.csv"}
    assert sorted(tmp_path.iterdir()) == [path], "no temporary file left behind"


RETRAIN_CHILD = """
import sys
from pathlib import Path
from finetune.core.runner import configure_logging
from finetune.lifecycle.retrain import retrain
from tests.conftest import config
configure_logging()
root = Path(sys.argv[1])
cfg = config({"paths.retrain_ledger": "ingested.json", "data.path": "raw.csv",
              "data.id_column": "id", "data.extra_columns": [], "data.split.method": "hash"})
spec = cfg.retrain.model_copy(update={"incoming": "in/*.csv", "lock_file": "r.lock"})
retrain(root, cfg, spec)
"""


def test_sigterm_during_a_retrain_restores_the_data_and_leaves_the_ledger(tmp_path: Path) -> None:
    """A real `retrain` process sent SIGTERM while `dvc repro` runs (here a stage that sleeps):
    it stops dvc, restores the raw file, leaves the ledger unwritten and exits non-zero, so the
    next retrain appends the new rows once."""
    import os
    import signal

    (tmp_path / "raw.csv").write_text("id,text,label\nm1,hi,billing\n")
    before = (tmp_path / "raw.csv").read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "b.csv").write_text("id,text,label\nm2,new text,shipping\n")
    sh(tmp_path, sys.executable, "-m", "dvc", "init", "--no-scm", "-q")
    (tmp_path / "dvc.yaml").write_text(
        'stages:\n  slow:\n    cmd: python -c "import time; time.sleep(25)"\n    deps: [raw.csv]\n'
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", RETRAIN_CHILD, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # until dvc repro has started (the rows are appended by then)
        seen.append(line)
        if "running: dvc repro" in line:
            break
    assert any("running: dvc repro" in line for line in seen), "".join(seen)
    assert (tmp_path / "raw.csv").read_bytes() != before, "the new rows are appended"
    time.sleep(3)  # dvc is running the stage
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 1, "".join(seen) + rest
    assert "received SIGTERM" in rest and "raw.csv restored, ledger" in rest
    assert (tmp_path / "raw.csv").read_bytes() == before
    assert not (tmp_path / "ingested.json").exists()


def test_sigterm_while_the_ledger_is_written_finishes_it_and_keeps_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the gate has decided, the rows it decided on and the ledger entry stay together:
    a SIGTERM that arrives as the ledger is written waits for it, then stops the retrain (the
    next retrain finds nothing new). Training and the gate are replaced here by their result:
    the window under test is after them (the test above sends SIGTERM to a real dvc repro)."""
    import os
    import signal

    from finetune.lifecycle import retrain as module

    (tmp_path / "raw.csv").write_text("id,text,label\nm1,hi,billing\n")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "b.csv").write_text("id,text,label\nm2,new text,shipping\n")
    monkeypatch.setattr(
        module, "_train_and_gate", lambda *a: module.RetrainResult("promoted", a[-1], "2", "2")
    )
    write = module._write_ledger

    def write_with_sigterm(*args: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives as the ledger is being written
        write(*args)

    monkeypatch.setattr(module, "_write_ledger", write_with_sigterm)
    cfg = config(
        {
            "paths.retrain_ledger": "ingested.json",
            "data.path": "raw.csv",
            "data.id_column": "id",
            "data.extra_columns": [],
            "data.split.method": "hash",
        }
    )
    spec = cfg.retrain.model_copy(update={"incoming": "in/*.csv", "lock_file": "r.lock"})
    with pytest.raises(module.Terminated, match=r"while writing the ledger; it finished that"):
        module.retrain(tmp_path, cfg, spec)
    assert "new text" in (tmp_path / "raw.csv").read_text(), "the rows the gate saw stay"
    assert set(read_ledger(tmp_path / "ingested.json")["files"]) == {"in/b.csv"}
    monkeypatch.setattr(module, "_write_ledger", write)
    assert module.retrain(tmp_path, cfg, spec).status == "no-new-data"


# --------------------------------------------------------------------------- real retrains


def retrain(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return sh(repo, str(BIN / "finetune"), "retrain", *args, check=False)


def client(repo: Path) -> MlflowClient:
    uri = f"sqlite:///{repo / '.mlflow' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def aliases(repo: Path) -> dict[str, str]:
    model = client(repo).get_registered_model(MODEL)
    return {alias: str(version) for alias, version in model.aliases.items()}


def versions(repo: Path) -> int:
    return len(client(repo).search_model_versions(f"name='{MODEL}'"))


def new_batch(repo: Path, name: str, n: int, start: int) -> Path:
    """``n`` new rows: demo messages with new ids and a follow-up sentence (not duplicates)."""
    demo = pd.read_csv(REPO / "data/raw/support_tickets.csv", dtype=str).iloc[start : start + n]
    demo = demo.assign(id=[f"{name}-{i}" for i in range(n)], text=demo["text"] + " Any update?")
    path = repo / "data" / "incoming" / f"{name}.csv"
    demo.to_csv(path, index=False)
    return path


def compose(repo: Path, *overrides: str) -> None:
    sh(repo, sys.executable, "-m", "finetune.core.config", "compose", *overrides)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return tiny_project(tmp_path_factory.mktemp("retrain"), tiny_model_dir, raw_rows=300)


@pytest.mark.slow
def test_first_retrain_ingests_batch2_and_first_model_is_champion(repo: Path) -> None:
    proc = retrain(repo)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "new data: data/incoming/support_tickets_batch2.csv" in out
    raw = repo / "data" / "raw" / "support_tickets.csv"
    assert len(pd.read_csv(raw)) == 300 + 350
    ledger = json.loads((repo / "data" / "incoming" / "ingested.json").read_text())
    entry = ledger["files"]["data/incoming/support_tickets_batch2.csv"]
    assert entry["rows_added"] == 350 and entry["champion_version"] == "1"
    # The new data version is recorded by DVC: dvc.lock holds the raw file's hash.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    (dep,) = [
        d for d in lock["stages"]["preprocess"]["deps"] if d["path"] == str(raw.relative_to(repo))
    ]
    assert dep["md5"] == hashlib.md5(raw.read_bytes()).hexdigest()
    assert aliases(repo) == {"champion": "1", "challenger": "1"}
    run = client(repo).get_run(client(repo).get_model_version(MODEL, "1").run_id)
    assert run.data.tags["promotion.outcome"] == "promoted"
    assert "first model" in run.data.tags["promotion.reason"]
    assert run.data.tags["data.version"] == entry["data_version"]


@pytest.mark.slow
def test_no_new_data_does_nothing_and_exits_zero_quickly(repo: Path) -> None:
    lock_before = (repo / "dvc.lock").read_bytes()
    began = time.perf_counter()
    proc = retrain(repo)
    seconds = time.perf_counter() - began
    print(f"finetune retrain with no new data: {seconds:.2f} s")
    assert proc.returncode == 0 and "no new data" in proc.stderr
    assert seconds < 15, "a no-op retrain takes seconds (generous bound for a loaded machine)"
    assert "running: dvc" not in proc.stderr and versions(repo) == 1
    assert (repo / "dvc.lock").read_bytes() == lock_before


@contextmanager
def hold_lock(repo: Path) -> Iterator[None]:
    """Hold the retrain lock the way a running retrain does, as "pid 4242"."""
    path = repo / ".dvc" / "tmp" / "finetune-retrain.lock"
    with exclusive_lock(path):
        holder_file(path).write_text("pid 4242 since test")
        yield


@pytest.mark.slow
def test_concurrent_start_exits_with_a_message_or_waits(repo: Path) -> None:
    with hold_lock(repo):
        proc = retrain(repo)
        assert proc.returncode == 75, proc.stderr
        assert "or registration is running (pid 4242 since test" in proc.stderr
        began = time.perf_counter()
        proc = retrain(repo, "--wait", "2")
        assert proc.returncode == 75 and "waited 2 s" in proc.stderr
        assert time.perf_counter() - began >= 2
        # a promote during a retrain: the same lock, the same code, the aliases untouched
        before = aliases(repo)
        proc = sh(repo, str(BIN / "finetune"), "promote", check=False)
        assert proc.returncode == 75, proc.stderr
        assert "or registration is running (pid 4242 since test" in proc.stderr
        proc = sh(repo, str(BIN / "finetune"), "promote", "--wait", "1", check=False)
        assert proc.returncode == 75 and "waited 1 s" in proc.stderr
        assert aliases(repo) == before
    # `finetune register` of the workspace's model, which the retrain registered: found again,
    # not registered twice, the aliases where they were
    count = versions(repo)
    proc = sh(repo, str(BIN / "finetune"), "register", check=False)
    assert proc.returncode == 0 and "is version 1, the challenger" in proc.stderr, proc.stderr
    assert versions(repo) == count and aliases(repo) == before
    # Waiting for a retrain that finishes meanwhile: the second one then runs.
    release = threading.Event()

    def holder() -> None:
        with hold_lock(repo):
            release.wait(timeout=30)

    thread = threading.Thread(target=holder)
    thread.start()
    time.sleep(0.5)
    threading.Timer(3, release.set).start()
    proc = retrain(repo, "--wait", "60")
    thread.join()
    assert proc.returncode == 0, proc.stderr
    assert "waiting up to 60 s" in proc.stderr and "no new data" in proc.stderr


@pytest.mark.slow
def test_new_data_promoted_when_the_gate_passes(repo: Path) -> None:
    new_batch(repo, "batch3", 60, 300)
    compose(repo, "promotion.min_f1_gain=-1", "promotion.max_recall_drop=1")
    proc = retrain(repo)
    assert proc.returncode == 0, proc.stderr
    assert "challenger v2 PROMOTED to champion" in proc.stderr
    assert aliases(repo) == {"champion": "2", "challenger": "2"}
    tags = client(repo).get_run(client(repo).get_model_version(MODEL, "2").run_id).data.tags
    assert tags["promotion.outcome"] == "promoted" and tags["promotion.champion_version"] == "1"
    decision = json.loads((repo / "reports" / "promotion" / "decision.json").read_text())
    assert decision["outcome"] == "promoted" and decision["min_f1_gain"] == -1
    assert decision["challenger"]["num_examples"] == decision["champion"]["num_examples"]
    assert "v2 PROMOTED" in (repo / "reports" / "promotion" / "report.md").read_text()


@pytest.mark.slow
def test_new_data_kept_when_the_gate_fails_and_pushed(repo: Path) -> None:
    new_batch(repo, "batch4", 60, 360)
    compose(repo, "promotion.min_f1_gain=1.0")
    proc = retrain(repo, "--push")
    assert proc.returncode == 0, proc.stderr
    assert "challenger v3 not promoted; champion stays v2" in proc.stderr
    assert "running: dvc push" in proc.stderr
    assert aliases(repo) == {"champion": "2", "challenger": "3"}
    tags = client(repo).get_run(client(repo).get_model_version(MODEL, "3").run_id).data.tags
    assert tags["promotion.outcome"] == "kept"
    assert "below the required +1.0000" in tags["promotion.reason"]
    ledger = json.loads((repo / "data" / "incoming" / "ingested.json").read_text())
    assert ledger["files"]["data/incoming/batch4.csv"]["outcome"] == "kept"


@pytest.mark.slow
def test_failures_keep_the_champion_restore_the_data_and_exit_non_zero(repo: Path) -> None:
    raw = repo / "data" / "raw" / "support_tickets.csv"
    before, ledger_before = raw.read_bytes(), (repo / "data/incoming/ingested.json").read_bytes()
    bad = repo / "data" / "incoming" / "bad_columns.csv"
    bad.write_text("id,message\nz1,hello\n")
    proc = retrain(repo)
    assert proc.returncode == 1
    assert "bad_columns.csv: missing column(s) ['text', 'label']" in proc.stderr
    bad.unlink()
    # A failure inside `dvc repro`: a new class with a single example cannot be split.
    lonely = repo / "data" / "incoming" / "lonely.csv"
    lonely.write_text("id,text,label,channel\nz2,please route me somewhere new,new_team,chat\n")
    proc = retrain(repo)
    assert proc.returncode == 1, proc.stderr
    assert "`dvc repro` failed" in proc.stderr and "champion unchanged" in proc.stderr
    lonely.unlink()
    assert raw.read_bytes() == before
    assert (repo / "data/incoming/ingested.json").read_bytes() == ledger_before
    assert aliases(repo) == {"champion": "2", "challenger": "3"} and versions(repo) == 3


@pytest.mark.slow
def test_dvc_push_then_pull_in_a_fresh_clone_restores_every_artifact(repo: Path) -> None:
    sh(repo, "dvc", "checkout")  # restores what the failed repro removed (from the cache)
    assert "up to date" in sh(repo, "dvc", "status").stdout
    sh(repo, "dvc", "push")  # the default remote from .dvc/config: ../finetune-dvc-remote
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "retrained")
    clone = repo.parent / "clone"
    sh(repo.parent, "git", "clone", "-q", str(repo), str(clone))
    began = time.perf_counter()
    pulled = sh(clone, "dvc", "pull")
    print(f"dvc pull in a fresh clone: {time.perf_counter() - began:.1f} s")
    assert "finetune-dvc-remote" in sh(clone, "dvc", "remote", "list").stdout
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    outs = [o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])]
    assert "models/model" in outs and "data/processed" in outs
    for out in outs:
        source, copy = repo / out, clone / out
        files = [p for p in source.rglob("*") if p.is_file()] if source.is_dir() else [source]
        assert files, out
        for file in files:
            twin = copy / file.relative_to(source) if source.is_dir() else copy
            assert twin.is_file(), f"{twin} not restored by dvc pull:\n{pulled.stdout}"
            assert twin.read_bytes() == file.read_bytes(), twin
    status = sh(clone, "dvc", "status")
    assert "up to date" in status.stdout, status.stdout


def monitor(repo: Path, model: str, *args: str) -> subprocess.CompletedProcess[str]:
    return sh(
        repo, str(BIN / "finetune"), "monitor", "-m", model, "-i", "other.csv", *args, check=False
    )


@pytest.mark.slow
def test_monitor_compares_an_old_version_with_its_own_data_and_drift_triggers_retrain(
    repo: Path,
) -> None:
    """v1 was trained before batch3 and batch4 arrived: its reference comes from the DVC
    cache by the hash its run recorded. A drift verdict makes `retrain --when drift` run once."""
    from tests.test_monitor import other_domain

    other_domain().to_csv(repo / "other.csv", index=False)
    first = client(repo).get_run(client(repo).get_model_version(MODEL, "1").run_id)
    processed = first.data.tags["data.md5.preprocess.outs.data/processed"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    (now,) = [o for o in lock["stages"]["preprocess"]["outs"] if o["path"] == "data/processed"]
    assert now["md5"] != processed  # the workspace moved on
    out = repo / "reports" / "monitor" / "v1"
    proc = monitor(repo, f"models:/{MODEL}/1", "-o", str(out))
    assert proc.returncode == 3, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"]["source"] == f"DVC cache {processed}"
    assert summary["model"]["version"] == "1" and summary["drift"] is True
    # the champion's baseline is cached: a second batch does not embed the reference again
    monitor(repo, f"models:/{MODEL}@champion")
    again = monitor(repo, f"models:/{MODEL}@champion")
    assert again.returncode == 3 and "from the cache" in again.stderr
    latest = json.loads((repo / "reports" / "monitor" / "latest.json").read_text())

    assert "nothing to do" in retrain(repo).stderr  # new-data (the default) ignores drift
    proc = retrain(repo, "--when", "drift")
    assert proc.returncode == 0, proc.stderr
    assert "monitor flagged drift" in proc.stderr and "running: dvc repro" in proc.stderr
    assert "to_label.csv" in proc.stderr  # no new labels: it says what would help
    ledger = json.loads((repo / "data" / "incoming" / "ingested.json").read_text())
    assert ledger["drift_handled"] == latest["mlflow_run_id"]
    proc = retrain(repo, "--when", "drift")  # the same verdict does not retrain twice
    assert proc.returncode == 0 and "no unhandled drift verdict" in proc.stderr
    assert "running: dvc" not in proc.stderr
