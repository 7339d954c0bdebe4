"""benchmarks/head_stats.py's table: medians per variant and their ratios to the same run's SDPA."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


def test_report_medians_and_ratios():
    import head_stats

    runs = [{"variant": "sdpa", "tokens": 8, "seconds": s, "rss_mb": 100.0} for s in (10.0, 30.0, 12.0)]
    runs += [{"variant": "stats", "tokens": 8, "seconds": s, "rss_mb": m} for s, m in ((15.0, 110.0), (18.0, 120.0),
                                                                                       (90.0, 130.0))]
    runs.append({"variant": "maps", "tokens": 8, "error": "skipped: needs ~9 GB free"})
    table = head_stats.report(runs, [8]).splitlines()
    assert table[2] == "| 8 | sdpa | 12.0 | 1.00x | 100 | 1.00x | 10.0, 30.0, 12.0 |"
    assert table[3] == "| 8 | stats | 18.0 | 1.50x | 120 | 1.20x | 15.0, 18.0, 90.0 |"
    assert table[-1] == "maps at 8: skipped: needs ~9 GB free"
