"""Reference numbers printed in the paper (Masters et al., 2021), for figures and tests."""

from __future__ import annotations

from typing import Final

# Table 2, (EfficientNet size, group size G, expansion ratio E): (parameters in millions, "FLOPs" in
# billions: multiply-accumulates of conv and linear layers, as timm counts them), at the native
# resolution, with GroupNorm.
TABLE_2: Final[dict[tuple[int, int, int], tuple[float, float]]] = {
    (0, 1, 6): (5.3, 0.4), (0, 4, 5): (5.1, 0.4), (0, 16, 4): (5.9, 0.6), (0, 32, 3): (6.2, 0.9),
    (0, 64, 2): (6.7, 1.5),
    (1, 1, 6): (7.8, 0.7), (1, 16, 4): (8.3, 1.1),
    (2, 1, 6): (9.1, 1.0), (2, 4, 5): (8.6, 1.0), (2, 16, 4): (9.5, 1.5), (2, 32, 3): (10.3, 2.1),
    (2, 64, 2): (9.9, 3.6),
    (3, 1, 6): (12.2, 1.8), (3, 16, 4): (12.6, 2.7),
    (4, 1, 6): (19.3, 4.4), (4, 16, 4): (19.3, 6.2),
    (5, 1, 6): (30.4, 10.2), (5, 16, 4): (28.7, 13.4),
}  # fmt: skip
