"""Every alert can fire: each metric a rule reads is produced by something the same stack runs.

The rules are parsed with promql-parser (PyPI; Python bindings of the Rust ``promql-parser``
crate, which follows Prometheus' own grammar): every vector selector's metric name is collected,
whether written bare or as ``{__name__="..."}``. infra/metric_producers.py holds the
producer -> metric names table with its sources, and which producers each rule file reads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import promql_parser
import pytest
import yaml

from infra.capture import REPO_ROOT, StackCapture, capture_stack, stack_config
from infra.metric_producers import PRODUCERS, RULE_FILES, rule_files_for
from infra.naming import PROJECT
from infra.program import metric_producers
from infra.scaling_query import scaling_query
from infra.settings import Settings, settings_from_config
from infra.settings.scaling import IN_FLIGHT, P99_LATENCY, REQUESTS_PER_SECOND
from serving.sync.metrics import SyncMetrics
from tests.infra.conftest import COMPUTE_MODES, STACKS, stack_root_in_mode

RULES_DIR = REPO_ROOT / "monitoring" / "rules"
RULE_GROUP = "aws:amp/ruleGroupNamespace:RuleGroupNamespace"
# Nodes that wrap one expression (``.expr``).
WRAPPERS = (promql_parser.ParenExpr, promql_parser.SubqueryExpr, promql_parser.UnaryExpr)


class UnresolvableSelector(ValueError):
    """A selector whose metric name cannot be known statically (a regex on ``__name__``)."""


def metrics_read(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    found: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                found.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name != "__name__":
                    continue
                if matcher.op != promql_parser.MatchOp.Equal:
                    raise UnresolvableSelector(f"{expr!r}: __name__ {matcher.op} {matcher.value}")
                found.add(matcher.value)
            return
        if isinstance(node, promql_parser.MatrixSelector):
            visit(node.vector_selector)
        elif isinstance(node, promql_parser.BinaryExpr):
            visit(node.lhs)
            visit(node.rhs)
        elif isinstance(node, promql_parser.Call):
            for arg in node.args:
                visit(arg)
        elif isinstance(node, promql_parser.AggregateExpr):
            visit(node.expr)
            if node.param is not None:
                visit(node.param)
        elif isinstance(node, WRAPPERS):
            visit(node.expr)
        elif not isinstance(node, (promql_parser.NumberLiteral, promql_parser.StringLiteral)):
            raise TypeError(f"unknown PromQL node {type(node).__name__} in {expr!r}")

    visit(promql_parser.parse(expr))
    return found


def rules_of(text: str) -> list[dict]:
    return [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


def test_the_parser_sees_every_selector() -> None:
    expr = (
        'sum by (a) (rate(x_total{b="1"}[5m])) / on (a) (max(y) or vector(0))'
        ' + histogram_quantile(0.9, z_bucket) - {__name__="w"} offset 5m'
        " + avg_over_time(v[10m:1m]) - -u"
    )
    assert metrics_read(expr) == {"x_total", "y", "z_bucket", "w", "v", "u"}
    with pytest.raises(UnresolvableSelector):
        metrics_read('{__name__=~"x.*"}')


def test_every_rule_file_is_in_the_table_and_reads_only_its_producers() -> None:
    files = {p.stem: p.read_text() for p in RULES_DIR.glob("*.yml")}
    assert set(files) == set(RULE_FILES), "a rule file needs its row in RULE_FILES"
    assert {p for needs in RULE_FILES.values() for p in needs} <= set(PRODUCERS)
    for name, text in files.items():
        rules = rules_of(text)
        recorded = {r["record"] for r in rules if "record" in r}
        produced = set().union(*(PRODUCERS[p].metrics for p in RULE_FILES[name])) | recorded
        for rule in rules:
            missing = metrics_read(rule["expr"]) - produced
            assert not missing, (
                f"{name}.yml {rule.get('alert') or rule.get('record')} reads {sorted(missing)}, "
                f"which none of its producers {RULE_FILES[name]} exposes"
            )


def test_the_sync_agents_row_is_what_its_registry_exposes() -> None:
    metrics = SyncMetrics(["m"], served=True)
    names = {s.name for family in metrics.registry.collect() for s in family.samples}
    assert PRODUCERS["model-sync"].metrics == names


def test_every_producer_names_its_source() -> None:
    for name, producer in PRODUCERS.items():
        assert len(producer.source) > 20, name
        assert producer.metrics, name


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple]:
    """``variants(stack, mode, **config)``: the stack's settings and capture in that compute mode
    with some keys changed, once per module."""
    cache: dict[tuple, tuple[Settings, StackCapture]] = {}

    def get(stack: str, mode: str, **config: object) -> tuple[Settings, StackCapture]:
        key = (stack, mode, tuple(sorted(config.items())))
        if key not in cache:
            root = stack_root_in_mode(stack, mode, tmp_path_factory.mktemp(f"{stack}-{mode}"))
            path = root / f"Pulumi.{stack}.yaml"
            document = yaml.safe_load(path.read_text())
            document["config"].update({f"{PROJECT}:{k}": v for k, v in config.items()})
            path.write_text(yaml.safe_dump(document, sort_keys=False))
            settings = settings_from_config(stack, stack_config(stack, root))
            cache[key] = (settings, capture_stack(stack, root))
        return cache[key]

    return get


def _declares(capture: StackCapture, producer: str) -> bool:
    """A workload of the producer's pods with its metrics container, and its scrape job."""
    wanted = PRODUCERS[producer]
    workloads = [
        r.inputs["spec"]["template"]
        for r in capture.resources
        if r.type in ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:DaemonSet")
    ]
    pods = [
        t
        for t in workloads
        if t["metadata"]["labels"].get("app.kubernetes.io/name") == wanted.app
        and any(
            c["name"] == wanted.container
            for c in [*t["spec"]["containers"], *t["spec"].get("initContainers", [])]
        )
    ]
    (scraper,) = [r for r in capture.resources if r.type == "aws:amp/scraper:Scraper"]
    jobs = {
        j["job_name"]: j
        for j in yaml.safe_load(scraper.inputs["scrapeConfiguration"])["scrape_configs"]
    }
    job = jobs.get(wanted.job)
    keeps = job is not None and any(
        r.get("action") == "keep" and str(r.get("regex", "")).startswith(f"{wanted.app};")
        for r in job["relabel_configs"]
    )
    return bool(pods) and keeps


CASES = [
    *[(stack, mode, {}) for stack in STACKS for mode in COMPUTE_MODES],
    # The exporter turned off: the GPU alerts must go with it.
    *[(stack, mode, {"dcgmExporterImage": ""}) for stack in STACKS for mode in COMPUTE_MODES],
]


@pytest.mark.parametrize(("stack", "mode", "config"), CASES, ids=str)
def test_a_stack_uploads_only_rule_files_whose_producers_it_runs(variants, stack, mode, config):
    settings, capture = variants(stack, mode, **config)
    uploaded = {
        r.inputs["name"]: r.inputs["data"] for r in capture.resources if r.type == RULE_GROUP
    }
    assert set(uploaded) == set(rule_files_for(metric_producers(settings)))
    assert "tfserving" in uploaded  # the serving alerts are everywhere
    assert ("gpu" in uploaded) is bool(settings.gpu_node_pools and settings.dcgm_exporter_image)
    for name, text in uploaded.items():
        assert text == (RULES_DIR / f"{name}.yml").read_text()
        for producer in RULE_FILES[name]:
            assert _declares(capture, producer), f"{stack}/{mode}: {name}.yml needs {producer}"


def test_each_rule_file_is_tested_alone() -> None:
    """Each rule file has its promtool test file, which loads that file only."""
    for name in RULE_FILES:
        test = yaml.safe_load((RULES_DIR / "tests" / f"{name}_test.yml").read_text())
        assert test["rule_files"] == [f"../{name}.yml"]


def test_rule_file_paths_are_namespace_names() -> None:
    # AMP rule group namespace names: [0-9A-Za-z][-.0-9A-Z_a-z]* (RuleGroupsNamespace API).
    for name in RULE_FILES:
        assert Path(name).stem == name and name[0].isalnum()
        assert all(ch.isalnum() or ch in "-._" for ch in name)


def test_every_scaling_query_reads_what_tf_serving_and_the_sync_agent_produce() -> None:
    # The ScaledObjects' queries (infra/scaling_query.py) read the same table: a name either
    # producer stops exporting would leave every model scaling on nothing (read as 0).
    produced = PRODUCERS["tfserving"].metrics | PRODUCERS["model-sync"].metrics
    for signal in (IN_FLIGHT, REQUESTS_PER_SECOND, P99_LATENCY):
        read = metrics_read(scaling_query(signal, "mnist", "mnist", "stable", "120s"))
        assert read and read <= produced, (signal, read - produced)
