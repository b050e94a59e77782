# SPDX-License-Identifier: Apache-2.0
"""Host side: bundles of other container images installed into a device
image's rootfs (BUNDLEGEN_CONTAINERS, ROOTFS_POSTPROCESS_COMMAND entries
bundlegen_check_accounts and bundlegen_install_containers), each app with
its own account, made by oe-core's extrausers class."""

import json
import os
import shutil

import bb

import bundlegen.config
import bundlegen.deploy
import bundlegen.tool


def account(c):
    """The name of an app's user and group."""
    return ("app-" + c["appid"])[:32]


def extra_users_params(containers):
    """EXTRA_USERS_PARAMS commands (oe-core's extrausers class) that give
    each app a group and a user with its uid/gid."""
    commands = []
    for c in containers:
        name = account(c)
        commands.append("groupadd -g %d %s;" % (c["uid"], name))
        commands.append("useradd -u %d -g %s -d /nonexistent -M -s /sbin/nologin -c 'bundlegen app %s' %s;"
                        % (c["uid"], name, c["appid"], name))
    return " ".join(commands)


def setup(d):
    """Anonymous python: with BUNDLEGEN_CONTAINERS set, checks the entries,
    makes do_rootfs wait for the container images and the tool, installs the
    runtimes, and hooks the accounts and the bundles into the rootfs."""
    containers = bundlegen.config.parse_containers(d)
    if not containers:
        return
    fail = bundlegen.config.fail
    bundlegen.config.check_common(d, "BUNDLEGEN_CONTAINERS")
    if d.getVar("BUNDLEGEN_PLATFORM"):
        bundlegen.config.check_platform(d, "BUNDLEGEN_PLATFORM", d.getVar("BUNDLEGEN_PLATFORM"))
    for c in containers:
        if c["platform"]:
            bundlegen.config.check_platform(d, "BUNDLEGEN_CONTAINERS", c["platform"], c["entry"])
    if any(c["policy"] for c in containers) and not bb.utils.contains("DISTRO_FEATURES", "systemd", True, False, d):
        fail("BUNDLEGEN_CONTAINERS", "autostart needs systemd, which is not in DISTRO_FEATURES",
             'add DISTRO_FEATURES:append = " systemd" (and INIT_MANAGER = "systemd"), or drop the autostart options')
    packages = dict(p.split(":", 1) for p in (d.getVar("BUNDLEGEN_RUNTIME_PACKAGES") or "").split() if ":" in p)
    for runtime in sorted({c["runtime"] for c in containers}):
        if packages.get(runtime):
            d.appendVar("IMAGE_INSTALL", " " + packages[runtime])
    deps = " ".join("%s:do_image_complete" % c["recipe"] for c in containers)
    d.appendVarFlag("do_rootfs", "depends", " bundlegen-native:do_populate_sysroot " + deps)
    d.appendVarFlag("do_rootfs", "vardeps", " bundlegen_check_accounts bundlegen_install_containers")
    d.appendVarFlag("do_rootfs", "file-checksums",
                    " " + bundlegen.config.input_files(d, ("BUNDLEGEN_OPERATOR", "BUNDLEGEN_PLATFORM_TEMPLATE")))
    d.appendVar("EXTRA_USERS_PARAMS", " " + extra_users_params(containers))
    # The check runs before extrausers' set_user_group adds the accounts,
    # the bundles after it (and after everything else that edits the rootfs).
    d.prependVar("ROOTFS_POSTPROCESS_COMMAND", "bundlegen_check_accounts ")
    d.appendVar("ROOTFS_POSTPROCESS_COMMAND", " bundlegen_install_containers")


def check_accounts(d):
    """Fails, naming the entry, when an app's uid/gid already belongs to
    another account of the rootfs (useradd would stop with a message that
    names neither)."""
    rootfs = d.getVar("IMAGE_ROOTFS")
    for c in bundlegen.config.parse_containers(d):
        for db in ("passwd", "group"):
            path = os.path.join(rootfs + d.getVar("sysconfdir"), db)
            if not os.path.isfile(path):
                continue
            with open(path) as f:
                entries = [line.split(":") for line in f.read().splitlines() if line]
            for e in entries:
                if len(e) > 2 and e[2] == str(c["uid"]) and e[0] != account(c):
                    bb.fatal("BUNDLEGEN_CONTAINERS: entry '%s': id %d is already %s's in %s\n  fix: give the entry "
                             "uid=N with a free id, or change BUNDLEGEN_UID_BASE" % (c["entry"], c["uid"], e[0], path))


def app_platform(d, c, platform, libs, appdir):
    """Writes the platform an app's bundle is made for: the device's, with the
    app's own uid/gid (usersAndGroups.user), as <appdir>/<platform>.json."""
    bb.utils.mkdirhier(appdir)
    overlay = os.path.join(appdir, "user-overlay.json")
    with open(overlay, "w") as f:
        json.dump({"usersAndGroups": {"user": {"uid": c["uid"], "gid": c["uid"]}}}, f, sort_keys=True)
    name = os.path.basename(platform)[:-5] if platform.endswith(".json") else platform
    args = ["-q", "platform", "show", platform, "--platform-overlay", overlay]
    for path in ([os.path.dirname(libs)] if libs else []) + bundlegen.config.searchpath(d):
        args += ["-s", path]
    bundlegen.tool.run(d, args, "entry '%s' (platform %s)" % (c["entry"], platform), "BUNDLEGEN_CONTAINERS",
                       stdout=os.path.join(appdir, name + ".json"))
    if libs:
        shutil.copyfile(libs, os.path.join(appdir, name + "_libs.json"))
    return name


def unit(d, c, bundle_dir):
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


def install_containers(d):
    """ROOTFS_POSTPROCESS_COMMAND: the device platform from the rootfs, then
    per entry its bundle, report and (autostart) systemd unit."""
    import oe.path

    rootfs = d.getVar("IMAGE_ROOTFS")
    workdir = os.path.join(d.getVar("BUNDLEGEN_WORKDIR"), "host")
    bb.utils.remove(workdir, recurse=True)
    deploy = d.getVar("DEPLOY_DIR_IMAGE")
    imgdeploydir = d.getVar("IMGDEPLOYDIR")
    install_dir = d.getVar("BUNDLEGEN_INSTALL_DIR")
    containers = bundlegen.config.parse_containers(d)

    # The device platform comes first, from the rootfs before any bundle is in it.
    # oe-core writes the image manifest in ROOTFS_POSTUNINSTALL_COMMAND, after
    # ROOTFS_POSTPROCESS_COMMAND: there is none yet, and package versions
    # come from PKGDATA_DIR's PKGV alone.
    device = d.getVar("BUNDLEGEN_PLATFORM")
    device_libs = None
    if device:
        device_libs = bundlegen.config.find_template(d, device, "_libs.json")
    elif any(not c["platform"] for c in containers):
        platform_dir = os.path.join(workdir, "platform")
        device = bundlegen.tool.platform_init(d, platform_dir)
        device_libs = os.path.join(platform_dir, device + "_libs.json")
        if not os.path.isfile(device_libs):
            device_libs = None

    unitdir = d.getVar("systemd_system_unitdir")
    wantsdir = os.path.join(d.getVar("sysconfdir"), "systemd", "system", "multi-user.target.wants")
    for c in containers:
        image = bundlegen.deploy.oci_layout(deploy, c["recipe"], c["tag"])
        if image is None:
            bb.fatal("BUNDLEGEN_CONTAINERS: entry '%s': no OCI layout %s in %s\n  fix: the recipe must be "
                     "an image with 'oci' in IMAGE_FSTYPES, and tag= must match its OCI_IMAGE_TAG"
                     % (c["entry"], bundlegen.deploy.oci_link(c["recipe"], c["tag"]), deploy))
        platform = c["platform"] or device
        libs = None if c["platform"] else device_libs
        if c["platform"] and not os.path.isabs(c["platform"]):
            libs = bundlegen.config.find_template(d, c["platform"], "_libs.json")
        appdir = os.path.join(workdir, "apps", c["appid"])
        platform_name = app_platform(d, c, platform, libs, appdir)

        bundle_dir = os.path.join(install_dir, c["appid"])
        out = rootfs + bundle_dir
        if os.path.lexists(out):
            bb.fatal("BUNDLEGEN_CONTAINERS: entry '%s': %s already exists in the rootfs\n  fix: give the entry "
                     "another appid= or change BUNDLEGEN_INSTALL_DIR" % (c["entry"], bundle_dir))
        bb.utils.mkdirhier(os.path.dirname(out))
        report = "%s-bundle-%s.report.json" % (d.getVar("IMAGE_NAME"), c["appid"])
        args = bundlegen.tool.generate_args(d, c["runtime"])
        args += ["-p", platform_name, "-s", appdir, "--no-archive", "--report", os.path.join(imgdeploydir, report)]
        if c["appid"] != c["recipe"]:
            args += ["-x", c["appid"]]
        args += bundlegen.tool.extra_args(d) + [image, out]
        bundlegen.tool.run(d, args, "entry '%s' on platform %s" % (c["entry"], platform), "BUNDLEGEN_CONTAINERS")
        bundlegen.deploy.link(d, report, "-bundle-%s.report.json" % c["appid"])

        if c["policy"]:
            name = "bundlegen-%s.service" % c["appid"]
            bb.utils.mkdirhier(rootfs + unitdir)
            with open(os.path.join(rootfs + unitdir, name), "w") as f:
                f.write(unit(d, c, bundle_dir))
            bb.utils.mkdirhier(rootfs + wantsdir)
            oe.path.symlink(os.path.join(unitdir, name), os.path.join(rootfs + wantsdir, name), force=True)
