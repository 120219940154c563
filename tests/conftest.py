"""Shared fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What `make repro` produced in this checkout: no test may change it.
PIPELINE = ("data", "results", "reports", "README.md")


def _snapshot() -> dict[str, tuple[int, int]]:
    out = {}
    for name in PIPELINE:
        top = ROOT / name
        for p in ([top] if top.is_file() else sorted(top.rglob("*")) if top.is_dir() else []):
            if p.is_file():
                st = p.stat()
                out[str(p.relative_to(ROOT))] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def one_thread():
    """torch on one thread for the test: two busy threads on two shared CI cores are much
    slower than one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def checkout_untouched():
    """`make test` leaves the checkout's data/, results/, reports/ and README.md as they were
    (a finished `make repro` stays valid): fails the session otherwise, naming the files."""
    before = _snapshot()
    yield
    after = _snapshot()
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"the tests changed files of the checkout's pipeline: {changed[:10]}"


@pytest.fixture
def project(tmp_path):
    """A fake project (tests/fakes.py) with every file the evaluate and table4 stages read."""
    from fakes import make_fake_project

    return make_fake_project(tmp_path)
