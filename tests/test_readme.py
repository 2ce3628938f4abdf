"""Every ``python`` block of the README runs as written (in order, one namespace, on CPU)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_snippets():
    assert len(BLOCKS) >= 4


def test_readme_snippets_run():
    ns: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, code in enumerate(BLOCKS):
            try:
                exec(compile(code, f"README.md python block {i}", "exec"), ns)
            except Exception as e:  # noqa: BLE001
                raise AssertionError(
                    f"README python block {i} fails: {type(e).__name__}: {e}\n{code}"
                ) from e


def test_hf_and_distributed_resolve_without_an_import():
    import subprocess
    import sys

    code = "import moe_ext; moe_ext.hf.register; moe_ext.distributed.dispatch"
    subprocess.run([sys.executable, "-c", code], check=True)
