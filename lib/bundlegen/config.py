# SPDX-License-Identifier: Apache-2.0
"""Reading and checking BUNDLEGEN_* values: every check stops the build with
a message that names the variable and says how to fix it."""

import os

import bb


def fail(var, problem, fix):
    """Stops the build with a message naming the variable and the fix."""
    bb.fatal("%s: %s\n  fix: %s" % (var, problem, fix))


def choice(d, var, allowed):
    """The value of `var`, which must be one of the words of `allowed`."""
    value = (d.getVar(var) or "").strip()
    if value not in allowed.split():
        fail(var, "'%s' is not one of: %s" % (value, allowed), "set %s to one of: %s" % (var, allowed))
    return value


def searchpath(d):
    """BUNDLEGEN_PLATFORM_SEARCHPATH as a list of absolute directories."""
    dirs = (d.getVar("BUNDLEGEN_PLATFORM_SEARCHPATH") or "").split()
    for path in dirs:
        if not os.path.isabs(path):
            fail("BUNDLEGEN_PLATFORM_SEARCHPATH", "'%s' is not an absolute path" % path,
                 "use absolute directories, e.g. ${LAYERDIR_<collection>}/platforms set in layer.conf")
    return dirs


def find_template(d, name, suffix=".json"):
    """Returns the path of <name><suffix> in the search path, or None.

    bundlegen looks templates up by exact file name, recursively; so do we,
    in sorted order so the answer never depends on the file system.
    """
    for top in searchpath(d):
        for root, dirs, files in os.walk(top):
            dirs.sort()
            if name + suffix in files:
                return os.path.join(root, name + suffix)
    return None


def check_platform(d, var, name, entry=None):
    """Parse-time check that a platform name can be resolved."""
    if os.path.isabs(name) or name in (d.getVar("BUNDLEGEN_BUILTIN_PLATFORMS") or "").split():
        return
    dirs = searchpath(d)
    if not all(os.path.isdir(p) for p in dirs):
        return  # a directory made during the build: bundlegen checks at task time
    if find_template(d, name) is None:
        what = "entry '%s' names " % entry if entry else ""
        fail(var, "%sunknown platform '%s': not built in (%s) and no %s.json in BUNDLEGEN_PLATFORM_SEARCHPATH (%s)"
             % (what, name, d.getVar("BUNDLEGEN_BUILTIN_PLATFORMS"), name, " ".join(dirs) or "empty"),
             "add the directory holding %s.json to BUNDLEGEN_PLATFORM_SEARCHPATH, or name a platform that exists"
             % name)


def check_common(d, var):
    """Parse-time checks every role shares, once a role is in use (`var`
    names the variable that turned it on); adds bundlegen-native to DEPENDS."""
    if not bb.data.inherits_class("image", d):
        fail(var, "%s is not an image recipe" % d.getVar("PN"), "inherit bundlegen in image recipes only")
    choice(d, "BUNDLEGEN_RUNTIME", d.getVar("BUNDLEGEN_RUNTIMES"))
    choice(d, "BUNDLEGEN_LIBMATCHING", d.getVar("BUNDLEGEN_LIBMATCHING_MODES"))
    operator = d.getVar("BUNDLEGEN_OPERATOR")
    if operator and not os.path.isfile(operator):
        fail("BUNDLEGEN_OPERATOR", "'%s' is not a file" % operator,
             "set BUNDLEGEN_OPERATOR to an absolute path of an existing file, or empty")
    if "bundlegen-native" not in (d.getVar("DEPENDS") or "").split():
        d.appendVar("DEPENDS", " bundlegen-native")


def parse_containers(d):
    """Parses BUNDLEGEN_CONTAINERS into a list of dicts, failing clearly."""
    runtimes = d.getVar("BUNDLEGEN_RUNTIMES").split()
    policies = d.getVar("BUNDLEGEN_POLICIES").split()
    valid = "%s, %s, platform=NAME, appid=ID, uid=N, tag=TAG" % (" | ".join(runtimes), " | ".join(policies))
    try:
        uid_base = int(d.getVar("BUNDLEGEN_UID_BASE"))
    except ValueError:
        fail("BUNDLEGEN_UID_BASE", "'%s' is not a number" % d.getVar("BUNDLEGEN_UID_BASE"), "set a uid such as 30000")
    containers = []
    for position, entry in enumerate((d.getVar("BUNDLEGEN_CONTAINERS") or "").split()):
        recipe, *options = entry.split(":")
        c = {"entry": entry, "recipe": recipe, "runtime": d.getVar("BUNDLEGEN_RUNTIME"),
             "policy": None, "platform": None, "appid": recipe, "uid": uid_base + position, "tag": "latest"}
        if not recipe:
            fail("BUNDLEGEN_CONTAINERS", "entry '%s' has no recipe name" % entry, "write entries as recipe[:option...]")
        for opt in options:
            key, sep, value = opt.partition("=")
            if not sep and opt in runtimes:
                c["runtime"] = opt
            elif not sep and opt in policies:
                c["policy"] = opt
            elif sep and key in ("platform", "appid", "tag") and value:
                c[key] = value
            elif sep and key == "uid" and value.isdigit():
                c["uid"] = int(value)
            else:
                fail("BUNDLEGEN_CONTAINERS", "entry '%s': unknown option '%s'" % (entry, opt),
                     "use only these options: %s" % valid)
        if c["runtime"] not in runtimes:
            fail("BUNDLEGEN_RUNTIME", "'%s' is not one of: %s" % (c["runtime"], " ".join(runtimes)),
                 "set BUNDLEGEN_RUNTIME or the entry's runtime option to one of them")
        if c["runtime"] == "dobby" and c["policy"] not in (None, "autostart"):
            fail("BUNDLEGEN_CONTAINERS",
                 "entry '%s': Dobby starts a container once; restart policy '%s' needs crun or runc"
                 % (entry, c["policy"]),
                 "use 'autostart' with dobby, or add ':crun' or ':runc' to the entry")
        containers.append(c)
    seen = {}
    for c in containers:
        for key in ("appid", "uid"):
            other = seen.get((key, c[key]))
            if other:
                fail("BUNDLEGEN_CONTAINERS", "entries '%s' and '%s' have the same %s %s"
                     % (other, c["entry"], key, c[key]), "give one of them its own %s=" % key)
            seen[(key, c[key])] = c["entry"]
    return containers


def input_files(d, names):
    """file-checksums entries for the search path and for the files named by
    the variables `names` (each the files one task reads)."""
    files = ["%s/./*:True" % p for p in searchpath(d)]
    for var in names:
        value = d.getVar(var)
        if value and os.path.isabs(value):
            files.append("%s/./%s:%s" % (os.path.dirname(value), os.path.basename(value), os.path.exists(value)))
    return " ".join(files)

