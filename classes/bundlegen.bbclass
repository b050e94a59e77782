# SPDX-License-Identifier: Apache-2.0
#
# bundlegen.bbclass: turn OCI images into device-specific OCI runtime
# bundles (Dobby, crun, runc) while images are built, with bundlegen-native.
#
# One class, three uses in image recipes (docs/yocto.md has the details):
#
# Container side: an OCI image recipe writes one bundle archive per platform
# (plus its JSON report) into ${IMGDEPLOYDIR}, from task do_bundlegen_bundles
# (after do_image_oci, before do_image_complete):
#
#     inherit image image-oci bundlegen
#     IMAGE_FSTYPES = "container oci"
#     IMAGE_CONTAINER_NO_DUMMY = "1"
#     BUNDLEGEN_PLATFORMS = "qemuarm64 rpi4"
#
# (image-oci's "oci" type builds on "container", which oe-core adds only
# when "container" is in IMAGE_FSTYPES itself; a container image needs
# IMAGE_CONTAINER_NO_DUMMY = "1" or linux-dummy as its kernel.)
#
# Host side: a device image gets bundles of other container image recipes
# in ${IMAGE_ROOTFS}${BUNDLEGEN_INSTALL_DIR}, made for the device's own
# library inventory (generated from ${IMAGE_ROOTFS}), each app with its own
# uid/gid, and a systemd unit for every autostarted one:
#
#     inherit bundlegen
#     BUNDLEGEN_CONTAINERS = "my-app-container:crun:autostart other:dobby"
#
# BSP side: a device image deploys ${BUNDLEGEN_PLATFORM_NAME}.json and
# ${BUNDLEGEN_PLATFORM_NAME}_libs.json, generated from its rootfs, so apps
# can be bundled for the device outside the build later:
#
#     inherit bundlegen
#     BUNDLEGEN_DEPLOY_PLATFORM = "1"
#
# bundlegen writes only under ${IMGDEPLOYDIR} and ${IMAGE_ROOTFS}, honours
# SOURCE_DATE_EPOCH, and every BUNDLEGEN_* value and every platform, app
# metadata and operator file it reads is part of the task signatures.

# Platforms to make bundles for, container side: space-separated platform
# names (built-in, or a <name>.json template in BUNDLEGEN_PLATFORM_SEARCHPATH).
# Default: empty (no bundles). Needs "oci" in IMAGE_FSTYPES.
BUNDLEGEN_PLATFORMS ?= ""

# Container images to bundle into this (host) image: space-separated
# entries "recipe[:option...]". Options, in any order:
#   dobby | crun | runc        runtime (default: BUNDLEGEN_RUNTIME)
#   autostart | always | unless-stopped | on-failure
#                              start at boot with that restart policy
#                              (default: installed, not started)
#   platform=NAME              platform for this bundle (default: the device's)
#   appid=ID                   app id, bundle directory and unit name
#                              (default: the recipe name)
#   uid=N                      uid and gid the app runs as
#                              (default: BUNDLEGEN_UID_BASE + position - 1)
#   tag=TAG                    OCI image tag (default: latest)
# Default: empty.
BUNDLEGEN_CONTAINERS ?= ""

# Runtime the bundles are made for: dobby, crun or runc (crun and runc get
# plain OCI bundles, bundlegen -u). Default: dobby.
BUNDLEGEN_RUNTIME ?= "dobby"

# Directories searched, recursively, for platform templates <name>.json and
# inventories <name>_libs.json: space-separated absolute paths.
# Default: empty (built-in platforms and generated ones only).
BUNDLEGEN_PLATFORM_SEARCHPATH ?= ""

# Host side: platform the device's bundles are made for, by name. Default:
# empty, which generates the platform from ${IMAGE_ROOTFS} itself.
BUNDLEGEN_PLATFORM ?= ""

# Name of the platform generated from the rootfs (host and BSP side): file
# names <name>.json and <name>_libs.json and platformName. Default: ${MACHINE}.
BUNDLEGEN_PLATFORM_NAME ?= "${MACHINE}"

# Template (name or absolute path) whose device fields (GPU, hardware,
# storage, ...) the generated platform keeps; a machine configuration sets
# it. Default: empty (bundlegen's defaults for the architecture).
BUNDLEGEN_PLATFORM_TEMPLATE ??= ""

# Host side: where bundles go in the device rootfs, one directory per app.
# Dobby rewrites config.json at start, so it must be writable.
# Default: ${localstatedir}/lib/bundlegen.
BUNDLEGEN_INSTALL_DIR ?= "${localstatedir}/lib/bundlegen"

# Host side: first uid/gid given to apps; the Nth entry of
# BUNDLEGEN_CONTAINERS runs as BUNDLEGEN_UID_BASE + N - 1 unless it says
# uid=. Default: 30000.
BUNDLEGEN_UID_BASE ?= "30000"

# Host side: package that provides each runtime, added to IMAGE_INSTALL when
# a container uses it: space-separated runtime:package pairs.
# Default: "dobby:dobby crun:crun runc:runc-opencontainers".
BUNDLEGEN_RUNTIME_PACKAGES ?= "dobby:dobby crun:crun runc:runc-opencontainers"

# BSP side: "1" deploys the platform generated from the rootfs.
# Default: "0".
BUNDLEGEN_DEPLOY_PLATFORM ?= "0"

# App metadata file (bundlegen -a), container side. Default: empty (the
# image's /appmetadata.json).
BUNDLEGEN_APPMETADATA ?= ""

# App id (bundlegen -x), container side. Default: empty (the metadata's id).
BUNDLEGEN_APPID ?= ""

# Operator policy file (bundlegen --operator). Default: empty (none).
BUNDLEGEN_OPERATOR ?= ""

# Library matching mode: normal, image or host (bundlegen -m).
# Default: normal.
BUNDLEGEN_LIBMATCHING ?= "normal"

# Compression of container-side bundle archives: gzip, zstd or none.
# Default: gzip.
BUNDLEGEN_COMPRESSION ?= "gzip"

# "1" creates every mount point in the bundle rootfs (bundlegen -r), needed
# when the device rootfs is read-only. Default: "1" with the
# read-only-rootfs image feature, else "0".
BUNDLEGEN_CREATE_MOUNTPOINTS ?= "${@bb.utils.contains('IMAGE_FEATURES', 'read-only-rootfs', '1', '0', d)}"

# "1" makes unknown keys in platform templates and metadata errors
# (bundlegen --strict). Default: "1".
BUNDLEGEN_STRICT ?= "1"

# Extra arguments for every bundlegen generate call. Default: empty.
BUNDLEGEN_EXTRA_ARGS ?= ""

BUNDLEGEN_RUNTIMES = "dobby crun runc"
BUNDLEGEN_POLICIES = "autostart always unless-stopped on-failure"
BUNDLEGEN_COMPRESSIONS = "gzip zstd none"
BUNDLEGEN_LIBMATCHING_MODES = "normal image host"
# Platforms bundlegen carries itself (`bundlegen platform list`); a test
# keeps this list in step with the tool.
BUNDLEGEN_BUILTIN_PLATFORMS = "qemuarm64 qemux86-64"

# Every value the tasks below read; they are all in the task signatures.
BUNDLEGEN_SIGNATURE_VARS = "BUNDLEGEN_PLATFORMS \
                            BUNDLEGEN_CONTAINERS \
                            BUNDLEGEN_RUNTIME \
                            BUNDLEGEN_PLATFORM_SEARCHPATH \
                            BUNDLEGEN_PLATFORM \
                            BUNDLEGEN_PLATFORM_NAME \
                            BUNDLEGEN_PLATFORM_TEMPLATE \
                            BUNDLEGEN_INSTALL_DIR \
                            BUNDLEGEN_UID_BASE \
                            BUNDLEGEN_RUNTIME_PACKAGES \
                            BUNDLEGEN_DEPLOY_PLATFORM \
                            BUNDLEGEN_APPMETADATA \
                            BUNDLEGEN_APPID \
                            BUNDLEGEN_OPERATOR \
                            BUNDLEGEN_LIBMATCHING \
                            BUNDLEGEN_COMPRESSION \
                            BUNDLEGEN_CREATE_MOUNTPOINTS \
                            BUNDLEGEN_STRICT \
                            BUNDLEGEN_EXTRA_ARGS \
                            BUNDLEGEN_BUILTIN_PLATFORMS"

BUNDLEGEN_WORKDIR = "${WORKDIR}/bundlegen"

# The files these name are in the signatures by content and relative name
# (file-checksums), not by where the layer or build directory happens to be,
# so builders with other paths share sstate and hash equivalence.
BUNDLEGEN_PLATFORM_SEARCHPATH[vardepvalue] = "${@'dirs:%d' % len((d.getVar('BUNDLEGEN_PLATFORM_SEARCHPATH') or '').split())}"
BUNDLEGEN_APPMETADATA[vardepvalue] = "${@'set' if d.getVar('BUNDLEGEN_APPMETADATA') else ''}"
BUNDLEGEN_OPERATOR[vardepvalue] = "${@'set' if d.getVar('BUNDLEGEN_OPERATOR') else ''}"

def bundlegen_fail(d, var, problem, fix):
    """Stops the build with a message naming the variable and the fix."""
    bb.fatal("%s: %s\n  fix: %s" % (var, problem, fix))

def bundlegen_choice(d, var, allowed):
    value = (d.getVar(var) or "").strip()
    if value not in allowed.split():
        bundlegen_fail(d, var, "'%s' is not one of: %s" % (value, allowed),
                       'set %s to one of: %s' % (var, allowed))
    return value

def bundlegen_searchpath(d):
    dirs = (d.getVar("BUNDLEGEN_PLATFORM_SEARCHPATH") or "").split()
    for path in dirs:
        if not os.path.isabs(path):
            bundlegen_fail(d, "BUNDLEGEN_PLATFORM_SEARCHPATH", "'%s' is not an absolute path" % path,
                           "use absolute directories, e.g. ${LAYERDIR_<collection>}/platforms set in layer.conf")
    return dirs

def bundlegen_find_template(d, name, suffix=".json"):
    """Returns the path of <name><suffix> in the search path, or None.

    bundlegen looks templates up by exact file name, recursively; so do we,
    in sorted order so the answer never depends on the file system.
    """
    for top in bundlegen_searchpath(d):
        for root, dirs, files in os.walk(top):
            dirs.sort()
            if name + suffix in files:
                return os.path.join(root, name + suffix)
    return None

def bundlegen_check_platform(d, var, name, entry=None):
    """Parse-time check that a platform name can be resolved."""
    if os.path.isabs(name) or name in (d.getVar("BUNDLEGEN_BUILTIN_PLATFORMS") or "").split():
        return
    dirs = bundlegen_searchpath(d)
    if not all(os.path.isdir(p) for p in dirs):
        return  # a directory made during the build: bundlegen checks at task time
    if bundlegen_find_template(d, name) is None:
        what = "entry '%s' names " % entry if entry else ""
        bundlegen_fail(d, var, "%sunknown platform '%s': not built in (%s) and no %s.json in "
                       "BUNDLEGEN_PLATFORM_SEARCHPATH (%s)"
                       % (what, name, d.getVar("BUNDLEGEN_BUILTIN_PLATFORMS"), name, " ".join(dirs) or "empty"),
                       "add the directory holding %s.json to BUNDLEGEN_PLATFORM_SEARCHPATH, "
                       "or name a platform that exists" % name)

def bundlegen_parse_containers(d):
    """Parses BUNDLEGEN_CONTAINERS into a list of dicts, failing clearly."""
    runtimes = d.getVar("BUNDLEGEN_RUNTIMES").split()
    policies = d.getVar("BUNDLEGEN_POLICIES").split()
    valid = "%s, %s, platform=NAME, appid=ID, uid=N, tag=TAG" % (" | ".join(runtimes), " | ".join(policies))
    try:
        uid_base = int(d.getVar("BUNDLEGEN_UID_BASE"))
    except ValueError:
        bundlegen_fail(d, "BUNDLEGEN_UID_BASE", "'%s' is not a number" % d.getVar("BUNDLEGEN_UID_BASE"),
                       "set a uid such as 30000")
    containers = []
    for position, entry in enumerate((d.getVar("BUNDLEGEN_CONTAINERS") or "").split()):
        recipe, *options = entry.split(":")
        c = {"entry": entry, "recipe": recipe, "runtime": d.getVar("BUNDLEGEN_RUNTIME"),
             "policy": None, "platform": None, "appid": recipe, "uid": uid_base + position, "tag": "latest"}
        if not recipe:
            bundlegen_fail(d, "BUNDLEGEN_CONTAINERS", "entry '%s' has no recipe name" % entry,
                           "write entries as recipe[:option...]")
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
                bundlegen_fail(d, "BUNDLEGEN_CONTAINERS", "entry '%s': unknown option '%s'" % (entry, opt),
                               "use only these options: %s" % valid)
        if c["runtime"] not in runtimes:
            bundlegen_fail(d, "BUNDLEGEN_RUNTIME", "'%s' is not one of: %s" % (c["runtime"], " ".join(runtimes)),
                           "set BUNDLEGEN_RUNTIME or the entry's runtime option to one of them")
        if c["runtime"] == "dobby" and c["policy"] not in (None, "autostart"):
            bundlegen_fail(d, "BUNDLEGEN_CONTAINERS",
                           "entry '%s': Dobby starts a container once; restart policy '%s' needs crun or runc"
                           % (entry, c["policy"]),
                           "use 'autostart' with dobby, or add ':crun' or ':runc' to the entry")
        if c["platform"]:
            bundlegen_check_platform(d, "BUNDLEGEN_CONTAINERS", c["platform"], entry)
        containers.append(c)
    seen = {}
    for c in containers:
        for key in ("appid", "uid"):
            other = seen.get((key, c[key]))
            if other:
                bundlegen_fail(d, "BUNDLEGEN_CONTAINERS", "entries '%s' and '%s' have the same %s %s"
                               % (other, c["entry"], key, c[key]), "give one of them its own %s=" % key)
            seen[(key, c[key])] = c["entry"]
    return containers

def bundlegen_input_files(d):
    """file-checksums entries for every file the tasks read."""
    files = ["%s/./*:True" % p for p in bundlegen_searchpath(d)]
    for var in ("BUNDLEGEN_APPMETADATA", "BUNDLEGEN_OPERATOR", "BUNDLEGEN_PLATFORM_TEMPLATE"):
        value = d.getVar(var)
        if value and os.path.isabs(value):
            files.append("%s/./%s:%s" % (os.path.dirname(value), os.path.basename(value), os.path.exists(value)))
    return " ".join(files)

# Container side: the image types must be right before image.bbclass's own
# anonymous python looks at IMAGE_FSTYPES (it stops with "No IMAGE_CMD
# defined for IMAGE_FSTYPES entry 'container'", which names no fix), so this
# check runs on RecipePreFinalise, after the deferred inherits and before
# any anonymous python.
def bundlegen_check_image_types(d):
    if not (d.getVar("BUNDLEGEN_PLATFORMS") or "").split():
        return
    fstypes = (d.getVar("IMAGE_FSTYPES") or "").split()
    if "oci" not in fstypes:
        bundlegen_fail(d, "BUNDLEGEN_PLATFORMS",
                       "bundles are made from the image's OCI layout, but 'oci' is not in IMAGE_FSTYPES (%s)"
                       % " ".join(fstypes),
                       'set IMAGE_FSTYPES = "container oci" and IMAGE_CONTAINER_NO_DUMMY = "1", and inherit '
                       'image-oci (meta-virtualization), or leave BUNDLEGEN_PLATFORMS empty')
    if not bb.data.inherits_class("image-oci", d):
        bundlegen_fail(d, "BUNDLEGEN_PLATFORMS", "the image does not inherit image-oci",
                       "inherit image-oci (meta-virtualization) in %s" % d.getVar("PN"))
    if not d.getVar("OCI_IMAGE_TAG"):
        bundlegen_fail(d, "OCI_IMAGE_TAG",
                       "it is empty: image-oci then runs `umoci new --image <layout>:`, which umoci refuses "
                       "(its shell fallback to 'initial-tag' never applies, as bitbake expands the variable first)",
                       'leave OCI_IMAGE_TAG unset (image-oci uses "latest") or give it a tag')
    if "container" not in fstypes:
        bundlegen_fail(d, "IMAGE_FSTYPES",
                       "'oci' needs 'container' in IMAGE_FSTYPES too (%s): image-oci sets "
                       "IMAGE_TYPEDEP:oci = \"container tar.bz2\" and oe-core adds the container type only "
                       "when it is listed" % " ".join(fstypes),
                       'set IMAGE_FSTYPES = "container oci" and IMAGE_CONTAINER_NO_DUMMY = "1"')
    if d.getVar("IMAGE_CONTAINER_NO_DUMMY") != "1" and \
            "linux-dummy" not in (d.getVar("PREFERRED_PROVIDER_virtual/kernel") or ""):
        bundlegen_fail(d, "IMAGE_CONTAINER_NO_DUMMY",
                       "a 'container' image wants PREFERRED_PROVIDER_virtual/kernel = \"linux-dummy\" or "
                       "IMAGE_CONTAINER_NO_DUMMY = \"1\", else oe-core skips the recipe",
                       'set IMAGE_CONTAINER_NO_DUMMY = "1" in %s' % d.getVar("PN"))

python bundlegen_image_types_handler() {
    bundlegen_check_image_types(e.data)
}
bundlegen_image_types_handler[doc] = "RecipePreFinalise: checks IMAGE_FSTYPES of container-side images"
addhandler bundlegen_image_types_handler
bundlegen_image_types_handler[eventmask] = "bb.event.RecipePreFinalise"

# The dependencies and tasks depend on the values of BUNDLEGEN_*: only
# anonymous python can add them, and it fails early with clear messages.
# nooelint: oelint.task.noanonpython
python () {
    platforms = (d.getVar("BUNDLEGEN_PLATFORMS") or "").split()
    containers = bundlegen_parse_containers(d)
    deploy_platform = bb.utils.to_boolean(d.getVar("BUNDLEGEN_DEPLOY_PLATFORM"))
    if not (platforms or containers or deploy_platform):
        return

    if not bb.data.inherits_class("image", d):
        bundlegen_fail(d, "BUNDLEGEN_PLATFORMS/BUNDLEGEN_CONTAINERS/BUNDLEGEN_DEPLOY_PLATFORM",
                       "%s is not an image recipe" % d.getVar("PN"),
                       "inherit bundlegen in image recipes only")
    bundlegen_choice(d, "BUNDLEGEN_RUNTIME", d.getVar("BUNDLEGEN_RUNTIMES"))
    bundlegen_choice(d, "BUNDLEGEN_LIBMATCHING", d.getVar("BUNDLEGEN_LIBMATCHING_MODES"))
    bundlegen_choice(d, "BUNDLEGEN_COMPRESSION", d.getVar("BUNDLEGEN_COMPRESSIONS"))
    for var in ("BUNDLEGEN_APPMETADATA", "BUNDLEGEN_OPERATOR"):
        value = d.getVar(var)
        if value and not os.path.isfile(value):
            bundlegen_fail(d, var, "'%s' is not a file" % value, "set %s to an absolute path of an existing file, or empty" % var)

    d.appendVar("DEPENDS", " bundlegen-native")
    tool = " bundlegen-native:do_populate_sysroot"
    signature = " ".join(d.getVar("BUNDLEGEN_SIGNATURE_VARS").split())

    if platforms:
        for platform in platforms:
            bundlegen_check_platform(d, "BUNDLEGEN_PLATFORMS", platform)
        bb.build.addtask("do_bundlegen_bundles", "do_image_complete", "do_image_oci", d)
        d.appendVarFlag("do_bundlegen_bundles", "depends", tool)
        d.appendVarFlag("do_bundlegen_bundles", "vardeps", " " + signature)
        d.appendVarFlag("do_bundlegen_bundles", "file-checksums", " " + bundlegen_input_files(d))

    if containers:
        if d.getVar("BUNDLEGEN_PLATFORM"):
            bundlegen_check_platform(d, "BUNDLEGEN_PLATFORM", d.getVar("BUNDLEGEN_PLATFORM"))
        if any(c["policy"] for c in containers) and not bb.utils.contains("DISTRO_FEATURES", "systemd", True, False, d):
            bundlegen_fail(d, "BUNDLEGEN_CONTAINERS", "autostart needs systemd, which is not in DISTRO_FEATURES",
                           'add DISTRO_FEATURES:append = " systemd" (and INIT_MANAGER = "systemd"), '
                           'or drop the autostart options')
        packages = dict(p.split(":", 1) for p in (d.getVar("BUNDLEGEN_RUNTIME_PACKAGES") or "").split() if ":" in p)
        for runtime in sorted({c["runtime"] for c in containers}):
            if packages.get(runtime):
                d.appendVar("IMAGE_INSTALL", " " + packages[runtime])
        deps = " ".join("%s:do_image_complete" % c["recipe"] for c in containers)
        d.appendVarFlag("do_rootfs", "depends", tool + " " + deps)
        d.appendVarFlag("do_rootfs", "vardeps", " bundlegen_install_containers " + signature)
        d.appendVarFlag("do_rootfs", "file-checksums", " " + bundlegen_input_files(d))
        d.appendVar("ROOTFS_POSTPROCESS_COMMAND", " bundlegen_install_containers")

    if deploy_platform:
        bb.build.addtask("do_bundlegen_platform", "do_image_complete", "do_image", d)
        d.appendVarFlag("do_bundlegen_platform", "depends", tool)
        d.appendVarFlag("do_bundlegen_platform", "vardeps", " " + signature)
        d.appendVarFlag("do_bundlegen_platform", "file-checksums", " " + bundlegen_input_files(d))
}

def bundlegen_run(d, args, what, var):
    """Runs bundlegen; on failure stops with its output and what to change."""
    import shutil
    import subprocess

    path = d.getVar("PATH")
    if not shutil.which("bundlegen", path=path):
        bb.fatal("bundlegen is not in the native sysroot (PATH=%s)\n  fix: the task needs "
                 "[depends] += \"bundlegen-native:do_populate_sysroot\"; is the bundlegen layer in BBLAYERS?" % path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDK_PLATFORM")}
    env["PATH"] = path
    sde = d.getVar("SOURCE_DATE_EPOCH")
    if sde:
        env["SOURCE_DATE_EPOCH"] = sde
    bb.note("Running: %s" % " ".join(args))
    result = subprocess.run(["bundlegen"] + args, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if result.stdout:
        bb.note(result.stdout)
    if result.returncode == 0:
        return
    output = result.stdout.strip()
    if result.returncode == 2:
        bb.fatal("%s: %s is not compatible with the device:\n%s\n  fix: build the app for the platform's "
                 "architecture and libraries, or change the platform in %s" % (var, what, output, var))
    if result.returncode == 1:
        bb.fatal("%s: bundlegen rejected the input for %s:\n%s\n  fix: correct %s (or the platform, app metadata "
                 "or operator file it names)" % (var, what, output, var))
    bb.fatal("bundlegen failed (exit %d) for %s:\n%s" % (result.returncode, what, output))

def bundlegen_generate_args(d, runtime):
    args = ["generate", "-y", "-m", d.getVar("BUNDLEGEN_LIBMATCHING")]
    if runtime in ("crun", "runc"):
        args.append("-u")
    if bb.utils.to_boolean(d.getVar("BUNDLEGEN_CREATE_MOUNTPOINTS")):
        args.append("-r")
    if bb.utils.to_boolean(d.getVar("BUNDLEGEN_STRICT")):
        args.append("--strict")
    if d.getVar("BUNDLEGEN_OPERATOR"):
        args += ["--operator", d.getVar("BUNDLEGEN_OPERATOR")]
    for path in bundlegen_searchpath(d):
        args += ["-s", path]
    return args

def bundlegen_link(d, directory, name, link):
    """Points the stable link name at a versioned file in ${IMGDEPLOYDIR}."""
    if link and link != name:
        path = os.path.join(directory, link)
        if os.path.lexists(path):
            os.remove(path)
        os.symlink(name, path)

def bundlegen_oci_link(basename, tag):
    """The name of image-oci's link to an image's OCI layout:
    ${IMAGE_BASENAME}-<tag>-oci, with each ':' of the tag written as '_'
    (file names cannot hold it); the layout's index keeps the tag itself."""
    return "%s-%s-oci" % (basename, tag.replace(":", "_"))

def bundlegen_oci_layout(d, directory, basename, tag):
    """The OCI layout image-oci wrote for an image, as an image reference."""
    layout = os.path.join(directory, bundlegen_oci_link(basename, tag))
    if not os.path.isdir(layout):
        return None
    return "oci:%s:%s" % (os.path.realpath(layout), tag)

python do_bundlegen_bundles() {
    import shutil

    imgdeploydir = d.getVar("IMGDEPLOYDIR")
    tag = d.getVar("OCI_IMAGE_TAG")
    image = bundlegen_oci_layout(d, imgdeploydir, d.getVar("IMAGE_BASENAME"), tag)
    if image is None:
        bb.fatal("BUNDLEGEN_PLATFORMS: no OCI layout %s in %s\n  fix: keep 'oci' in IMAGE_FSTYPES and "
                 "OCI_IMAGE_TAG as image-oci uses it"
                 % (bundlegen_oci_link(d.getVar("IMAGE_BASENAME"), tag), imgdeploydir))
    suffix = {"gzip": ".tar.gz", "zstd": ".tar.zst", "none": ".tar"}[d.getVar("BUNDLEGEN_COMPRESSION")]
    workdir = d.getVar("BUNDLEGEN_WORKDIR")
    runtime = d.getVar("BUNDLEGEN_RUNTIME")

    platforms = d.getVar("BUNDLEGEN_PLATFORMS").split()
    args = bundlegen_generate_args(d, runtime)
    for platform in platforms:
        args += ["-p", platform]
    args += ["--compression", d.getVar("BUNDLEGEN_COMPRESSION")]
    if d.getVar("BUNDLEGEN_APPMETADATA"):
        args += ["-a", d.getVar("BUNDLEGEN_APPMETADATA")]
    if d.getVar("BUNDLEGEN_APPID"):
        args += ["-x", d.getVar("BUNDLEGEN_APPID")]
    # One call for every platform: the image is flattened and analysed once.
    # With one platform the bundle is OUTPUTDIR itself (BundleGen's form) and
    # --report is its report; with several, OUTPUTDIR/<platform> and
    # OUTPUTDIR/<platform>.report.json, and --report is the summary.
    if len(platforms) == 1:
        out = os.path.join(workdir, "%s-bundle-%s" % (d.getVar("IMAGE_NAME"), platforms[0]))
        report = out + ".report.json"
    else:
        out = os.path.join(workdir, "bundles")
        report = os.path.join(workdir, "summary.json")
    args += ["--report", report]
    args += (d.getVar("BUNDLEGEN_EXTRA_ARGS") or "").split() + [image, out]
    bundlegen_run(d, args, "%s on platform%s %s" % (d.getVar("PN"), "s" if len(platforms) > 1 else "",
                                                    ", ".join(platforms)), "BUNDLEGEN_PLATFORMS")

    for platform in platforms:
        name = "%s-bundle-%s" % (d.getVar("IMAGE_NAME"), platform)
        link = "%s-bundle-%s" % (d.getVar("IMAGE_LINK_NAME"), platform) if d.getVar("IMAGE_LINK_NAME") else ""
        base = out if len(platforms) == 1 else os.path.join(out, platform)
        for produced, ext in ((base + suffix, suffix), (base + ".report.json", ".report.json")):
            if not os.path.isfile(produced):
                bb.fatal("bundlegen reported success but wrote no %s" % produced)
            shutil.move(produced, os.path.join(imgdeploydir, name + ext))
            bundlegen_link(d, imgdeploydir, name + ext, link + ext if link else "")
}
do_bundlegen_bundles[doc] = "Writes one bundle archive and report per BUNDLEGEN_PLATFORMS entry into IMGDEPLOYDIR, from one bundlegen call"
do_bundlegen_bundles[cleandirs] = "${BUNDLEGEN_WORKDIR}"
do_bundlegen_bundles[vardepsexclude] = "DATETIME DATE"

def bundlegen_platform_init(d, outdir):
    """Generates the device platform from ${IMAGE_ROOTFS}; returns its name."""
    name = d.getVar("BUNDLEGEN_PLATFORM_NAME")
    bb.utils.mkdirhier(outdir)
    args = ["platform", "init", "--rootfs", d.getVar("IMAGE_ROOTFS"), "--name", name, "-o", outdir]
    template = d.getVar("BUNDLEGEN_PLATFORM_TEMPLATE")
    if template:
        args += ["--from", template]
        for path in bundlegen_searchpath(d):
            args += ["-s", path]
    pkgdata = d.getVar("PKGDATA_DIR")
    if pkgdata and os.path.isdir(pkgdata):
        args += ["--pkgdata", pkgdata]
    # oe-core writes the image manifest in ROOTFS_POSTUNINSTALL_COMMAND, after
    # ROOTFS_POSTPROCESS_COMMAND: the host side (bundlegen_install_containers)
    # never has it, and takes package versions from PKGDATA_DIR's PKGV alone;
    # the BSP side (do_bundlegen_platform, after do_image) has it.
    manifest = os.path.join(d.getVar("IMGDEPLOYDIR"), d.getVar("IMAGE_NAME") + ".manifest")
    if os.path.isfile(manifest):
        args += ["--manifest", manifest]
    bundlegen_run(d, args, "the platform of %s" % d.getVar("PN"), "BUNDLEGEN_PLATFORM_TEMPLATE")
    return name

def bundlegen_app_platform(d, c, platform, libs, appdir):
    """Writes the platform an app's bundle is made for: the device's, with the
    app's own uid/gid (usersAndGroups.user), as <appdir>/<platform>.json."""
    import json
    import shutil
    import subprocess

    bb.utils.mkdirhier(appdir)
    overlay = os.path.join(appdir, "user-overlay.json")
    with open(overlay, "w") as f:
        json.dump({"usersAndGroups": {"user": {"uid": c["uid"], "gid": c["uid"]}}}, f, sort_keys=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDK_PLATFORM")}
    env["PATH"] = d.getVar("PATH")
    args = ["bundlegen", "-q", "platform", "show", platform, "--platform-overlay", overlay]
    for path in [os.path.dirname(libs)] if libs else []:
        args += ["-s", path]
    for path in bundlegen_searchpath(d):
        args += ["-s", path]
    result = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        bb.fatal("BUNDLEGEN_CONTAINERS: entry '%s': cannot load platform '%s':\n%s\n  fix: name a platform "
                 "that exists in BUNDLEGEN_PLATFORM_SEARCHPATH" % (c["entry"], platform, result.stderr.strip()))
    name = os.path.basename(platform)[:-5] if platform.endswith(".json") else platform
    with open(os.path.join(appdir, name + ".json"), "w") as f:
        f.write(result.stdout)
    if libs:
        shutil.copyfile(libs, os.path.join(appdir, name + "_libs.json"))
    return name

def bundlegen_unit(d, c, bundle_dir):
    """Text of the systemd unit that starts an app's bundle at boot."""
    bindir = d.getVar("bindir")
    app = c["appid"]
    head = ["# Generated by bundlegen.bbclass from BUNDLEGEN_CONTAINERS entry '%s'" % c["entry"],
            "[Unit]",
            "Description=Container %s (%s bundle made by bundlegen)" % (app, c["runtime"])]
    if c["runtime"] == "dobby":
        tool = os.path.join(bindir, "DobbyTool")
        body = ["Requires=dobby.service", "After=dobby.service", "", "[Service]", "Type=oneshot",
                "RemainAfterExit=yes",
                "ExecStart=%s start %s %s" % (tool, app, bundle_dir),
                "ExecStop=%s stop %s" % (tool, app)]
    else:
        tool = os.path.join(bindir, c["runtime"])
        restart = {"autostart": "no", "always": "always", "unless-stopped": "always",
                   "on-failure": "on-failure"}[c["policy"]]
        body = ["After=local-fs.target network.target", "", "[Service]", "Type=simple",
                "ExecStartPre=-%s delete --force %s" % (tool, app),
                "ExecStart=%s run --bundle %s %s" % (tool, bundle_dir, app),
                "ExecStopPost=-%s delete --force %s" % (tool, app),
                "Restart=%s" % restart, "KillMode=mixed"]
    return "\n".join(head + body + ["", "[Install]", "WantedBy=multi-user.target", ""])

def bundlegen_add_account(d, rootfs, c):
    """Gives the app a passwd and group entry for its uid/gid, if the rootfs has
    those files; fails if another account holds the id."""
    name = ("app-" + c["appid"])[:32]
    for db, line in (("passwd", "%s:x:%d:%d:bundlegen app %s:/nonexistent:/sbin/nologin" % (name, c["uid"], c["uid"], c["appid"])),
                     ("group", "%s:x:%d:" % (name, c["uid"]))):
        path = os.path.join(rootfs + d.getVar("sysconfdir"), db)
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            entries = [l.split(":") for l in f.read().splitlines() if l]
        for e in entries:
            if len(e) > 2 and e[2] == str(c["uid"]) and e[0] != name:
                bb.fatal("BUNDLEGEN_CONTAINERS: entry '%s': id %d is already %s's in %s\n  fix: give the entry "
                         "uid=N with a free id, or change BUNDLEGEN_UID_BASE" % (c["entry"], c["uid"], e[0], path))
        if not any(e[0] == name for e in entries):
            with open(path, "a") as f:
                f.write(line + "\n")

python bundlegen_install_containers() {
    import json
    import shutil

    rootfs = d.getVar("IMAGE_ROOTFS")
    workdir = os.path.join(d.getVar("BUNDLEGEN_WORKDIR"), "host")
    bb.utils.remove(workdir, recurse=True)
    deploy = d.getVar("DEPLOY_DIR_IMAGE")
    imgdeploydir = d.getVar("IMGDEPLOYDIR")
    install_dir = d.getVar("BUNDLEGEN_INSTALL_DIR")
    containers = bundlegen_parse_containers(d)

    # The device platform comes first, from the rootfs before any bundle is in it.
    device = d.getVar("BUNDLEGEN_PLATFORM")
    device_libs = None
    if device:
        device_libs = bundlegen_find_template(d, device, "_libs.json")
    elif any(not c["platform"] for c in containers):
        platform_dir = os.path.join(workdir, "platform")
        device = bundlegen_platform_init(d, platform_dir)
        device_libs = os.path.join(platform_dir, device + "_libs.json")
        if not os.path.isfile(device_libs):
            device_libs = None

    unitdir = d.getVar("systemd_system_unitdir")
    wantsdir = os.path.join(d.getVar("sysconfdir"), "systemd", "system", "multi-user.target.wants")
    for c in containers:
        image = bundlegen_oci_layout(d, deploy, c["recipe"], c["tag"])
        if image is None:
            bb.fatal("BUNDLEGEN_CONTAINERS: entry '%s': no OCI layout %s in %s\n  fix: the recipe must be "
                     "an image with 'oci' in IMAGE_FSTYPES, and tag= must match its OCI_IMAGE_TAG"
                     % (c["entry"], bundlegen_oci_link(c["recipe"], c["tag"]), deploy))
        platform = c["platform"] or device
        libs = None if c["platform"] else device_libs
        if c["platform"] and not os.path.isabs(c["platform"]):
            libs = bundlegen_find_template(d, c["platform"], "_libs.json")
        appdir = os.path.join(workdir, "apps", c["appid"])
        platform_name = bundlegen_app_platform(d, c, platform, libs, appdir)

        bundle_dir = os.path.join(install_dir, c["appid"])
        out = rootfs + bundle_dir
        if os.path.lexists(out):
            bb.fatal("BUNDLEGEN_CONTAINERS: entry '%s': %s already exists in the rootfs\n  fix: give the entry "
                     "another appid= or change BUNDLEGEN_INSTALL_DIR" % (c["entry"], bundle_dir))
        bb.utils.mkdirhier(os.path.dirname(out))
        report = os.path.join(imgdeploydir, "%s-bundle-%s.report.json" % (d.getVar("IMAGE_NAME"), c["appid"]))
        args = bundlegen_generate_args(d, c["runtime"])
        args += ["-p", platform_name, "-s", appdir, "--no-archive", "--report", report]
        if c["appid"] != c["recipe"]:
            args += ["-x", c["appid"]]
        args += (d.getVar("BUNDLEGEN_EXTRA_ARGS") or "").split() + [image, out]
        bundlegen_run(d, args, "entry '%s' on platform %s" % (c["entry"], platform), "BUNDLEGEN_CONTAINERS")
        if d.getVar("IMAGE_LINK_NAME"):
            bundlegen_link(d, imgdeploydir, os.path.basename(report),
                           "%s-bundle-%s.report.json" % (d.getVar("IMAGE_LINK_NAME"), c["appid"]))
        bundlegen_add_account(d, rootfs, c)

        if c["policy"]:
            unit = "bundlegen-%s.service" % c["appid"]
            bb.utils.mkdirhier(rootfs + unitdir)
            with open(os.path.join(rootfs + unitdir, unit), "w") as f:
                f.write(bundlegen_unit(d, c, bundle_dir))
            bb.utils.mkdirhier(rootfs + wantsdir)
            link = os.path.join(rootfs + wantsdir, unit)
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(os.path.join(unitdir, unit), link)
}
bundlegen_install_containers[doc] = "ROOTFS_POSTPROCESS_COMMAND: installs the BUNDLEGEN_CONTAINERS bundles, accounts and units"
bundlegen_install_containers[vardepsexclude] = "DATETIME DATE"

python do_bundlegen_platform() {
    import shutil

    outdir = os.path.join(d.getVar("BUNDLEGEN_WORKDIR"), "deploy-platform")
    name = bundlegen_platform_init(d, outdir)
    for ext in (".json", "_libs.json"):
        src = os.path.join(outdir, name + ext)
        if not os.path.isfile(src):
            bb.fatal("bundlegen platform init reported success but wrote no %s" % src)
        shutil.copyfile(src, os.path.join(d.getVar("IMGDEPLOYDIR"), name + ext))
}
do_bundlegen_platform[doc] = "Deploys BUNDLEGEN_PLATFORM_NAME.json and _libs.json generated from the image rootfs"
do_bundlegen_platform[cleandirs] = "${BUNDLEGEN_WORKDIR}/deploy-platform"
