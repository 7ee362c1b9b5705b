"""Debian packages a test needs, installed when missing, as the Makefile installs Chromium: CI starts
on a clean machine, and these tests must run there too."""

from __future__ import annotations

import os
import shutil
import subprocess


def installed_command(command: str, package: str) -> str:
    """The path of ``command``, after installing Debian's ``package`` when it is not on PATH yet.

    Runs apt-get as root, or through ``sudo -n`` otherwise (never asking for a password). Raises
    RuntimeError naming the package when it cannot be installed.
    """
    found = shutil.which(command)
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        result = subprocess.run([*sudo, *argv], env=environment, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"installing Debian's {package} failed: {' '.join(argv)}: {result.stderr.strip()}")
    found = shutil.which(command)
    if not found:
        raise RuntimeError(f"Debian's {package} was installed but {command} is not on PATH")
    return found
