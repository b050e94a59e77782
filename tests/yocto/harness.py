# SPDX-License-Identifier: Apache-2.0
"""Drives bitbake's own bb library in-process for the Yocto tests.

bb comes from the bitbake-setup wheel, which carries no bitbake-worker nor
hash equivalence server: so configuration and recipes are parsed by bb's
real CookerDataBuilder (layer.conf checks, LAYERSERIES_COMPAT, BBCLASSEXTEND
variants, anonymous python, addtask), and a small in-process run queue
executes tasks with bb.build.exec_task in the order their `deps`,
`[depends]` and `[deptask]` give. Only those dependencies make another
recipe's task run: a task that forgets a dependency fails here too.

Task hashes are computed the way bb.siggen does (basehash from bb's
dependency analysis, plus file-checksums, plus the dependencies' hashes).
"""

import hashlib
import logging
import os
import pathlib
import sys
import textwrap

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
HARNESS_LAYER = HERE / "meta-harness"
sys.path.insert(0, str(HERE / "stubs"))

import bb  # noqa: E402
import bb.build  # noqa: E402
import bb.cache  # noqa: E402
import bb.cookerdata  # noqa: E402
import bb.data  # noqa: E402
import bb.fetch2  # noqa: E402
import bb.parse  # noqa: E402
import bb.utils  # noqa: E402


class BitbakeError(Exception):
    """Parsing or a task failed; the message holds what bitbake logged."""


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


class Build:
    """A build directory with bblayers.conf and local.conf, parsed by bb."""

    def __init__(self, topdir, local_conf="", layers=None, corename="wrynose"):
        self.topdir = pathlib.Path(topdir)
        self.layers = [str(p) for p in (layers or [HARNESS_LAYER, REPO])]
        conf = self.topdir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "bblayers.conf").write_text(
            'BBPATH = "${TOPDIR}"\nBBFILES ?= ""\nHARNESS_CORENAME = "%s"\nBBLAYERS = "%s"\n'
            % (corename, " ".join(self.layers)))
        (conf / "local.conf").write_text(textwrap.dedent(local_conf))
        self.recipes = {}
        self.done = {}
        self.capture = _Capture()
        self.data = None

    # Parsing ---------------------------------------------------------------

    def parse(self, only=None):
        """Parses the configuration and every recipe (or those in `only`)."""
        logger = logging.getLogger("BitBake")
        logger.addHandler(self.capture)
        old = os.getcwd()
        os.chdir(self.topdir)
        try:
            cfg = bb.cookerdata.CookerConfiguration()
            cfg.env = {"PATH": "/usr/bin:/bin", "HOME": str(self.topdir)}
            builder = bb.cookerdata.CookerDataBuilder(cfg)
            builder.parseBaseConfiguration()
            self.builder = builder
            self.data = builder.data
            files, appends = self._bbfiles(self.data)
            for fn in files:
                if only and not any(os.path.basename(fn).startswith(o) for o in only):
                    continue
                stores = builder.parseRecipeVariants(fn, appends.get(fn, []))
                for variant, d in stores.items():
                    if d.getVar("__SKIPPED"):
                        continue
                    vfn = bb.cache.realfn2virtual(fn, variant, "")
                    self.recipes[d.getVar("PN")] = (vfn, d)
        except (bb.BBHandledException, bb.parse.SkipRecipe, Exception) as e:
            raise BitbakeError(self._message(e)) from e
        finally:
            os.chdir(old)
        return self

    def _bbfiles(self, d):
        import glob
        files = []
        for pattern in (d.getVar("BBFILES") or "").split():
            files += glob.glob(pattern)
        recipes = sorted(f for f in set(files) if f.endswith(".bb"))
        appends = {}
        for app in sorted(f for f in set(files) if f.endswith(".bbappend")):
            stem = os.path.basename(app)[:-len(".bbappend")]
            for fn in recipes:
                name = os.path.basename(fn)[:-len(".bb")]
                if name == stem or ("%" in stem and name.startswith(stem.split("%")[0])):
                    appends.setdefault(fn, []).append(app)
        return recipes, appends

    def _message(self, exc=None):
        lines = list(self.capture.messages)
        if exc is not None and str(exc):
            lines.append(str(exc))
        return "\n".join(lines) or repr(exc)

    def d(self, pn):
        return self.recipes[pn][1]

    # Running tasks ---------------------------------------------------------

    def _deps(self, pn, task):
        """The tasks (pn, task) that must run before `task` of `pn`."""
        d = self.d(pn)
        deps = [(pn, t) for t in (d.getVarFlag(task, "deps", False) or [])]
        for dep in (d.getVarFlag(task, "depends") or "").split():
            dpn, _, dtask = dep.partition(":")
            if dpn not in self.recipes:
                raise BitbakeError("%s:%s [depends] names %s, which no recipe provides" % (pn, task, dpn))
            deps.append((dpn, dtask))
        for dtask in (d.getVarFlag(task, "deptask") or "").split():
            for dpn in (d.getVar("DEPENDS") or "").split():
                deps.append((dpn, dtask))
        return deps

    def run(self, pn, task):
        """Runs `task` of `pn` after everything it depends on."""
        if (pn, task) in self.done:
            return
        if pn not in self.recipes:
            raise BitbakeError("no recipe provides %s" % pn)
        for dep in self._deps(pn, task):
            self.run(*dep)
        vfn, d = self.recipes[pn]
        if not d.getVarFlag(task, "task", False):
            raise BitbakeError("%s has no task %s" % (pn, task))
        bb.parse.siggen.setup_datacache_from_datastore(vfn, d)
        old, stdin = os.getcwd(), sys.stdin
        self.capture.messages.clear()
        try:
            os.chdir(self.topdir)
            # Tasks run with stdin on /dev/null, as bitbake-worker runs them.
            sys.stdin = open(os.devnull)
            rc = bb.build.exec_task(vfn, task, d)
        finally:
            sys.stdin.close()
            sys.stdin = stdin
            os.chdir(old)
        if rc != 0:
            log = pathlib.Path(d.getVar("T")) / ("log." + task)
            text = log.read_text(errors="replace") if log.exists() else ""
            raise BitbakeError("%s:%s failed\n%s\n%s" % (pn, task, self._message(), text))
        self.done[(pn, task)] = True

    def tasks(self, pn):
        return list(self.d(pn).getVar("__BBTASKS", False) or [])

    def task_deps(self, pn, task):
        return self._deps(pn, task)

    # Signatures ------------------------------------------------------------

    def taskhash(self, pn, task, _seen=None):
        """The task hash as bb.siggen computes it: basehash, file checksums
        and the hashes of the tasks it depends on."""
        vfn, d = self.recipes[pn]
        data = d.getVar("__siggen_basehashes", False)[task]
        for dep in sorted(set(self._deps(pn, task))):
            data += self.taskhash(*dep)
        flag = d.getVarFlag(task, "file-checksums")
        if flag:
            for f, cs in sorted(bb.fetch2.get_file_checksums(flag, pn, set())):
                if cs:
                    data += cs
        return hashlib.sha256(data.encode()).hexdigest()

    def basehash(self, pn, task):
        return self.d(pn).getVar("__siggen_basehashes", False)[task]

    def vardeps(self, pn, task):
        """Every variable the task's signature covers, per bb's analysis."""
        d = self.d(pn)
        gendeps = d.getVar("__siggen_gendeps", False)
        seen, todo = set(), [task]
        while todo:
            v = todo.pop()
            if v in seen:
                continue
            seen.add(v)
            todo.extend(gendeps.get(v, ()))
        return seen
