# SPDX-License-Identifier: Apache-2.0
"""Runs the real bitbake, through kas, on the real layers the kas files name.

The layers come from `../shared/yocto-layers` (release tarballs made from
the upstream repositories, see its SOURCES) when that folder exists: each
tarball becomes a local git repository with the branch the kas files ask
for, and KAS_PREMIRRORS points each upstream URL of the kas files at it.
Without that folder kas clones the upstream repositories itself. With
neither, the tests fail and say so (NEEDS). Nothing else in the test suite
reads `../shared`.

BitBake refuses to run as root: when the tests run as root, every command
runs as the unprivileged user BUNDLEGEN_YOCTO_USER (`bundlegen-ci`, which
.ci/run creates) with a clean environment.

Everything lives in one machine-level cache directory, BUNDLEGEN_YOCTO_CACHE
(/var/cache/bundlegen-ci/yocto), so a second run on the same machine reuses
the repositories and bitbake's parse cache:

    mirrors/<release>/<repo>        git repositories made from the tarballs
    src/bundlegen                   this checkout's files (see sync_layer)
    <release>/work                  kas's work directory (the clones)
    <release>/build-<machine>       one build directory per machine
    downloads                       DL_DIR
    timings.log                     how long each bitbake command took

A lock file serialises test sessions that share the cache.
"""

import fcntl
import hashlib
import os
import pathlib
import pwd
import shutil
import subprocess
import time

import yaml

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
SHARED = REPO.parent / "shared" / "yocto-layers"
CACHE = pathlib.Path(os.environ.get("BUNDLEGEN_YOCTO_CACHE", "/var/cache/bundlegen-ci/yocto"))
USER = os.environ.get("BUNDLEGEN_YOCTO_USER", "bundlegen-ci")
MACHINES = ["qemux86-64", "qemuarm64"]
KAS_DIR = "meta-bundlegen/kas"
TEST_KAS = "tests/yocto/kas/real-layers.yml"

# The exact wording other work relies on: keep it.
NEEDS = ("the real-layer tests need ../shared/yocto-layers or network access to the upstream "
         "layer repositories")


_LOCK = None


class SetupError(Exception):
    """The real layers cannot be used here; the message says why."""


def _log_time(what, seconds):
    with open(CACHE / "timings.log", "a") as f:
        f.write("%s %7.1fs %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), seconds, what))


def kas_repos():
    """{name: (url, branch)} of the remote repositories the kas files name
    (meta-bundlegen/kas/common.yml, which both machine files include)."""
    common = yaml.safe_load((REPO / KAS_DIR / "common.yml").read_text())
    default = common.get("defaults", {}).get("repos", {}).get("branch")
    out = {}
    for name, repo in common["repos"].items():
        if repo and repo.get("url"):
            out[name] = (repo["url"], str(repo.get("branch", default)))
    return out


class Runner:
    """Runs commands as the unprivileged user with a clean environment."""

    def __init__(self):
        self.user = None
        if os.getuid() == 0:
            try:
                self.user = pwd.getpwnam(USER)
            except KeyError:
                raise SetupError("bitbake refuses to run as root and there is no user '%s' to run it as: "
                                 "create it (`useradd --system --create-home %s`, as .ci/run does) or set "
                                 "BUNDLEGEN_YOCTO_USER" % (USER, USER))
        self.home = CACHE / "home"

    def mkdir(self, path):
        """Makes `path` and its missing parents, owned by the user."""
        missing = []
        while not path.is_dir():
            missing.append(path)
            path = path.parent
        for p in reversed(missing):
            p.mkdir()
            self.chown(p)

    def chown(self, path):
        if self.user:
            subprocess.run(["chown", "-R", "%d:%d" % (self.user.pw_uid, self.user.pw_gid), str(path)], check=True)

    def env(self, extra=None):
        env = {
            "HOME": str(self.home),
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "en_US.UTF-8",
            "LC_ALL": "en_US.UTF-8",
            "GIT_AUTHOR_NAME": "bundlegen tests", "GIT_AUTHOR_EMAIL": "tests@bundlegen.invalid",
            "GIT_COMMITTER_NAME": "bundlegen tests", "GIT_COMMITTER_EMAIL": "tests@bundlegen.invalid",
        }
        env.update(extra or {})
        return env

    def run(self, args, cwd, extra_env=None, timeout=None, check=True):
        env = self.env(extra_env)
        cmd = [str(a) for a in args]
        if self.user:
            cmd = ["runuser", "-u", USER, "--", "env", "-i"] + ["%s=%s" % kv for kv in sorted(env.items())] + cmd
            env = None
        result = subprocess.run(cmd, cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", timeout=timeout)
        if check and result.returncode != 0:
            raise SetupError("%s failed (exit %d):\n%s" % (" ".join(args), result.returncode, result.stdout[-6000:]))
        return result


def kas_command():
    """kas from a venv of the system Python, which the unprivileged user can
    run (.ci/run makes it): BUNDLEGEN_KAS, or /opt/bundlegen-ci/kas-venv."""
    kas = os.environ.get("BUNDLEGEN_KAS", "/opt/bundlegen-ci/kas-venv/bin/kas")
    if not os.access(kas, os.X_OK):
        raise SetupError("kas is not at %s: make a venv of /usr/bin/python3 there and `pip install kas` "
                         "(.ci/run does), or set BUNDLEGEN_KAS" % kas)
    return kas


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shared_sources():
    """{(release, repo): (upstream, branch, commit)} from ../shared/yocto-layers/SOURCES."""
    out = {}
    for line in (SHARED / "SOURCES").read_text().splitlines():
        if line.strip():
            release, name, upstream, branch, commit = line.split()
            out[(release, name)] = (upstream, branch, commit)
    return out


class RealLayers:
    """The real layers of one release, set up once per test session."""

    def __init__(self, release="wrynose"):
        self.release = release
        self.runner = Runner()
        self.premirrors = ""
        self.origin = None
        self.layer = CACHE / "src" / "bundlegen"
        self.workdir = CACHE / release / "work"

    # Setup ---------------------------------------------------------------

    def lock(self):
        """Takes the cache's lock for this process (once, however many
        releases are set up)."""
        global _LOCK
        CACHE.mkdir(parents=True, exist_ok=True)
        if self.runner.user and CACHE.stat().st_uid != self.runner.user.pw_uid:
            self.runner.chown(CACHE)
        if _LOCK is None:
            _LOCK = open(CACHE / ".lock", "a+")
            fcntl.flock(_LOCK, fcntl.LOCK_EX)

    def unlock(self):
        pass  # held until the process ends

    def setup(self):
        self.lock()
        self.runner.home.mkdir(exist_ok=True)
        self.runner.chown(self.runner.home)
        if SHARED.is_dir():
            self._mirrors()
            self.origin = "local git repositories made from %s" % SHARED
        else:
            self._check_network()
            self.origin = "upstream, fetched by kas"
        self.sync_layer()
        return self

    def _mirrors(self):
        """A git repository per tarball, with the branch the kas file wants;
        KAS_PREMIRRORS maps each kas URL to it."""
        sources = shared_sources()
        lines = []
        top = CACHE / "mirrors" / self.release
        top.mkdir(parents=True, exist_ok=True)
        self.runner.chown(top.parent)
        for name, (url, branch) in sorted(kas_repos().items()):
            if self.release != "wrynose":
                branch = sources[(self.release, name)][1]
            tarball = SHARED / self.release / ("%s.tar.xz" % name)
            if not tarball.is_file():
                raise SetupError("%s is missing: %s" % (tarball, NEEDS))
            upstream, sbranch, commit = sources[(self.release, name)]
            repo = top / name
            stamp = top / (name + ".stamp")
            want = "%s %s %s\n" % (_sha256(tarball), branch, commit)
            if not (stamp.is_file() and stamp.read_text() == want and (repo / ".git").is_dir()):
                start = time.monotonic()
                if repo.exists():
                    shutil.rmtree(repo)
                tmp = top / (".unpack-" + name)
                if tmp.exists():
                    shutil.rmtree(tmp)
                tmp.mkdir()
                self.runner.chown(tmp)
                self.runner.run(["tar", "-xJf", tarball, "-C", tmp], cwd=top)
                (tmp / name).rename(repo)
                tmp.rmdir()
                # Upstream's own commit cannot be recreated from a tarball: the
                # branch holds one commit whose message names it.
                self.runner.run(["git", "init", "-q", "-b", branch], cwd=repo)
                self.runner.run(["git", "add", "-A", "-f"], cwd=repo)
                self.runner.run(["git", "commit", "-q", "-m", "%s %s at %s (from %s)"
                                 % (upstream, sbranch, commit, tarball.name)], cwd=repo,
                                extra_env={"GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z",
                                           "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z"})
                stamp.write_text(want)
                self.runner.chown(stamp)
                _log_time("made git repository %s/%s" % (self.release, name), time.monotonic() - start)
            lines.append("^%s$ file://%s" % (url.replace(".", "\\."), repo))
        self.premirrors = "\n".join(lines)

    def _check_network(self):
        for name, (url, branch) in sorted(kas_repos().items()):
            try:
                result = self.runner.run(["git", "ls-remote", "--heads", url, branch], cwd=CACHE, timeout=60,
                                         check=False)
            except subprocess.TimeoutExpired:
                result = None
            if result is None or result.returncode != 0 or not result.stdout.strip():
                raise SetupError("%s (%s is not reachable and %s does not exist)" % (NEEDS, url, SHARED))

    def sync_layer(self):
        """Copies this checkout's files to one fixed place, rewriting only
        files whose content changed, and commits them there.

        BitBake's parse cache is keyed by the layers' paths and the recipes'
        modification times: a fresh clone elsewhere would parse everything
        again. The copy keeps both stable. It is a git repository because
        kas takes the layer from the repository holding the kas file and the
        bundlegen recipe fetches its own checkout (git, usehead)."""
        files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "-co", "--exclude-standard"],
                               check=True, stdout=subprocess.PIPE).stdout.decode().split("\0")
        files = {f for f in files if f and os.path.lexists(REPO / f)}
        dest = self.layer
        dest.mkdir(parents=True, exist_ok=True)
        for root, dirs, names in os.walk(dest):
            rel_root = os.path.relpath(root, dest)
            if rel_root == ".":
                dirs[:] = [x for x in dirs if x != ".git"]
            for n in names:
                rel = os.path.normpath(os.path.join(rel_root, n))
                if rel not in files:
                    os.remove(os.path.join(root, n))
        for rel in sorted(files):
            src, dst = REPO / rel, dest / rel
            if src.is_symlink():
                if dst.is_symlink() and os.readlink(dst) == os.readlink(src):
                    continue
                if os.path.lexists(dst):
                    os.remove(dst)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(os.readlink(src), dst)
                continue
            data = src.read_bytes()
            if dst.is_file() and not dst.is_symlink() and dst.read_bytes() == data \
                    and (os.stat(dst).st_mode & 0o111) == (os.stat(src).st_mode & 0o111):
                continue
            if os.path.lexists(dst):
                os.remove(dst)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            os.chmod(dst, os.stat(src).st_mode & 0o777)
        self.runner.chown(dest)
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], stdout=subprocess.PIPE,
                              text=True).stdout.strip()
        if not (dest / ".git").is_dir():
            self.runner.run(["git", "init", "-q", "-b", "main"], cwd=dest)
        self.runner.run(["git", "add", "-A"], cwd=dest)
        if self.runner.run(["git", "status", "--porcelain"], cwd=dest).stdout.strip():
            self.runner.run(["git", "commit", "-q", "-m", "files of %s (HEAD %s) for the real-layer tests"
                             % (REPO, head)], cwd=dest)

    # Running kas and bitbake -----------------------------------------------

    def builddir(self, machine, kind="build"):
        """The build directory: `build` for whole-layer parses, `tasks` for
        `bitbake -b` runs with tests/yocto/kas/tasks.yml."""
        return CACHE / self.release / ("%s-%s" % (kind, machine))

    def kas_files(self, machine, extra=()):
        files = ["%s/%s.yml" % (KAS_DIR, machine), TEST_KAS] + list(extra)
        if self.release != "wrynose":
            files.insert(2, "tests/yocto/kas/%s.yml" % self.release)
        return ":".join(str(self.layer / f) for f in files)

    def bitbake(self, machine, command, extra_kas=(), kind="build", env=None, timeout=3600, check=True):
        """Runs `command` (a shell command line, e.g. "bitbake -p") in the
        machine's build environment, as kas sets it up from the kas files."""
        extra = {
            "KAS_WORK_DIR": str(self.workdir),
            "KAS_BUILD_DIR": str(self.builddir(machine, kind)),
            "DL_DIR": str(CACHE / "downloads"),
            "SSTATE_DIR": str(CACHE / self.release / "sstate"),
        }
        if self.premirrors:
            extra["KAS_PREMIRRORS"] = self.premirrors
        extra.update(env or {})
        for key in ("KAS_WORK_DIR", "KAS_BUILD_DIR", "DL_DIR", "SSTATE_DIR"):
            self.runner.mkdir(pathlib.Path(extra[key]))
        kas = kas_command()
        start = time.monotonic()
        result = self.runner.run([kas, "shell", self.kas_files(machine, extra_kas), "-c", command],
                                 cwd=self.layer, extra_env=extra, timeout=timeout, check=False)
        _log_time("%s %s/%s: %s (exit %d)" % (self.release, kind, machine, command, result.returncode),
                  time.monotonic() - start)
        if check and result.returncode != 0:
            raise SetupError("`%s` for %s failed (exit %d):\n%s"
                             % (command, machine, result.returncode, result.stdout[-8000:]))
        return result


def cargo_crates(lock):
    """Paths of the .crate files of every crates.io package in `lock`, as
    cargo downloads them (`cargo fetch --locked`, from crates.io)."""
    import tomllib
    env = dict(os.environ)
    result = subprocess.run(["cargo", "fetch", "--locked", "--manifest-path", str(lock.parent / "Cargo.toml")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise SetupError("cargo fetch failed (crates.io must be reachable):\n%s" % result.stdout[-4000:])
    home = pathlib.Path(os.environ.get("CARGO_HOME", pathlib.Path.home() / ".cargo"))
    caches = sorted((home / "registry" / "cache").glob("index.crates.io-*"))
    packages = [p for p in tomllib.loads(lock.read_text())["package"] if p.get("source")]
    found = {}
    for p in packages:
        name = "%s-%s.crate" % (p["name"], p["version"])
        for cache in caches:
            if (cache / name).is_file():
                found[name] = cache / name
                break
        else:
            raise SetupError("cargo fetch did not leave %s in %s" % (name, home / "registry" / "cache"))
    return found
