"""What the image relies on that can be proven without a container runtime (none runs here):

- its fallback kernel headers: Debian's -common and -amd64 header folders merged into one,
  as the Dockerfile's build stage does, are enough for bcc to compile the cpu program
  through BCC_KERNEL_SOURCE while /lib/modules holds nothing (a node without headers);
- entrypoint.sh picks them only when the node's own headers are absent.
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.collector_run import ROOT

ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
LOAD_CPU = (
    "from collector.bpf import AttachSpec, load\n"
    "with load('cpu', {}, [AttachSpec('perf_event', 'on_sample', 'cpu-clock', sample_freq=99)]):\n"
    "    print('loaded')\n"
)


def debian_headers() -> tuple[str, str]:
    common = sorted(glob.glob("/usr/src/linux-headers-*-common"))
    amd64 = sorted(glob.glob("/usr/src/linux-headers-*-amd64"))
    if not common or not amd64:
        pytest.skip("Debian's linux-headers-amd64 is not installed (scripts/setup.sh does it)")
    return common[-1], amd64[-1]


@pytest.mark.bpf
def test_merged_debian_headers_compile_the_cpu_program(tmp_path: Path) -> None:
    common, amd64 = debian_headers()
    merged = tmp_path / "kernel-headers"
    merged.mkdir()
    # The Dockerfile's two cp commands.
    subprocess.run(["cp", "-a", f"{common}/.", str(merged)], check=True)
    subprocess.run(["cp", "-a", "--remove-destination", f"{amd64}/.", str(merged)], check=True)
    script = (
        "mount -t tmpfs none /lib/modules && "
        f'BCC_KERNEL_SOURCE={merged} exec {sys.executable} -c "$0"'
    )
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, LOAD_CPU]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0 and "loaded" in res.stdout, res.stderr
    assert Path(f"/lib/modules/{platform.release()}").exists()  # the host's are untouched


def run_entrypoint(tmp_path: Path, hide_modules: bool) -> str:
    """entrypoint.sh with a stand-in collector at its exec path, in a private mount
    namespace (tmpfs over /opt; /lib/modules hidden or not); returns what the stand-in saw."""
    fake = (
        "mkdir -p /opt/collector/bin && printf '#!/bin/sh\\necho "
        'BCC_KERNEL_SOURCE=${BCC_KERNEL_SOURCE:-unset} "$@"\\n\' > /opt/collector/bin/collector'
        " && chmod 755 /opt/collector/bin/collector"
    )
    hide = "mount -t tmpfs none /lib/modules && " if hide_modules else ""
    script = f'mount -t tmpfs none /opt && {hide}{fake} && exec sh "$0" --config x.yaml'
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(ENTRYPOINT)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip() + "|" + res.stderr.strip()


def test_entrypoint_uses_the_nodes_headers_when_mounted(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (a private mount namespace)")
    out = run_entrypoint(tmp_path, hide_modules=False)
    assert out.startswith("BCC_KERNEL_SOURCE=unset --config x.yaml|"), out


def test_entrypoint_falls_back_to_the_images_headers(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (a private mount namespace)")
    out = run_entrypoint(tmp_path, hide_modules=True)
    assert out.startswith("BCC_KERNEL_SOURCE=/opt/kernel-headers --config x.yaml|"), out
    assert "using the image's" in out
