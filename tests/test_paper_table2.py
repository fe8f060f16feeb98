"""The paper's Table 2 (P = params in millions, F = FLOPs in billions, i.e. MACs) from specs.

docs/reproduction.md explains every cell that differs; this test holds both the matches and the
list of documented differences, so either changing is noticed.
"""

from __future__ import annotations

import pytest

import archspec

# (size, G, E): (P, F) as printed in Table 2
TABLE_2 = {
    (0, 1, 6): (5.3, 0.4), (0, 4, 5): (5.1, 0.4), (0, 16, 4): (5.9, 0.6), (0, 32, 3): (6.2, 0.9),
    (0, 64, 2): (6.7, 1.5),
    (1, 1, 6): (7.8, 0.7), (1, 16, 4): (8.3, 1.1),
    (2, 1, 6): (9.1, 1.0), (2, 4, 5): (8.6, 1.0), (2, 16, 4): (9.5, 1.5), (2, 32, 3): (10.3, 2.1),
    (2, 64, 2): (9.9, 3.6),
    (3, 1, 6): (12.2, 1.8), (3, 16, 4): (12.6, 2.7),
    (4, 1, 6): (19.3, 4.4), (4, 16, 4): (19.3, 6.2),
    (5, 1, 6): (30.4, 10.2), (5, 16, 4): (28.7, 13.4),
}
# Cells that differ at the table's precision, each explained in docs/reproduction.md.
DOCUMENTED_DIFFERENCES = {
    (0, 32, 3, "F"), (0, 64, 2, "F"), (2, 32, 3, "P"), (2, 32, 3, "F"), (2, 64, 2, "P"), (2, 64, 2, "F"),
    (4, 16, 4, "F"), (5, 1, 6, "F"), (5, 16, 4, "F"),
}


def _ours(size: int, g: int, e: int) -> tuple[float, float]:
    # Table 2: native resolution, GN (params as BN: gamma and beta), no fine-tuning
    spec = archspec.load_spec({"base": f"efficientnet-b{size}", "group_size": g, "expansion_ratio": e,
                               "norm": {"type": "gn", "groups": 4}})
    cost = archspec.stats(spec)
    return cost.params / 1e6, cost.macs / 1e9


def _differences(rows):
    out = set()
    for size, g, e in rows:
        p, f = _ours(size, g, e)
        table_p, table_f = TABLE_2[(size, g, e)]
        if round(p, 1) != table_p:
            out.add((size, g, e, "P"))
        if round(f, 1) != table_f:
            out.add((size, g, e, "F"))
    return out


@pytest.mark.parametrize("size", [0, 2])
def test_b0_and_b2_rows(size):
    rows = [k for k in TABLE_2 if k[0] == size]
    assert _differences(rows) == {d for d in DOCUMENTED_DIFFERENCES if d[0] == size}
    # the G1, G4 and G16 rows, which the paper's conclusions rest on, match in full
    assert not {d for d in DOCUMENTED_DIFFERENCES if d[0] == size and d[1] <= 16}


def test_all_rows_are_accounted_for():
    assert _differences(TABLE_2) == DOCUMENTED_DIFFERENCES
