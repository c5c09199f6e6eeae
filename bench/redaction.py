"""How fast log redaction passes ordinary lines (every log line goes through it).

    python -m bench.redaction

The last line is JSON: `lines`, `us_per_line` (median of five rounds) and `lines_per_s`.
"""

from __future__ import annotations

import statistics
import time

from bench.common import print_figures
from bot.logs import redact

LINES = 20_000
ROUNDS = 5


def main() -> int:
    lines = [
        f"user {i} position 7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU profit +12.5% after 3 ticks"
        for i in range(LINES)
    ]
    per_line: list[float] = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for line in lines:
            redact(line)
        per_line.append((time.perf_counter() - start) / LINES * 1e6)
    us = statistics.median(per_line)
    print(f"redaction: {us:.2f} us per ordinary line over {LINES} lines, median of {ROUNDS} rounds")
    print_figures({"lines": LINES, "us_per_line": round(us, 3), "lines_per_s": round(1e6 / us)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
