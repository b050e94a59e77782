# SPDX-License-Identifier: Apache-2.0
"""recipes-tools/bundlegen/bundlegen-crates.inc is in step with Cargo.lock."""

import subprocess
import sys
import tomllib

import bb.fetch2

import harness

SCRIPT = harness.REPO / "scripts" / "gen-crates-inc"


def test_include_is_in_sync_with_cargo_lock():
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout


def test_check_fails_on_drift(tmp_path):
    lock = (harness.REPO / "Cargo.lock").read_text()
    drifted = tmp_path / "Cargo.lock"
    drifted.write_text(lock.replace('name = "anyhow"\nversion = "', 'name = "anyhow"\nversion = "9', 1))
    result = subprocess.run([sys.executable, str(SCRIPT), "--check", "--lock", str(drifted)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 1
    assert "out of date" in result.stdout and "anyhow/9" in result.stdout


def test_bitbake_fetcher_sees_every_locked_crate_with_its_checksum(build):
    """The recipe as bitbake parses it fetches exactly Cargo.lock's crates.io
    packages, each with the sha256 Cargo.lock records."""
    b = build()
    d = b.d("bundlegen-native")
    crates = [u for u in d.getVar("SRC_URI").split() if u.startswith("crate://")]
    fetcher = bb.fetch2.Fetch(crates, d)
    got = {}
    for url in crates:
        ud = fetcher.ud[url]
        got[ud.parm["name"]] = d.getVarFlag("SRC_URI", ud.parm["name"] + ".sha256sum")
    lock = tomllib.loads((harness.REPO / "Cargo.lock").read_text())
    want = {"%s-%s" % (p["name"], p["version"]): p["checksum"] for p in lock["package"] if p.get("source")}
    assert got == want
