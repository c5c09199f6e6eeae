"""The sandbox chat in a real terminal (a pty): a person types lines and sees pop-up answers, stable button
numbers and where a picture was saved."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

# The PnL chart needs two price samples in different 3-second spans of stream time (the demo's clock runs with
# the wall clock): the position's first price and the move, so the script waits before the move.
LINES = """/start
!key professional
/apikey $KEY
!press Generate a new one
!press I saved it
[1, 2, 3]
/strategy tp 500 sl 90 deadline 0
!fund 2
!mint PEPE
!buy 0.5
!until New position
!wait 3.5
!market 5
!wait 2
/positions
!press PEPE
!press PnL chart
!99.1
"""


def run_in_terminal(data: Path, lines: str, timeout: float = 240.0) -> str:
    """Start `lasersell-bot sandbox` on a pty, type `lines`, end with Ctrl-D; returns what the screen showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "sandbox", "--data", str(data)],
        stdin=follower, stdout=follower, stderr=follower, close_fds=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    os.close(follower)
    screen = b""
    try:
        os.write(leader, lines.encode() + b"\x04")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the program ended and closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            elif process.poll() is not None:
                break
        assert process.wait(timeout=30) == 0, screen.decode(errors="replace")[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    return screen.decode(errors="replace").replace("\r\n", "\n")


def test_a_terminal_session_shows_pop_ups_and_saves_pictures(tmp_path: Path) -> None:
    screen = run_in_terminal(tmp_path, LINES)
    assert "💬 pop-up: Deleted. Keep your copy safe." in screen
    # a JSON-array-looking line is sent to the bot as text, not taken for a button press
    assert "you: [1, 2, 3]" in screen
    # a failed press says so without repeating what was typed
    assert "(no such button" in screen and "!99.1" not in screen.split("(no such button")[1][:200]
    saved = re.findall(r"🖼 picture saved: (\S+\.png)", screen)
    assert saved, screen[-3000:]
    picture = Path(saved[-1])
    assert picture.is_file() and picture.read_bytes().startswith(b"\x89PNG")
    assert picture.parent == tmp_path / "pictures"
    # the position card's buttons keep the card's number
    card = re.search(r"bot #(\d+):\n  📊 <?b?>?PEPE", screen) or re.search(r"bot #(\d+):\n  📊 PEPE", screen)
    assert card is not None
    assert f"[{card.group(1)}.1] Sell 25%" in screen
