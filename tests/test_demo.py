"""The README's first command, `bash scripts/demo.sh`, as a new user runs it: no account given, so
it uploads the emulator's demo build by a presigned-looking link (held) and then distributes that
same build, each in its slot of one queue."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support.runner import ROOT


def test_demo_uploads_then_distributes_the_same_build(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INPUT_", "STREAMPIXEL_", "GITHUB_", "RUNNER_"))}
    env |= {"VENV": sys.prefix, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "using the bundled emulator" in proc.stderr
    assert re.findall(r"^----- exit code: (\d+)$", out, re.M) == ["0", "0"]
    assert re.findall(r"^  status = (\S+)$", out, re.M) == ["uploaded", "triggered"]
    ids = re.findall(r"^  upload-id = (\S+)$", out, re.M)
    assert len(ids) == 2 and ids[0] == ids[1], ids
    assert "## ✅ Streampixel upload" in out and "## ✅ Streampixel distribution triggered" in out
    # The second call waited for its slot (the emulator's 5 s window) instead of a 429.
    assert re.search(r"^  position = 1$", out, re.M), out
    signature = re.search(r"X-Amz-Signature=([0-9a-f]{64})", out)
    assert signature is not None  # printed only inside its own ::add-mask:: lines
    shown = [line for line in out.splitlines() if not line.startswith("::add-mask::")]
    assert not any(signature.group(1) in line for line in shown)
    assert not list(tmp_path.glob("tmp.*")), "the demo left its work directory behind"
    # The distribute's summary draws the queue, and `queue` lists both slots with holders.
    assert "```mermaid" in out and "this job distribute" in out
    queue = out.split("===== streampixel-distribute queue", 1)[1].splitlines()
    holders = [re.search(r"\S+ pid \d+ \((\w+) 65de…b001\)$", line) for line in queue
               if line[:2].isdigit()]
    assert [found.group(1) if found else None for found in holders] == ["upload", "distribute"]
