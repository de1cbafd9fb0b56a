"""Checkpoints: every finished toy is recorded; reruns resume with identical results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nplearn import InputError, nplm_test
from nplearn.toys import ToyEngine

from conftest import group_states, kill_group

OPTS = dict(expected=200.0, n_toys=12, n_centers=80, workers=1, seed=5)


@pytest.fixture
def samples(rng):
    return rng.normal(size=(4000, 2)), rng.normal(size=(200, 2))


def _records(root: Path) -> list[Path]:
    return sorted(root.glob("*/toy_*.json"))


def test_resume_gives_identical_results(tmp_path, samples, monkeypatch):
    ref, data = samples
    plain = nplm_test(ref, data, **OPTS)
    ck = tmp_path / "ck"
    first = nplm_test(ref, data, checkpoint=ck, **OPTS)
    np.testing.assert_array_equal(first.t_null, plain.t_null)
    recs = _records(ck)
    assert len(recs) == 12
    # lose some toys, as a killed run would; the rerun runs exactly those
    for p in recs[3:7]:
        p.unlink()
    ran = []
    real_run = ToyEngine.run
    monkeypatch.setattr(ToyEngine, "run", lambda self, i: ran.append(i) or real_run(self, i))
    again = nplm_test(ref, data, checkpoint=ck, **OPTS)
    assert ran == [3, 4, 5, 6]
    np.testing.assert_array_equal(again.t_null, plain.t_null)
    assert [t.to_dict() for t in again.toys][:3] == [t.to_dict() for t in first.toys][:3]
    # nothing left to do: no toy runs at all
    ran.clear()
    nplm_test(ref, data, checkpoint=ck, **OPTS)
    assert ran == []


def test_different_calibrations_never_mix(tmp_path, samples):
    ref, data = samples
    ck = tmp_path / "ck"
    nplm_test(ref, data, checkpoint=ck, **OPTS)
    nplm_test(ref, data, checkpoint=ck, **{**OPTS, "seed": 6})
    nplm_test(ref, data, checkpoint=ck, **{**OPTS, "sigma": 0.5})
    assert len([p for p in ck.iterdir() if p.is_dir()]) == 3
    # a record moved into another calibration's folder is refused and rerun
    folders = sorted(p for p in ck.iterdir() if p.is_dir())
    src = next(folders[0].glob("toy_*.json"))
    dst = folders[1] / src.name
    dst.write_bytes(src.read_bytes())
    res = nplm_test(ref, data, checkpoint=ck, **{**OPTS, "seed": 6})
    ref_run = nplm_test(ref, data, **{**OPTS, "seed": 6})
    np.testing.assert_array_equal(res.t_null, ref_run.t_null)


def test_corrupt_record_is_rerun(tmp_path, samples, caplog):
    ref, data = samples
    ck = tmp_path / "ck"
    first = nplm_test(ref, data, checkpoint=ck, **OPTS)
    rec = _records(ck)[2]
    rec.write_text(rec.read_text()[:40])  # a truncated file (not what we write, but possible)
    again = nplm_test(ref, data, checkpoint=ck, **OPTS)
    np.testing.assert_array_equal(again.t_null, first.t_null)
    assert "ignoring unreadable checkpoint record" in caplog.text
    json.loads(rec.read_text())  # rewritten whole


def test_temporaries_of_killed_writers_are_removed(tmp_path, samples, monkeypatch):
    # a writer killed between creating its temporary file and the rename leaves it
    # behind; the next run in the folder removes those of dead processes of this host
    # only (other shards, here or on other hosts, may still be writing theirs)
    import nplearn.io as nio

    ref, data = samples
    ck = tmp_path / "ck"
    first = nplm_test(ref, data, checkpoint=ck, **OPTS)
    folder = _records(ck)[0].parent
    written = []
    real = os.replace
    monkeypatch.setattr(nio.os, "replace", lambda a, b: written.append(a) or real(a, b))
    nio.write_text_atomic(folder / "probe.json", "{}")
    monkeypatch.undo()
    tag = nio._host_tag()
    assert Path(written[0]).name.startswith(f".probe.json.nplearn-{tag}-{os.getpid()}.")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = folder / f".toy_000000001.json.nplearn-{tag}-{dead}.ab_c12x.tmp"
    mine = folder / f".toy_000000002.json.nplearn-{tag}-{os.getpid()}.q1w2e3r4.tmp"
    other_host = folder / f".toy_000000003.json.nplearn-{tag}x-{dead}.zz99zz99.tmp"
    unknown = folder / ".toy_000000004.json.k3j4h5g6.tmp"
    fresh = folder / f".toy_000000005.json.nplearn-{tag}-{dead}.fr35hh00.tmp"
    for p in (stale, mine, other_host, unknown, fresh):
        p.write_text('{"partial')
    old = time.time() - 120  # a writer of another pid namespace may still write a fresh one
    for p in (stale, mine, other_host, unknown):
        os.utime(p, (old, old))
    again = nplm_test(ref, data, checkpoint=ck, **OPTS)
    np.testing.assert_array_equal(again.t_null, first.t_null)
    assert not stale.exists() and mine.exists() and other_host.exists() and unknown.exists()
    assert fresh.exists()


def test_checkpoint_must_be_a_folder(tmp_path, samples):
    ref, data = samples
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        nplm_test(ref, data, checkpoint=tmp_path / "f", **OPTS)


def test_checkpoint_write_failures_are_named(tmp_path, samples, monkeypatch):
    import nplearn.checkpoint as ckmod
    import nplearn.nplm as nplm_mod

    ref, data = samples
    # a folder that cannot take records fails before the observed fit
    fits = []
    real_fit = nplm_mod.nplm_fit
    monkeypatch.setattr(nplm_mod, "nplm_fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckmod, "_probe_write", full)
    with pytest.raises(InputError, match=r"ck: cannot write checkpoint records there "
                                         r"\(No space left on device\)"):
        nplm_test(ref, data, checkpoint=tmp_path / "ck", **OPTS)
    assert not fits
    monkeypatch.undo()
    # the disk fills up during the run: the record's write names the folder and says
    # that the records written so far are kept
    real_write = ckmod.write_json_atomic

    def full_for_records(path, obj):
        if Path(path).name.startswith("toy_"):
            full()
        real_write(path, obj)

    monkeypatch.setattr(ckmod, "write_json_atomic", full_for_records)
    with pytest.raises(InputError, match=r"cannot write the record of toy 0 \(No space left "
                                         r"on device\); the records already written are kept"):
        nplm_test(ref, data, checkpoint=tmp_path / "ck", **OPTS)


def test_sigkill_mid_run_then_resume(tmp_path, rng):
    # a real run in worker processes, its main process killed with SIGKILL while toys
    # are in flight: the workers end by themselves (they used to finish their chunk and
    # wait for ever), and a rerun resumes to exactly the result of an uninterrupted run
    np.save(tmp_path / "ref.npy", rng.normal(size=(12000, 2)))
    np.save(tmp_path / "dat.npy", rng.normal(size=(500, 2)))
    base = [sys.executable, "-m", "nplearn", "test", "--reference", str(tmp_path / "ref.npy"),
            "--data", str(tmp_path / "dat.npy"), "--toys", "80", "--centers", "200",
            "--workers", "2", "-q"]
    ck = tmp_path / "ck"
    proc = subprocess.Popen([*base, "--checkpoint", str(ck)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while len(_records(ck)) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # the main process only, as `kill -9 PID` does
    proc.wait()
    try:
        states = group_states(proc.pid, wait_s=30)  # the workers end by themselves
        assert all(st.startswith("Z") for st in states), states
    finally:
        kill_group(proc.pid)
    n_killed = len(_records(ck))
    assert 10 <= n_killed < 80, n_killed
    for p in _records(ck):  # every record on disk is complete
        json.loads(p.read_text())
    out = tmp_path / "resumed.json"
    subprocess.run([*base, "--checkpoint", str(ck), "--json", str(out)], check=True,
                   timeout=600)
    full = tmp_path / "full.json"
    subprocess.run([*base, "--json", str(full)], check=True, timeout=600)
    a, b = json.loads(out.read_text()), json.loads(full.read_text())
    assert a["t_null"] == b["t_null"] and a["t_obs"] == b["t_obs"]
    assert len(_records(ck)) == 80


def test_shards_merge_to_the_direct_result(tmp_path, rng, capsys):
    from nplearn.cli import main

    np.save(tmp_path / "ref.npy", rng.normal(size=(3000, 2)))
    np.save(tmp_path / "dat.npy", rng.normal(size=(150, 2)))
    cfg = tmp_path / "run.toml"
    cfg.write_text('reference = "ref.npy"\ndata = "dat.npy"\nn_toys = 20\nn_centers = 60\n'
                   'seed = 2\nworkers = 1\nsigmas = [0.5, 2.0]\n')
    shards = tmp_path / "shards"
    # shards in any order, one of them twice (a resubmitted batch job)
    for rng_spec in ("12:20", "0:7", "7:12", "0:7"):
        assert main(["toys", "--config", str(cfg), "--toys", rng_spec, "--out", str(shards),
                     "-q"]) == 0
    merged, direct = tmp_path / "merged.json", tmp_path / "direct.json"
    assert main(["merge", str(shards), "--config", str(cfg), "--json", str(merged)]) == 0
    assert main(["test", "--config", str(cfg), "--json", str(direct), "-q"]) == 0
    a, b = json.loads(merged.read_text()), json.loads(direct.read_text())
    assert a["t_null_widths"] == b["t_null_widths"] and a["p_value"] == b["p_value"]
    capsys.readouterr()
    # records beyond the toys asked for are used by no merge: it says how many
    assert main(["merge", str(shards), "--config", str(cfg), "--toys", "15"]) == 0
    assert "holds 5 more toy record(s) than the 15 used here" in capsys.readouterr().err
    # a missing toy, or records of another configuration, are refused
    assert main(["merge", str(shards), "--config", str(cfg), "--toys", "25"]) == 2
    assert "5 of 25 toys have no record" in capsys.readouterr().err
    other = tmp_path / "other.toml"
    other.write_text(cfg.read_text().replace("seed = 2", "seed = 3"))
    assert main(["merge", str(shards), "--config", str(other)]) == 2
    err = capsys.readouterr().err
    assert "holds no records of this configuration" in err
    assert "found records of 1 other configuration(s)" in err
    assert "differs in seed (the seed)" in err  # what differs, not only that it does
    assert main(["toys", "--config", str(cfg), "--toys", "5:2", "--out", str(shards)]) == 2
    # every record names its budget and host; a merge under another budget says so
    rec = json.loads(next(shards.glob("*/toy_000000003.json")).read_text())
    assert rec["memory_budget"] == b["provenance"]["execution"]["memory_budget"]
    assert rec["host"] == b["provenance"]["host"]
    pinned = tmp_path / "pinned.toml"
    pinned.write_text(cfg.read_text() + "memory_budget = 100000000\n")
    capsys.readouterr()
    assert main(["merge", str(shards), "--config", str(pinned), "--json",
                 str(tmp_path / "m2.json")]) == 0
    assert "20 recorded toy(s) were computed with another memory budget" in \
        capsys.readouterr().err
    execution = json.loads((tmp_path / "m2.json").read_text())["provenance"]["execution"]
    assert execution["checkpoint_memory_budgets"] == {str(rec["memory_budget"]): 20}
    # a corrupt record: a merge counts it as missing (it does not rerun toys); so
    # does valid JSON that is no record
    next(shards.glob("*/toy_000000004.json")).write_text("{")
    next(shards.glob("*/toy_000000005.json")).write_text("null")
    next(shards.glob("*/toy_000000006.json")).write_text('{"toy": [1, 2]}')
    assert main(["merge", str(shards), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "the toy counts as missing" in err and "reruns" not in err
    assert "3 of 20 toys have no record" in err


def test_fingerprint_tells_warm_from_cold_width_fits():
    # several widths: warm and cold fits differ within the solver tolerance, so their
    # checkpoints must not mix; a single width is fitted the same way either way
    from nplearn.checkpoint import engine_fingerprint

    pool = np.random.default_rng(0).normal(size=(500, 2))
    params = {"sigma": 1.0, "n_centers": 20}
    fp = {(k, w): engine_fingerprint(ToyEngine(params, 50.0, 1, pool=pool, sigmas=k,
                                               warm_start=w))
          for k in ((), (0.5, 1.0)) for w in (True, False)}
    assert fp[(0.5, 1.0), True] != fp[(0.5, 1.0), False]
    assert fp[(), True] == fp[(), False]


def test_fingerprint_follows_the_code_and_the_generator_module(tmp_path, monkeypatch):
    """Records written by other code, or by a generator whose module was edited, are
    not reused (a function pickles by its name only)."""
    import importlib

    import nplearn.checkpoint as ckmod

    pool = np.random.default_rng(0).normal(size=(500, 2))
    engine = ToyEngine({"sigma": 1.0, "n_centers": 20}, 50.0, 1, pool=pool)
    base = ckmod.engine_fingerprint(engine)
    monkeypatch.setattr(ckmod, "source_digest", lambda: "0" * 64)
    assert ckmod.engine_fingerprint(engine) != base
    monkeypatch.undo()

    mod = tmp_path / "genmod_fp.py"
    mod.write_text("SCALE = 1.0\ndef gen(rng):\n    return rng.normal(0, SCALE, size=(50, 2))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    m = importlib.import_module("genmod_fp")
    ref = np.random.default_rng(1).normal(size=(300, 2))
    g1 = ToyEngine({"sigma": 1.0, "n_centers": 20}, 50.0, 1, generator=m.gen, reference=ref)
    fp1 = ckmod.engine_fingerprint(g1)
    assert ckmod.engine_fingerprint(g1) == fp1  # stable
    mod.write_text("SCALE = 2.0\ndef gen(rng):\n    return rng.normal(0, SCALE, size=(50, 2))\n")
    m = importlib.reload(m)
    g2 = ToyEngine({"sigma": 1.0, "n_centers": 20}, 50.0, 1, generator=m.gen, reference=ref)
    fp2 = ckmod.engine_fingerprint(g2)
    assert fp2 != fp1
    # the whole module counts (fail closed: a default argument, a config object or a
    # helper anywhere in it can change the toys)
    mod.write_text("N = 50\nSCALE = 2.0\n"
                   "def gen(rng, n=N):\n    return rng.normal(0, SCALE, size=(n, 2))\n")
    m = importlib.reload(m)
    g3 = ToyEngine({"sigma": 1.0, "n_centers": 20}, 50.0, 1, generator=m.gen, reference=ref)
    fp3 = ckmod.engine_fingerprint(g3)
    mod.write_text("N = 60\nSCALE = 2.0\n"
                   "def gen(rng, n=N):\n    return rng.normal(0, SCALE, size=(n, 2))\n")
    m = importlib.reload(m)
    g4 = ToyEngine({"sigma": 1.0, "n_centers": 20}, 50.0, 1, generator=m.gen, reference=ref)
    assert len({fp2, fp3, ckmod.engine_fingerprint(g4)}) == 3


def test_generator_digest_without_source_is_stable_and_sees_edits():
    """Functions typed at a prompt have no source: their compiled code is digested,
    names included (rng.normal vs rng.uniform), identically in every process (the
    repr of nested code objects and set constants would not be)."""
    code = ("import numpy as np\nfrom nplearn.checkpoint import generator_source_digest as g\n"
            "ns = {{}}\nexec('def gen(rng):\\n    k = [x * 2 for x in range(3)]\\n"
            "    return rng.{}(size=(10, 1)) if 1 in {{1, 2, 3}} else k', ns)\n"
            "print(g(ns['gen']))\n")
    out = set()
    for name, seed in (("normal", "1"), ("normal", "2"), ("uniform", "1")):
        r = subprocess.run([sys.executable, "-c", code.format(name)], capture_output=True,
                           text=True, env={**os.environ, "PYTHONHASHSEED": seed}, check=True)
        out.add((name, r.stdout.strip()))
    digests = {n: {d for m, d in out if m == n} for n in ("normal", "uniform")}
    assert len(digests["normal"]) == 1  # stable across processes and hash seeds
    assert digests["normal"] != digests["uniform"]


def test_out_of_memory_toys_are_retried_and_never_recorded(tmp_path, samples, monkeypatch):
    import torch

    import nplearn.toys as T

    ref, data = samples
    opts = {**OPTS, "n_toys": 5}
    plain = nplm_test(ref, data, **opts)
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    real = T.ToyEngine._run_once
    fails = {1: 1, 3: 2}  # toy 1 fails once (the retry succeeds), toy 3 twice

    def flaky(self, i):
        if fails.get(i, 0) > 0:
            fails[i] -= 1
            raise oom("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, i)

    monkeypatch.setattr(T.ToyEngine, "_run_once", flaky)
    ck = tmp_path / "ck"
    first = nplm_test(ref, data, checkpoint=ck, **opts)
    assert [t.ok for t in first.toys] == [True, True, True, False, True]
    assert first.toys[3].message.startswith(T.OUT_OF_MEMORY)
    assert first.toys[1].t == plain.toys[1].t
    assert len(_records(ck)) == 4  # toy 3 is not recorded ...
    again = nplm_test(ref, data, checkpoint=ck, **opts)  # ... so the rerun retries it
    np.testing.assert_array_equal(again.t_null, plain.t_null)
    assert again.provenance["execution"]["from_checkpoint"] == 4
    # a numerical failure is not a resource error: recorded as failed, not retried
    assert not T.is_resource_error(RuntimeError("linalg.cholesky: not positive-definite"))
    assert T.is_resource_error(RuntimeError("DefaultCPUAllocator: can't allocate memory"))
    assert T.is_resource_error(MemoryError())


def test_memory_budget_is_resolved_once_per_calibration(tmp_path, samples):
    """The default budget is split between the workers asked for, the same for the
    observed fit, every toy and a resumed run (it chooses the feature storage)."""
    from nplearn._torch_utils import default_memory_budget
    from nplearn.toys import run_toys, toy_memory_budget

    full = default_memory_budget(__import__("torch").device("cpu"))
    assert toy_memory_budget({"device": "cpu"}, 2) == full // 2
    assert toy_memory_budget({"device": "cpu"}, 1) == full
    assert toy_memory_budget({"device": "cpu"}, 1, executor=object()) == full // 2
    assert toy_memory_budget({"device": "cpu", "memory_budget": 123}, 4) == 123
    pool = np.random.default_rng(0).normal(size=(2000, 1))
    engine = ToyEngine({"sigma": 1.0, "n_centers": 40}, 80.0, 1, pool=pool)
    rep: dict = {}
    run_toys(engine, range(4), workers=2, checkpoint=tmp_path / "ck", report=rep)
    assert rep["memory_budget"] == full // 2 and rep["workers"] == 2
    for p in _records(tmp_path / "ck")[1:]:
        p.unlink()
    rep2: dict = {}
    run_toys(engine, range(4), workers=2, checkpoint=tmp_path / "ck", report=rep2)
    assert rep2["memory_budget"] == full // 2 and rep2["from_checkpoint"] == 1
    # every toy from the checkpoint: nothing runs, the count says so
    rep3: dict = {}
    run_toys(engine, range(4), workers=2, checkpoint=tmp_path / "ck", report=rep3)
    assert rep3["from_checkpoint"] == 4 and rep3["workers"] == 0
    ref, data = samples
    res = nplm_test(ref, data, **{**OPTS, "n_toys": 3})
    ex = res.provenance["execution"]
    assert ex["memory_budget"] == full and ex["workers"] == 1
    # the observed fit's budget does not depend on the number of toys (a refit without
    # toys, as `nplearn plot` makes, uses the same budget)
    none = nplm_test(ref, data, **{**OPTS, "n_toys": 0, "workers": 2})
    assert none.provenance["execution"]["memory_budget"] == full // 2
    assert ex["observed_fit_threads"] == 1
    assert res.provenance["input_arrays"]["reference"]["shape"] == [4000, 2]
    assert res.provenance["toys"]["method"].startswith("resampled")
    assert len(res.provenance["nplearn_source"]) == 64


def test_cuda_budget_is_split_between_workers_sharing_a_gpu(monkeypatch):
    """Round-robin GPU workers: 8 workers on 2 GPUs put 4 on each, and each GPU's
    free memory is shared by its 4; the GPU with the least free memory decides."""
    import torch

    import nplearn._torch_utils as tu
    import nplearn.toys as T

    asked = []
    monkeypatch.setattr(tu, "resolve_device", lambda d: torch.device("cuda"))
    monkeypatch.setattr(tu, "default_memory_budget", lambda dev: asked.append(dev) or 40_000)
    monkeypatch.setattr(T, "visible_gpus", lambda: 2)
    assert T.toy_memory_budget({"device": "cuda"}, 8) == 40_000 // 4
    assert T.toy_memory_budget({"device": "cuda"}, 3) == 40_000 // 2
    assert T.toy_memory_budget({"device": "cuda"}, None) == 40_000  # one per GPU
    assert T.toy_memory_budget({"device": "cuda"}, 1) == 40_000
    assert {str(d) for d in asked} == {"cuda"}  # only the current GPU is asked


def test_records_of_other_threads_or_versions_are_reported(tmp_path, samples, caplog):
    # the torch threads and the library versions are not part of the fingerprint (shards
    # on other machines share records) but move t in its last digits: each record keeps
    # those of the process that wrote it, and a run that loads others says so
    ref, data = samples
    ck = tmp_path / "ck"
    nplm_test(ref, data, checkpoint=ck, **{**OPTS, "threads_per_worker": 2})
    rec = json.loads(_records(ck)[0].read_text())
    assert rec["settings"]["threads_per_worker"] == 2 and "torch" in rec["settings"]
    res = nplm_test(ref, data, checkpoint=ck, **OPTS)
    assert "recorded toys computed with other settings than this run's " \
        "(threads_per_worker 2: 12 toy(s)" in caplog.text
    assert res.provenance["execution"]["checkpoint_other_settings"] == {
        "threads_per_worker 2": 12}


def test_write_probes_of_concurrent_writers_do_not_collide(tmp_path):
    # shards in containers often share one pid: each probe takes a name of its own (a
    # probe named by the pid was deleted by another writer, which then failed)
    from concurrent.futures import ThreadPoolExecutor

    from nplearn.checkpoint import check_checkpoint_folder

    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda _: check_checkpoint_folder(tmp_path / "ck"), range(400)))
    assert list((tmp_path / "ck").iterdir()) == []
