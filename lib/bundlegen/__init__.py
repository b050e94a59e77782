# SPDX-License-Identifier: Apache-2.0
"""Python side of bundlegen.bbclass (classes/bundlegen*.bbclass).

conf/layer.conf makes this package importable with `addpylib ${LAYERDIR}/lib
bundlegen`, as oe-core does with its `oe` package: bitbake imports the
modules named in BBIMPORTS and parses their functions, so the variables a
function reads with d.getVar("NAME") are in the signature of every task
that calls it.

- config: reading and checking BUNDLEGEN_* values (parse time and task time)
- tool: the one way bundlegen runs, and the arguments every call shares
- deploy: image-oci's layout names and the stable links in ${IMGDEPLOYDIR}
- container, host, bsp: the three roles, one module each
"""

BBIMPORTS = ["config", "tool", "deploy", "container", "host", "bsp"]
