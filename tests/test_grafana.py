"""The Grafana dashboard (deploy/grafana/image-updater.json) fits Grafana and the daemon's real metrics.

Shape: schemaVersion 39, a ``datasource`` variable of type prometheus that every panel and target uses,
``job``/``instance`` variables, panels with unique ids and a gridPos inside the 24-column grid that no two
panels share, targets with an ``expr`` and unique refIds.

Truth: every PromQL expression (and every variable's ``label_values`` query) is tokenized; each metric name
(an identifier that is neither a function, an aggregation nor a keyword) must be a sample name of the
registry that ``image_updater.metrics.Metrics`` builds (prometheus_client's ``_total``, ``_bucket``,
``_sum``, ``_count`` and ``_created`` series included), each label in a selector's ``{...}`` a label of
that metric, each label in ``by``/``without``/``on``/``ignoring`` (...) a label of a metric of the
expression, and each value matched against ``outcome``/``kind``/``result`` one the daemon emits. The
registry is walked through ``registry.collect()`` after every metric has been given a sample through the
public API, so a metric added later without being exercised here fails too. Prometheus' own ``up`` series
and the target labels ``job``/``instance`` are the only names allowed from outside the registry. A
misspelt metric, label or outcome is shown to fail the same check.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from image_updater.metrics import ERROR_KINDS, PASS_OUTCOMES, WEBHOOK_RESULTS, Metrics

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "image-updater.json"

# Labels Prometheus attaches to every scraped series, and the series it writes for every target itself.
TARGET_LABELS = frozenset({"job", "instance"})
SCRAPE_SERIES: dict[str, frozenset[str]] = {"up": frozenset()}
# Labels whose values come from a fixed set in image_updater.metrics: a misspelt value matches nothing.
ENUM_LABELS = {"outcome": PASS_OUTCOMES, "kind": ERROR_KINDS, "result": WEBHOOK_RESULTS}
# Grafana's built-in interval variables, replaced by a duration before parsing.
GRAFANA_DURATIONS = {"$__rate_interval": "2m", "$__interval": "1m", "$__range": "6h"}

AGGREGATIONS = frozenset({
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "group", "topk", "bottomk", "quantile",
    "count_values",
})
FUNCTIONS = frozenset({
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "delta",
    "deriv", "exp", "floor", "histogram_quantile", "idelta", "increase", "irate", "label_replace", "ln",
    "log2", "log10", "max_over_time", "min_over_time", "avg_over_time", "sum_over_time", "count_over_time",
    "last_over_time", "predict_linear", "rate", "resets", "round", "scalar", "sort", "sort_desc", "sqrt",
    "time", "timestamp", "vector",
})
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "group_left", "group_right"})
GROUPING = frozenset({"by", "without", "on", "ignoring"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<matchop>=~|!~|!=|==|<=|>=)
  | (?P<punct>[(){}\[\],=<>+\-*/%^:@])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, operator, value)


@dataclass(frozen=True)
class Parsed:
    selectors: tuple[Selector, ...]
    grouping_labels: frozenset[str]


class PromQLSyntaxError(ValueError):
    pass


def tokenize(expr: str) -> list[Token]:
    for variable, duration in GRAFANA_DURATIONS.items():
        expr = expr.replace(variable, duration)
    tokens: list[Token] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise PromQLSyntaxError(f"{expr!r}: cannot read at {position}: {expr[position:position + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append(Token(kind, match.group()))
        position = match.end()
    return tokens


def _unquote(text: str) -> str:
    body = text[1:-1]
    return body if text[0] == "`" else re.sub(r"\\(.)", r"\1", body)


def parse(expr: str) -> Parsed:
    """Metric selectors and grouping labels of one PromQL expression; raises on what it cannot place."""
    tokens = tokenize(expr)
    selectors: list[Selector] = []
    grouping: set[str] = set()
    depth = 0
    i = 0

    def expect(text: str) -> None:
        nonlocal i
        if i >= len(tokens) or tokens[i].text != text:
            found = tokens[i].text if i < len(tokens) else "the end"
            raise PromQLSyntaxError(f"{expr!r}: expected {text!r}, found {found!r}")
        i += 1

    def label_list() -> list[str]:
        nonlocal i
        expect("(")
        labels: list[str] = []
        while i < len(tokens) and tokens[i].text != ")":
            if tokens[i].kind == "ident":
                labels.append(tokens[i].text)
            elif tokens[i].text != ",":
                raise PromQLSyntaxError(f"{expr!r}: {tokens[i].text!r} in a label list")
            i += 1
        expect(")")
        return labels

    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1].text if i + 1 < len(tokens) else ""
        if token.kind == "ident" and token.text in GROUPING:
            i += 1
            grouping.update(label_list())
        elif token.kind == "ident" and token.text in ("group_left", "group_right"):
            i += 1
            if i < len(tokens) and tokens[i].text == "(":
                grouping.update(label_list())
        elif token.kind == "ident" and (
            token.text in KEYWORDS or (token.text in AGGREGATIONS and following in ("(", "by", "without"))
        ):
            i += 1
        elif token.kind == "ident" and following == "(":
            if token.text not in FUNCTIONS | AGGREGATIONS:
                raise PromQLSyntaxError(f"{expr!r}: unknown function {token.text!r}")
            i += 1
        elif token.kind == "ident":
            i += 1
            matchers: list[tuple[str, str, str]] = []
            if i < len(tokens) and tokens[i].text == "{":
                i += 1
                while i < len(tokens) and tokens[i].text != "}":
                    if i + 2 >= len(tokens) or tokens[i].kind != "ident" or tokens[i + 2].kind != "string":
                        raise PromQLSyntaxError(f"{expr!r}: bad label matcher after {token.text!r}")
                    operator = tokens[i + 1].text
                    if operator not in ("=", "!=", "=~", "!~"):
                        raise PromQLSyntaxError(f"{expr!r}: bad matcher operator {operator!r}")
                    matchers.append((tokens[i].text, operator, _unquote(tokens[i + 2].text)))
                    i += 3
                    if i < len(tokens) and tokens[i].text == ",":
                        i += 1
                expect("}")
            selectors.append(Selector(token.text, tuple(matchers)))
        elif token.text == "[":
            # a range or subquery: durations and ':' only
            i += 1
            while i < len(tokens) and tokens[i].text != "]":
                if tokens[i].kind != "duration" and tokens[i].text != ":":
                    raise PromQLSyntaxError(f"{expr!r}: {tokens[i].text!r} in a range")
                i += 1
            expect("]")
        elif token.text == "{":
            raise PromQLSyntaxError(f"{expr!r}: a selector without a metric name")
        else:
            if token.text == "(":
                depth += 1
            elif token.text == ")":
                depth -= 1
                if depth < 0:
                    raise PromQLSyntaxError(f"{expr!r}: unbalanced ')'")
            i += 1
    if depth != 0:
        raise PromQLSyntaxError(f"{expr!r}: unbalanced '('")
    if not selectors:
        raise PromQLSyntaxError(f"{expr!r}: no metric in it")
    return Parsed(tuple(selectors), frozenset(grouping))


_LABEL_VALUES = re.compile(r"^label_values\((?P<expr>.+),\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)$")


def parse_variable_query(query: str) -> tuple[Parsed, str]:
    match = _LABEL_VALUES.match(query)
    if match is None:
        raise PromQLSyntaxError(f"{query!r}: not label_values(selector, label)")
    return parse(match["expr"]), match["label"]


# -- the registry the daemon serves -----------------------------------------------------------------------


@functools.cache
def exported() -> dict[str, frozenset[str]]:
    """Sample name -> its label names, from a Metrics whose every metric has been given a sample."""
    metrics = Metrics()
    metrics.add_source("apps")
    metrics.registry_request("registry.example", 200)
    metrics.pass_finished("apps", "success", 1.5, updates_committed=2, images=3, success_at=1.0)
    metrics.error("image")
    metrics.webhook("accepted")
    metrics.set_shard(0, 1, 1)
    metrics.notification("slack", "sent")
    samples: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        assert family.samples, f"{family.name} has no sample: exercise it in exported()"
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in samples.items()}


def known_series() -> dict[str, frozenset[str]]:
    return {**exported(), **SCRAPE_SERIES}


def problems(parsed: Parsed, where: str) -> Iterator[str]:
    """What in one parsed expression does not exist in the daemon's metrics."""
    series = known_series()
    expression_labels: set[str] = set(TARGET_LABELS)
    for selector in parsed.selectors:
        labels = series.get(selector.metric)
        if labels is None:
            yield f"{where}: unknown metric {selector.metric!r}"
            continue
        labels = labels | TARGET_LABELS
        expression_labels |= labels
        for label, operator, value in selector.matchers:
            if label not in labels:
                yield f"{where}: {selector.metric} has no label {label!r}"
            allowed = ENUM_LABELS.get(label)
            if allowed is None:
                continue
            values = value.split("|") if operator in ("=~", "!~") else [value]
            for one in values:
                if re.fullmatch(r"[a-z_]+", one) and one not in allowed:
                    yield f"{where}: {label}={one!r} is never emitted (one of {', '.join(allowed)})"
    for label in sorted(parsed.grouping_labels - expression_labels):
        yield f"{where}: grouping label {label!r} is on none of its metrics"


# -- the dashboard ----------------------------------------------------------------------------------------


def load() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]


def variable_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield f"variable {variable['name']!r}", query["query"] if isinstance(query, dict) else query


DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_shape() -> None:
    dashboard = load()
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["id"] is None, "an exported dashboard carries no database id"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DATASOURCE
    ids: list[int] = []
    cells: dict[tuple[int, int], int] = {}
    for panel in panels(dashboard):
        assert isinstance(panel["id"], int), panel
        ids.append(panel["id"])
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0, panel["title"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, f"{panel['title']} is outside the 24 columns"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panels {cells.get((x, y))} and {panel['id']} overlap at {x},{y}"
                cells[(x, y)] = panel["id"]
        if panel["type"] == "row":
            assert "targets" not in panel
            continue
        assert panel["title"] and panel.get("description"), f"panel {panel['id']}: a title and a description"
        assert panel["datasource"] == DATASOURCE, panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in targets:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert isinstance(target["expr"], str) and target["expr"].strip(), panel["title"]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"


def test_every_expression_uses_existing_metrics_and_labels() -> None:
    dashboard = load()
    found: list[str] = []
    metrics_used: set[str] = set()
    for where, expr in expressions(dashboard):
        parsed = parse(expr)
        metrics_used.update(s.metric for s in parsed.selectors)
        found.extend(problems(parsed, where))
    for where, query in variable_queries(dashboard):
        parsed, label = parse_variable_query(query)
        found.extend(problems(parsed, where))
        series = known_series()
        if not any(label in series.get(s.metric, frozenset()) | TARGET_LABELS for s in parsed.selectors):
            found.append(f"{where}: label {label!r} is on none of its metrics")
    assert not found, "\n".join(found)
    # every family the daemon exports is on the dashboard
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", name) for name in exported()}
    shown = {re.sub(r"_(total|bucket|sum|count|created)$", "", name) for name in metrics_used}
    assert families - shown == set()


def test_every_selector_follows_the_job_and_instance_variables() -> None:
    """A selector without them would mix daemons the viewer did not pick."""
    dashboard = load()
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    for where, expr in [*expressions(dashboard), *variable_queries(dashboard)]:
        for variable in re.findall(r"\$\{?(\w+)", expr):
            known = variable in defined or f"${variable}" in GRAFANA_DURATIONS
            assert known, f"{where}: ${variable} is not a variable of the dashboard"
        if where.startswith("variable"):
            continue
        for selector in parse(expr).selectors:
            matchers = {(label, value) for label, _, value in selector.matchers}
            assert {("job", "$job"), ("instance", "$instance")} <= matchers, f"{where}: {selector.metric}"


@pytest.mark.parametrize(
    ("expr", "complaint"),
    [
        ('rate(image_updater_passes_totl{job=~"$job"}[5m])', "unknown metric 'image_updater_passes_totl'"),
        ("image_updater_pass_duration_seconds[5m]", "unknown metric 'image_updater_pass_duration_seconds'"),
        ('image_updater_passes_total{registry="x"}', "image_updater_passes_total has no label 'registry'"),
        ('image_updater_passes_total{outcome=~"success|failure"}', "outcome='failure' is never emitted"),
        ('image_updater_webhook_requests_total{result="rejected"}', "result='rejected' is never emitted"),
        ("sum by (status) (rate(image_updater_errors_total[5m]))", "grouping label 'status'"),
        ("up unless on (source) image_updater_build_info", "grouping label 'source'"),
    ],
)
def test_the_check_catches_misspellings(expr: str, complaint: str) -> None:
    found = list(problems(parse(expr), "e"))
    assert any(complaint in p for p in found), found


def test_the_check_accepts_prometheus_client_series() -> None:
    for expr in (
        'histogram_quantile(0.9, sum by (le, source) (rate(image_updater_pass_duration_seconds_bucket[5m])))',
        "image_updater_pass_duration_seconds_count / image_updater_pass_duration_seconds_sum",
        "image_updater_passes_created",
        'time() - max without (instance) (image_updater_last_success_timestamp_seconds offset 5m)',
    ):
        assert list(problems(parse(expr), "e")) == [], expr


@pytest.mark.parametrize(
    "expr",
    [
        "sum(rate(image_updater_passes_total[5m])",
        "rates(image_updater_passes_total[5m])",
        '{__name__="image_updater_passes_total"}',
        "image_updater_passes_total{outcome}",
        "rate(image_updater_passes_total[$job])",
        "sum(rate(x[5m])) # comment",
        "time()",
    ],
)
def test_the_tokenizer_refuses_what_it_cannot_place(expr: str) -> None:
    with pytest.raises(PromQLSyntaxError):
        parse(expr)
