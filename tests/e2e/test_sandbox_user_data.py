"""ShellCheck (Debian's `shellcheck`, installed by `make system-deps`) judges the gVisor
install script the sandbox pool's nodes run at boot, as rendered, and bash parses it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from components.compute.sandbox import install_script

pytestmark = pytest.mark.e2e


def test_shellcheck_finds_nothing_in_the_install_script(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed: `make system-deps` installs it"
    script = tmp_path / "install-gvisor.sh"
    script.write_text(install_script("20260928.0"))
    checked = subprocess.run(
        [shellcheck, "--severity=style", "--shell=bash", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    parsed = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, check=False
    )
    assert parsed.returncode == 0, parsed.stderr


def test_shellcheck_would_catch_an_unquoted_expansion(tmp_path: Path) -> None:
    """The judge is live: the same script with one quote removed fails."""
    script = tmp_path / "broken.sh"
    script.write_text(install_script("20260928.0").replace('cd "$work"', "cd $work"))
    checked = subprocess.run(
        ["shellcheck", "--severity=style", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode != 0 and "SC2086" in checked.stdout
