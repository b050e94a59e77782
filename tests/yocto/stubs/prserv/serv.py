# SPDX-License-Identifier: Apache-2.0
"""TEST HARNESS stand-in for prserv.serv: the harness runs no PR server."""


class PRServiceConfigError(Exception):
    pass


def auto_start(d):
    return None


def auto_shutdown():
    pass
