"""``peregrine alerts list|ack|follow`` and ``peregrine rules list|add|enable|disable|test``:
alerts raised by rules over incoming events, and the rules (over the API)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from peregrine.cli.output import print_table
from peregrine.cli.remote_cmd import (
    CaOption,
    JsonOption,
    LimitOption,
    TokenOption,
    UrlOption,
    ago,
    connected,
    console,
    duration,
    fail,
    print_json,
)

alerts_app = typer.Typer(help="Alerts raised by rules over incoming events.", no_args_is_help=True)
rules_app = typer.Typer(help="Alert rules over incoming events.", no_args_is_help=True)

SinceOption = Annotated[
    str | None, typer.Option("--since", help="Only the last 30m, 12h, 7d...", show_default=False)
]


def _alert_row(alert: dict[str, Any]) -> list[str]:
    return [
        str(alert["alert_id"]),
        ago(alert["time"]),
        alert["severity"],
        alert["state"],
        alert["rule_id"],
        alert["hostname"] or alert["client_id"] or "(fleet)",
        alert["summary"],
    ]


_ALERT_COLUMNS = ["id", "raised", "severity", "state", "rule", "host", "summary"]


@alerts_app.command("list")
def list_alerts(
    state: Annotated[
        str | None, typer.Option("--state", help="open or acknowledged.", show_default=False)
    ] = None,
    severity: Annotated[
        list[str] | None,
        typer.Option("--severity", "-s", help="info, low, medium, high, critical (repeat)."),
    ] = None,
    client_id: Annotated[str | None, typer.Option("--client", help="One client's.")] = None,
    rule_id: Annotated[str | None, typer.Option("--rule", help="One rule's.")] = None,
    since: SinceOption = None,
    limit: LimitOption = 50,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """List alerts, newest first."""
    after = time.time() - duration(since, "--since") if since else None
    with connected(url, token, ca_cert) as client:
        alerts = client.alerts.list(
            state=state, severity=severity, client_id=client_id, rule_id=rule_id,
            since=after, limit=limit,
        )  # fmt: skip
    if as_json:
        print_json(alerts)
        return
    print_table(console, _ALERT_COLUMNS, [_alert_row(a) for a in alerts], ids={"id"})


@alerts_app.command("ack")
def acknowledge(
    alert_ids: Annotated[list[int], typer.Argument(metavar="ALERT...", help="Alert ids.")],
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why; what was done.")] = "",
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Acknowledge alerts (your name and the time are kept with the comment)."""
    with connected(url, token, ca_cert) as client:
        for alert_id in alert_ids:
            done = client.alerts.acknowledge(alert_id, comment)
            console.print(f"{alert_id}: acknowledged by {done['acked_by']}", markup=False)


@alerts_app.command("follow")
def follow(
    severity: Annotated[
        list[str] | None, typer.Option("--severity", "-s", help="Only these (repeat).")
    ] = None,
    rule_id: Annotated[str | None, typer.Option("--rule", help="One rule's.")] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Print new alerts as they are raised, until Ctrl-C (JSON lines with --json)."""
    with connected(url, token, ca_cert) as client:
        for alert in client.alerts.follow(severity=severity, rule_id=rule_id):
            if as_json:
                print_json(alert)
            else:
                console.print("  ".join(_alert_row(alert)), markup=False)


@rules_app.command("list")
def list_rules(
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """List the rules, built-in and added."""
    with connected(url, token, ca_cert) as client:
        rules = client.rules.list()
    if as_json:
        print_json(rules)
        return
    rows = [
        [
            r["rule_id"],
            "yes" if r["enabled"] else "no",
            r["severity"],
            str(r["version"]),
            ", ".join(r["artifacts"]),
            r["condition"] + (f"  [window {r['window']}]" if r["window"] else ""),
        ]
        for r in rules
    ]
    columns = ["rule", "enabled", "severity", "version", "artifacts", "condition"]
    print_table(console, columns, rows, ids={"rule"})


def _read_rules(path: Path) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        fail(f"cannot read {path}: {exc}")
    items = data if isinstance(data, list) else [data]
    if not all(isinstance(item, dict) for item in items):
        fail(f"{path}: a rule is a mapping (rule_id, artifacts, condition, severity, ...)")
    return items


@rules_app.command("add")
def add(
    path: Annotated[
        Path, typer.Argument(metavar="FILE", help="YAML or JSON: one rule or a list of them.")
    ],
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Add rules, or save new versions of them (the server checks each condition first)."""
    rules = _read_rules(path)
    with connected(url, token, ca_cert) as client:
        for rule in rules:
            saved = client.rules.add(rule)
            console.print(f"{saved['rule_id']}: version {saved['version']} saved", markup=False)


def _switch(rule_ids: list[str], enabled: bool, url: Any, token: Any, ca_cert: Any) -> None:
    with connected(url, token, ca_cert) as client:
        for rule_id in rule_ids:
            rule = client.rules.enable(rule_id) if enabled else client.rules.disable(rule_id)
            state = "enabled" if rule["enabled"] else "disabled"
            console.print(f"{rule_id}: {state} (version {rule['version']})", markup=False)


RuleIds = Annotated[list[str], typer.Argument(metavar="RULE...", help="Rule ids.")]


@rules_app.command("enable")
def enable(
    rule_ids: RuleIds, url: UrlOption = None, token: TokenOption = None, ca_cert: CaOption = None
) -> None:
    """Enable rules."""
    _switch(rule_ids, True, url, token, ca_cert)


@rules_app.command("disable")
def disable(
    rule_ids: RuleIds, url: UrlOption = None, token: TokenOption = None, ca_cert: CaOption = None
) -> None:
    """Disable rules."""
    _switch(rule_ids, False, url, token, ca_cert)


@rules_app.command("test")
def test(
    rule: Annotated[str, typer.Argument(metavar="RULE|FILE", help="A rule id, or a rule file.")],
    since: Annotated[str, typer.Option("--since", help="Over the last 30m, 12h, 7d...")] = "1d",
    client_id: Annotated[str | None, typer.Option("--client", help="One client's events.")] = None,
    limit: LimitOption = 20,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Run a rule over stored events of a time range: what it would have raised (nothing is)."""
    path = Path(rule)
    target: str | dict[str, Any] = rule
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
        target = _read_rules(path)[0]
    start = time.time() - duration(since, "--since")
    with connected(url, token, ca_cert) as client:
        result = client.rules.test(target, start, client_id=client_id, limit=limit)
    if as_json:
        print_json(result)
        return
    more = " (stopped at the read limit)" if result["truncated"] else ""
    console.print(f"{result['matched']} of {result['scanned']} events matched{more}", markup=False)
    if result["matches"]:
        columns = list(dict.fromkeys(k for m in result["matches"] for k in m))
        rows = [[str(m.get(c, "")) for c in columns] for m in result["matches"]]
        print_table(console, columns, rows, ids={"client_id"})
    for window in result["windows"]:
        fires = "fires" if window["fires"] else "below the threshold"
        group = f" {window['group']}" if window["group"] else ""
        console.print(
            f"window {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(window['start']))} UTC"
            f"{group}: {window['count']} distinct, {fires}",
            markup=False,
        )


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(rules_app, name="rules")
