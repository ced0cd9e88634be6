"""The stack's private files: owner-only, and never seen half written."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from starter.stack import write_private


def test_a_private_file_is_owner_only_even_if_it_existed(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    path.write_text("old\n")
    path.chmod(0o644)

    write_private(path, "export A=1\n")

    assert path.read_text() == "export A=1\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["dev.env"]  # no temporary left


def test_a_reader_that_polls_for_the_file_never_sees_it_half_written(tmp_path: Path) -> None:
    """``tributary dev`` writes dev.env while scripts (and the e2e tests) poll for it and
    read it as soon as it exists: a truncate-then-write let them read it empty."""
    path = tmp_path / "dev.env"
    text = "".join(f"export VARIABLE_{i}=value-{i:08d}\n" for i in range(5_000))  # ~180 KB
    seen: set[int] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                seen.add(len(path.read_text()))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(20):
            write_private(path, text)
    finally:
        stop.set()
        reader.join()
    assert seen <= {len(text)}, f"read {len(seen - {len(text)})} partial versions"
