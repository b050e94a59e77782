# SPDX-License-Identifier: Apache-2.0
# TEST HARNESS stand-in for oe-core's lib/oe/path.py: symlink() as oe-core's.

import errno
import os
import shutil


def remove(path):
    """Removes a file, link or directory tree, if it exists."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def symlink(source, destination, force=False):
    """Create a symbolic link"""
    try:
        if force:
            remove(destination)
        os.symlink(source, destination)
    except OSError as e:
        if e.errno != errno.EEXIST or os.readlink(destination) != source:
            raise
