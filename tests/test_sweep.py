"""Design sweeps: the Table-2-style table, its JSON and its figure."""

from __future__ import annotations

import json

import pytest

import archspec
from conftest import SPECS, TABLE_2, torch_counts


def test_sweep_table_and_plot(cli, tmp_path):
    png = tmp_path / "sweep.png"
    result = cli(
        "sweep", SPECS / "b0_g1.yaml", "--group-sizes", "1,4,16,32,64", "--expansions", "6,5,4,3,2", "--plot", png
    )
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    for g, e in zip((1, 4, 16, 32, 64), (6, 5, 4, 3, 2)):
        assert any([cell.strip() for cell in line.split("│")][:2] == [str(g), str(e)] for line in lines), (g, e)
    import matplotlib.image

    image = matplotlib.image.imread(png)
    height, width = image.shape[:2]
    assert (width, height) == (1760, 528)  # 16 x 4.8 inches at 110 dpi
    assert image[..., :3].std() > 0.05  # not a blank canvas


def _conv_intensity_by_torch(spec, batch: int) -> float:
    """Appendix A's eq. (7), MAC-weighted over the torch model's convs (not squeeze-excite's 1x1
    convs of pooled vectors, which archspec counts with SE), from their own shapes."""
    import torch

    model = archspec.build_model(spec).eval()
    terms = []

    def hook(conv, inputs, output):
        group, k, s = conv.in_channels // conv.groups, conv.kernel_size[0], conv.stride[0]
        f2 = inputs[0].shape[2] * inputs[0].shape[3]
        macs = output[0].numel() * group * k * k
        terms.append((group * k * k * batch * f2 / (s * (group * k * k + batch * f2)), macs))

    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d) and ".se." not in name:
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    return sum(i * m for i, m in terms) / sum(m for _, m in terms)


def test_sweep_json_matches_the_model(cli):
    payload = json.loads(
        cli(
            "sweep", "efficientnet-b0", "--group-sizes", "1,16", "--expansions", "6,4", "--json", "--batch-size", "4"
        ).out
    )
    one = json.loads(cli("sweep", "efficientnet-b0", "--group-sizes", "1,16", "--expansions", "6,4", "--json").out)
    for row, single, (g, e) in zip(payload["rows"], one["rows"], ((1, 6), (16, 4))):
        variant = {"base": "efficientnet-b0", "group_size": g, "expansion_ratio": e}
        params, macs = torch_counts(variant, 224)
        assert (row["group_size"], row["expansion_ratio"], row["params"], row["macs"]) == (g, e, params, macs)
        assert row["activation_bytes"] == 4 * single["activation_bytes"]  # memory is per image
        assert row["mean_intensity"] == pytest.approx(_conv_intensity_by_torch(variant, 4), rel=1e-9)
    assert payload["rows"][1]["mean_intensity"] > payload["rows"][0]["mean_intensity"]  # larger G, denser convs


def test_sweep_reproduces_table_2_parameter_counts(cli):
    # the paper's Table 2, B0 and B2 rows: (G, E) = (1,6) (4,5) (16,4) (32,3) (64,2)
    configs = [(1, 6), (4, 5), (16, 4), (32, 3), (64, 2)]
    for size in (0, 2):
        payload = json.loads(
            cli(
                "sweep",
                SPECS / f"b{size}_g1.yaml",
                "--group-sizes",
                "1,4,16,32,64",
                "--expansions",
                "6,5,4,3,2",
                "--group-rounding",
                "count",
                "--json",
            ).out
        )
        expected = [TABLE_2[(size, g, e)][0] for g, e in configs]
        assert [round(r["params"] / 1e6, 1) for r in payload["rows"]] == expected, size


def test_sweep_grid_mode(cli):
    payload = json.loads(
        cli("sweep", "efficientnet-b0", "--group-sizes", "1,4,16", "--expansions", "6,4", "--grid", "--json").out
    )
    assert [(r["group_size"], r["expansion_ratio"]) for r in payload["rows"]] == [
        (1, 6),
        (1, 4),
        (4, 6),
        (4, 4),
        (16, 6),
        (16, 4),
    ]


@pytest.mark.parametrize(
    "args,expected",
    [
        (("--group-sizes", "1,4", "--expansions", "6"), "--grid: 2 group sizes and 1 expansion ratios do not pair"),
        (("--group-sizes", "", "--expansions", "6"), "comma-separated list"),
        (("--group-sizes", "1,x", "--expansions", "6,5"), "comma-separated integers"),
        (("--group-sizes", "0", "--expansions", "6"), "from 1 to 4096"),
        (("--group-sizes", "1", "--expansions", "0.5"), "from 1 to 16"),
        (("--group-sizes", "1", "--expansions", "6", "--plot", "/nonexistent/x.png"), "does not exist"),
        (
            ("--group-sizes", "1", "--expansions", "6", "--group-rounding", "nearest"),
            "Invalid value for '--group-rounding': must be one of size, count, got 'nearest'",
        ),
    ],
)
def test_sweep_bad_input(cli, args, expected):
    result = cli("sweep", "efficientnet-b0", *args)
    assert result.code == 2 and len(result.err.splitlines()) == 1 and expected in result.err, result.err
