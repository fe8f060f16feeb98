"""Search files: located one-line errors (exit 2, nothing written), the point -> spec mapping, the
network digest, and the shipped files. No Optuna study runs here."""

from __future__ import annotations

import json
import textwrap

import pytest

import archspec
from archspec.resolution import congruent
from archspec.search.space import judged_resolutions, load_search
from conftest import ROOT

HEAD = "base: efficientnet-b0\n"
OBJECTIVE = "objectives:\n  - {metric: params, direction: minimize}\n"
TINY = f"base: {ROOT / 'specs' / 'tiny.yaml'}\n"  # 64 px, 5 stride-2 layers: half is 32 px
ACCURACY = "objectives:\n  - {metric: accuracy, direction: maximize}\n"

# (id, search file, what the one line must say, line:col)
BAD = [
    (
        "unknown-dimension",
        HEAD + "space:\n  group_sise: [1, 4]\n" + OBJECTIVE,
        "space.group_sise: unknown key (did you mean 'group_size'?)",
        "3:3",
    ),
    (
        "choice-fails-spec-validation",
        HEAD + "space:\n  group_size: [1, 0, 4]\n" + OBJECTIVE,
        "space.group_size[1]: group_size = 0 makes an invalid spec: group_size: must be >= 1, got 0",
        "3:19",
    ),
    (
        "even-kernel",
        HEAD + "space:\n  stages:\n    - {stage: 3, kernel: [3, 4]}\n" + OBJECTIVE,
        "space.stages[0].kernel[1]: stages[3].kernel = 4 makes an invalid spec: stages[3].kernel: must be odd",
        "4:30",
    ),
    (
        "unknown-norm",
        HEAD + "space:\n  norm: [gn, xn]\n" + OBJECTIVE,
        "space.norm[1]: must be 'bn', 'gn', 'ln', 'frn', 'gn+pn' or 'ln+pn'",
        "3:14",
    ),
    (
        "no-such-stage",
        HEAD + "space:\n  stages:\n    - {stage: 9, kernel: [3, 5]}\n" + OBJECTIVE,
        "the base has 7 stages",
        "4:15",
    ),
    (
        "unknown-objective",
        HEAD + "space:\n  group_size: [1, 4]\nobjectives:\n  - {metric: acuracy, direction: maximize}\n",
        "objectives[0].metric: unknown metric 'acuracy' (did you mean 'accuracy'?)",
        "5:14",
    ),
    (
        "contradictory-constraints",
        HEAD + "space:\n  group_size: [1, 4]\n" + OBJECTIVE + "constraints:\n  macs: {min: 5.0e8, max: 1.0e8}\n",
        "constraints.macs: contradictory: min 5e+08 is larger than max 1e+08",
        "7:9",
    ),
    (
        "unknown-constraint",
        HEAD + "space:\n  group_size: [1, 4]\n" + OBJECTIVE + "constraints:\n  flops: {max: 1}\n",
        "constraints.flops: unknown metric 'flops'",
        "7:3",
    ),
    (
        "repeated-choice",
        HEAD + "space:\n  group_size: [4, 1, 4]\n" + OBJECTIVE,
        "space.group_size: repeated choice 4",
        "3:15",
    ),
    (
        "match-without-match",
        HEAD + "space:\n  group_size: [1, 4]\nmatch: {metric: macs}\n" + OBJECTIVE,
        "match: applies only with",
        "4:1",
    ),
    (
        "bad-fixed-field",
        HEAD + "fixed: {norm: {type: gn, groups: 7}}\nspace:\n  group_size: [1, 4]\n" + OBJECTIVE,
        "fixed: the base spec is invalid: norm.groups: 7 groups do not divide",
        None,
    ),
    (
        "no-base-file",
        "base: nowhere.yaml\nspace:\n  group_size: [1]\n" + OBJECTIVE,
        "base: no spec file 'nowhere.yaml'",
        "1:7",
    ),
    (
        "bad-dtype",
        HEAD + "space:\n  group_size: [1]\n" + OBJECTIVE + "measure: {device: cpu, dtype: bfloat16}\n",
        "bench times float32 on cpu",
        None,
    ),
    (
        "stepped-integers",
        HEAD + "space:\n  group_size: {min: 1, max: 3, step: 0.5}\n" + OBJECTIVE,
        "space.group_size: must step through integers",
        "3:15",
    ),
    (
        "unreachable-deployment",
        TINY + "space:\n  resolution: [native, half]\n" + ACCURACY + "proxy: {resolution: 100}\n",
        "proxy.resolution: no candidate can be judged there: trained at 64, 32 px (trains at 64 px: 100 px is not "
        "congruent with it (mod 32)",
        "6:21",
    ),
    (
        "best-unbounded",
        TINY + "space:\n  resolution: [native, half]\n" + ACCURACY + "proxy: {resolution: best}\n",
        "proxy: best_up_to goes with resolution: best, and best needs it",
        None,
    ),
    (
        "best-below-training",
        TINY + "space:\n  resolution: [native]\n" + ACCURACY + "proxy: {resolution: best, best_up_to: 48}\n",
        "proxy.best_up_to: no candidate can be judged there: trained at 64 px (trains at 64 px, above",
        "6:39",
    ),
    (
        "empty-rungs",
        HEAD + "space:\n  group_size: [1, 4]\n" + OBJECTIVE + "fidelity: {rungs: []}\n",
        "fidelity.rungs: must have at least 1 items, got 0",
        "6:19",
    ),
    (
        "rungs-not-ending-at-all-steps",
        HEAD + "space:\n  group_size: [1, 4]\n" + OBJECTIVE + "fidelity: {rungs: [0.5, 0.25]}\n",
        "fidelity.rungs: must increase within (0, 1] and end at 1",
        "6:19",
    ),
    (
        "unknown-fidelity-field",
        HEAD + "space:\n  group_size: [1, 4]\n" + OBJECTIVE + "fidelity: {rungs: [1], eta: 3}\n",
        "fidelity.eta: unknown key",
        "6:24",
    ),
    (
        "unknown-proxy-field",
        TINY + "space:\n  resolution: [native]\n" + ACCURACY + "proxy: {finetune_step: 4}\n",
        "proxy.finetune_step: unknown key (did you mean 'finetune_steps'?)",
        "6:9",
    ),
    (
        "no-proxy-run",
        TINY + "space:\n  resolution: [native]\n" + ACCURACY + "proxy: {repeats: 0}\n",
        "proxy.repeats: must be >= 1, got 0",
        "6:18",
    ),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_a_bad_search_file_is_one_located_line_and_exit_2(tmp_path, cli, case):
    _, text, message, where = case
    (tmp_path / "s.yaml").write_text(text)
    out = tmp_path / "out"
    result = cli("search", tmp_path / "s.yaml", "--out", out)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.err
    if where is not None:
        assert lines[0].startswith(f"{tmp_path / 's.yaml'}:{where}: "), lines[0]
    assert not out.exists()  # refused before anything was written


def test_points_map_to_specs_with_congruent_test_resolutions():
    search = load_search(ROOT / "searches" / "g16_cpu.yaml")
    for point in (
        {"group_size": 16, "norm": "ln+pn", "resolution": "half"},
        {"group_size": 4, "norm": "gn", "resolution": "native"},
    ):
        cand = search.candidate(point)
        res = cand.resolved
        assert (cand.spec.group_size, cand.spec.norm.type, cand.spec.resolution.train) == tuple(point.values())
        assert res.resolution.test and all(
            congruent(r, res.resolution.train, res.downsampling_layers) for r in res.resolution.test
        )
        # the matched expansion ratio brings the MACs nearest the baseline's: G1, E6 at the same pixels
        base = archspec.stats({"base": str(ROOT / "specs" / "tiny.yaml"), "group_size": 1, "expansion_ratio": 6})
        matched = archspec.stats(cand.spec.model_copy(update={"resolution": search.base.resolution}))
        for e in (cand.matched_expansion - 0.5, cand.matched_expansion + 0.5):
            other = archspec.stats(
                cand.spec.model_copy(update={"expansion_ratio": e, "resolution": search.base.resolution})
            )
            assert abs(matched.macs - base.macs) <= abs(other.macs - base.macs)


def test_points_that_round_to_one_network_share_its_digest():
    search = load_search(ROOT / "searches" / "table2.yaml")
    # E 3.9 and 4 give the same expanded channels (rounded to 8): one network; G 16 and 32 do not
    a = search.candidate({"group_size": 16, "expansion_ratio": 4.0})
    b = search.candidate({"group_size": 16, "expansion_ratio": 3.99})
    c = search.candidate({"group_size": 32, "expansion_ratio": 4.0})
    assert [x.mid_channels for x in a.resolved.blocks] == [x.mid_channels for x in b.resolved.blocks]
    assert a.digest == b.digest != c.digest


def test_schema_of_search_files(cli):
    result = cli("schema", "--search")
    schema = json.loads(result.out)
    assert result.code == 0 and schema["title"] == "archspec search file"
    assert {"base", "space", "objectives", "constraints", "budget"} <= set(schema["properties"])


def test_the_shipped_search_files_load():
    table2 = load_search(ROOT / "searches" / "table2.yaml")
    assert table2.size == 25 and [d.name for d in table2.dims] == ["group_size", "expansion_ratio"]
    g16 = load_search(ROOT / "searches" / "g16_cpu.yaml")
    assert {d.name for d in g16.dims} == {"group_size", "norm", "resolution"}
    assert g16.file.space.expansion_ratio == "match" and g16.metrics[-1] == "accuracy"  # the costly one last


def test_a_storage_that_cannot_be_reached_is_one_line(tmp_path, cli):
    out = tmp_path / "out"
    result = cli(
        "search", ROOT / "searches" / "table2.yaml", "--out", out, "--storage", "postgresql://nobody@127.0.0.1:1/none"
    )
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert result.err.startswith("--storage: cannot reach postgresql") and "Traceback" not in result.err
    assert not out.exists()
    result = cli("search", ROOT / "searches" / "table2.yaml", "--out", out, "--storage", "sqlite:///x.db")
    assert result.code == 2 and result.err.startswith("--storage: expected a postgresql://"), result.err


def test_usage_errors_of_show(tmp_path, cli):
    assert (
        cli("search", "show").err.strip()
        == "archspec search: show needs the search's directory: archspec search show DIR"
    )
    result = cli("search", "show", tmp_path)
    assert result.code == 2 and result.err.strip() == f"DIR: {tmp_path}: not a search directory (no search.json)"
    result = cli("search", ROOT / "searches" / "table2.yaml")
    assert result.code == 2 and "--out DIR is required" in result.err


def test_predicted_metrics_need_a_profile(tmp_path, cli):
    (tmp_path / "s.yaml").write_text(
        textwrap.dedent(
            """\
            base: efficientnet-b0
            space: {group_size: [1, 16]}
            objectives: [{metric: predicted_train_images_per_s, direction: maximize}]
            """
        )
    )
    result = cli("search", tmp_path / "s.yaml", "--out", tmp_path / "out")
    assert result.code == 2 and result.err.strip().startswith("--profile: predicted_train_images_per_s is predicted")
    assert not (tmp_path / "out").exists()


def test_the_space_and_metrics_are_pure():
    """The search file and the point -> spec mapping import no torch, Optuna, typer, rich or
    matplotlib (docs/design.md, a lean core); the objectives that time or train import torch lazily."""
    import networkx as nx
    from test_structure import _graph

    g = _graph()
    for core in ("archspec.search.space", "archspec.search.metrics"):
        reached = nx.descendants(g, core) | {core}
        heavy = {m for m in reached if m.split(".")[0] in {"torch", "optuna", "typer", "rich", "matplotlib", "numpy"}}
        assert not heavy, (core, heavy)


@pytest.mark.parametrize("base", ["/etc/passwd", "passwd.yaml", "../../../../etc/hosts.yaml"])
def test_a_base_outside_the_allowed_directories_is_refused_unread(tmp_path, cli, monkeypatch, base):
    """As a spec's base (issue 17): /etc/passwd, a link to it, and ../ out of the search file's
    tree, the directory run from and the spec roots are one line that quotes nothing of the file."""
    monkeypatch.delenv("ARCHSPEC_SPEC_ROOTS", raising=False)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    (project / "passwd.yaml").symlink_to("/etc/passwd")
    (project / "s.yaml").write_text(f"name: s\nbase: {base}\nspace:\n  group_size: [1, 4]\n{OBJECTIVE}")
    result = cli("search", project / "s.yaml", "--out", project / "out")
    assert result.code == 2, result
    line, *more = result.err.splitlines()
    assert not more and line.startswith(f"{project / 's.yaml'}:2:7: base: ") and "root:" not in line, result.err
    assert not (project / "out").exists()


@pytest.mark.parametrize("where", ["test", "train", "best", 96])
def test_each_candidate_is_judged_where_the_search_deploys_it(tmp_path, where):
    """test: the base's first test resolution (64 px); best: every resolution from the training one up
    to the bound whose feature maps line up with training's (r - r_train divisible by 2^5); pixels:
    there, if it lines up. Half resolution (32 px) must be fine-tuned to be judged at 64."""
    bound = "best_up_to: 128, " if where == "best" else ""
    (tmp_path / "s.yaml").write_text(
        TINY + "space:\n  resolution: [native, half]\n" + ACCURACY + f"proxy: {{{bound}resolution: {where}}}\n"
    )
    search = load_search(tmp_path / "s.yaml")
    for point, train in (("native", 64), ("half", 32)):
        res = search.candidate({"resolution": point}).resolved
        assert res.resolution.train == train
        aligned = [r for r in range(train, 129) if (r - train) % 32 == 0]
        expected = {"test": [64], "train": [train], "best": aligned, 96: [96]}
        assert judged_resolutions(search.file.proxy, res) == expected[where]


@pytest.mark.slow  # writes 1,797 images
def test_the_shipped_digits_search_trains_on_the_digits_tree(tmp_path):
    """searches/digits_cpu.yaml reads ../data/digits (scripts/digits_imagefolder.py writes it): twelve
    networks, and a proxy schedule sized by the tree's 1,437 training images, judged on its 360."""
    import sys

    import yaml

    sys.path.insert(0, str(ROOT / "scripts"))
    from digits_imagefolder import write_digits

    assert write_digits(tmp_path / "data" / "digits") == (1437, 360)
    data = yaml.safe_load((ROOT / "searches" / "digits_cpu.yaml").read_text())
    data["base"] = str(ROOT / "specs" / "tiny.yaml")
    data["proxy"]["recipe"] = str(ROOT / "recipes" / "synthetic-quick.yaml")
    (tmp_path / "searches").mkdir()
    (tmp_path / "searches" / "digits.yaml").write_text(yaml.safe_dump(data))
    search = load_search(tmp_path / "searches" / "digits.yaml")
    assert search.size >= 12 and {d.name for d in search.dims} == {"group_size", "norm", "resolution"}
    assert search.dataset == (tmp_path / "data" / "digits").resolve() and search.val_images == 360
    recipe = yaml.safe_load(search.recipe_text or "")
    p = search.file.proxy
    assert recipe["epochs"] == pytest.approx(p.steps * p.batch_size / 1437)
