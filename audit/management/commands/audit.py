"""`manage.py audit <subcommand>`: operator tools for the audit trail.

    audit verify [--org SLUG | --system] [--anchor SEQUENCE:HASH ...] [--json]
    audit review [--since 24h] [--org SLUG] [--detector NAME ...] [--json]

More subcommands join here as subparsers (one `_<name>` method each).
"""

from __future__ import annotations

import datetime
import json
import re
import time
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from audit.chain import SYSTEM_CHAIN, chain_key
from audit.review import DETECTORS, event_as_dict, review
from audit.verification import Anchor, ChainReport, chain_keys, verify_chain
from config.text import printable
from orgs.models import Organization

_ANCHOR_RE = re.compile(r"^(\d+):([0-9a-fA-F]{64})$")
_SPAN_RE = re.compile(r"^(\d{1,6})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class Command(BaseCommand):
    help = (
        "Audit trail tools. `audit verify` checks the hash chains and names the first break; "
        "`audit review` flags suspicious access with its evidence."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        verify = subcommands.add_parser(
            "verify",
            help="walk the hash chain(s); exit 1 naming the first event that does not match",
            description="Walk each chain in sequence order, recompute every hash, check the "
            "links, the sequence numbers and the chain head. Exit status 1 if any chain is "
            "broken, naming the first event that does not match and why.",
        )
        which = verify.add_mutually_exclusive_group()
        which.add_argument(
            "--org",
            metavar="SLUG",
            help="only this organisation's chain (an org id works too, for a deleted org)",
        )
        which.add_argument("--system", action="store_true", help="only the system chain")
        verify.add_argument(
            "--anchor",
            action="append",
            default=[],
            metavar="SEQUENCE:HASH",
            help="a sequence and hash recorded outside the database (an event's log line, an "
            "earlier --json report): the chain must still hold that hash there. Needs --org "
            "or --system.",
        )
        verify.add_argument("--json", action="store_true", help="print a JSON report")

        review = subcommands.add_parser(
            "review",
            help="flag suspicious access patterns in the trail, with the evidence rows",
            description="Read the trail of the last --since (default 24h) and flag: bursts "
            "of denied access by one actor, cross-organisation probing, decrypts outside a "
            "running job of an agent bound to the credential, decrypts by an agent without a "
            "use grant, use of revoked or expired tokens, decrypt volume far above a "
            "credential's own baseline, repeated metrics authentication failures.",
        )
        review.add_argument(
            "--since", default="24h", help="how far back: 30m, 24h, 7d (default 24h)"
        )
        review.add_argument("--org", metavar="SLUG", help="only this organisation's trail")
        review.add_argument(
            "--detector",
            action="append",
            choices=sorted(DETECTORS),
            help="run only these detectors (repeat the option); default: all",
        )
        review.add_argument("--json", action="store_true", help="print a JSON report")

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        if subcommand == "verify":
            self._verify(
                org=options["org"],
                system=options["system"],
                anchors=options["anchor"],
                as_json=options["json"],
            )
        elif subcommand == "review":
            self._review(
                since=options["since"],
                org=options["org"],
                detectors=options["detector"],
                as_json=options["json"],
            )

    def _review(
        self, *, since: str, org: str | None, detectors: list[str] | None, as_json: bool
    ) -> None:
        span = _parse_span(since)
        org_id = None
        if org is not None:
            org_id = _org_id(org)
            if org_id is None:
                raise CommandError(f"No organisation with slug {org!r}.")
        until = timezone.now()
        try:
            since_at = until - span
        except OverflowError:
            raise CommandError("--since reaches back before the year 1.") from None
        findings = review(since=since_at, until=until, org_id=org_id, detectors=detectors)
        if as_json:
            document = {
                "since": since_at.isoformat(),
                "until": until.isoformat(),
                "org": org,
                "findings": [finding.as_dict() for finding in findings],
            }
            self.stdout.write(json.dumps(document, indent=2, default=str))
            return
        scope = f"organisation {org}" if org else "every organisation and the system trail"

        def write(line: str) -> None:
            # Names in findings are anyone's text: never raw control characters on a terminal.
            self.stdout.write(printable(line))

        write(
            f"Access review of {scope}, {since_at:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} "
            f"UTC: {len(findings)} finding(s)."
        )
        for number, finding in enumerate(findings, 1):
            write("")
            write(f"{number}. [{finding.detector}] {finding.title}: {finding.actor}")
            write(f"   {finding.summary}")
            shown = (
                f" (first {len(finding.evidence)})"
                if finding.evidence_count > len(finding.evidence)
                else ""
            )
            write(f"   evidence, {finding.evidence_count} event(s){shown}:")
            for event in finding.evidence:
                row = event_as_dict(event)
                write(
                    f"     #{row['id']} {row['occurred_at'][:19]} {row['action']} "
                    f"{row['outcome']} by {row['actor']} on {row['target']}"
                    + (f" job {row['job_id']}" if row["job_id"] else "")
                    + (f" request {row['request_id']}" if row["request_id"] else "")
                    + (f" from {row['ip']}" if row["ip"] else "")
                )

    def _verify(self, *, org: str | None, system: bool, anchors: list[str], as_json: bool) -> None:
        if org is not None:
            keys = [_chain_of_org(org)]
        elif system:
            keys = [SYSTEM_CHAIN]
        else:
            keys = chain_keys()
        parsed = tuple(_parse_anchor(value) for value in anchors)
        if parsed and len(keys) != 1:
            raise CommandError("--anchor needs one chain: give --org or --system as well.")

        started = time.perf_counter()
        reports = [verify_chain(key, anchors=parsed) for key in keys]
        elapsed = time.perf_counter() - started
        names = _chain_names(keys)
        broken = [report for report in reports if not report.ok]
        total = sum(report.events for report in reports)

        if as_json:
            document = {
                "ok": not broken,
                "events": total,
                "seconds": round(elapsed, 3),
                "chains": [{"name": names[r.chain], **r.as_dict()} for r in reports],
            }
            self.stdout.write(json.dumps(document, indent=2))
        else:
            for report in reports:
                self.stdout.write(_describe(report, names[report.chain]))
            rate = f", {total / elapsed:,.0f} events/s" if elapsed > 0 and total else ""
            self.stdout.write(
                f"{len(reports)} chain(s), {total:,} events checked in {elapsed:.2f} s{rate}."
            )
        if broken:
            where = "; ".join(
                f"{names[r.chain]} at #{r.first_break.sequence}" for r in broken if r.first_break
            )
            raise CommandError(f"{len(broken)} of {len(reports)} audit chain(s) broken: {where}")
        if not reports:
            self.stderr.write("No audit events yet: nothing to verify.")


def _parse_span(value: str) -> datetime.timedelta:
    match = _SPAN_RE.match(value.strip())
    if match is None:
        raise CommandError("--since must be a number and a unit: 30m, 24h or 7d.")
    amount, unit = int(match[1]), match[2]
    if amount <= 0:
        raise CommandError("--since must be more than zero.")
    return datetime.timedelta(**{_UNITS[unit]: amount})


def _org_id(slug: str) -> uuid.UUID | None:
    if "\x00" in slug:  # no slug holds one, and PostgreSQL refuses it in a query
        return None
    return Organization.objects.filter(slug=slug).values_list("id", flat=True).first()


def _chain_of_org(value: str) -> str:
    org_id = _org_id(value)
    if org_id is not None:
        return chain_key(org_id)
    try:
        # A deleted org's trail outlives it, under its id.
        return chain_key(uuid.UUID(value))
    except ValueError:
        raise CommandError(f"No organisation with slug {value!r}.") from None


def _parse_anchor(value: str) -> Anchor:
    match = _ANCHOR_RE.match(value.strip())
    if match is None:
        raise CommandError("--anchor must be SEQUENCE:HASH (a number, a colon, 64 hex digits).")
    return Anchor(sequence=int(match[1]), hash=match[2].lower())


def _chain_names(keys: list[str]) -> dict[str, str]:
    ids = [uuid.UUID(key) for key in keys if key != SYSTEM_CHAIN]
    slugs = {
        chain_key(org_id): slug
        for org_id, slug in Organization.objects.filter(id__in=ids).values_list("id", "slug")
    }
    return {
        key: "system"
        if key == SYSTEM_CHAIN
        else f"{slugs[key]} ({key})"
        if key in slugs
        else f"deleted org ({key})"
        for key in keys
    }


def _describe(report: ChainReport, name: str) -> str:
    head = (
        f"head #{report.head_sequence} {report.head_hash}"
        if report.head_sequence is not None
        else "no head"
    )
    line = f"{name}: {report.events:,} events, {head}"
    if report.anchors_checked:
        line += f", anchors #{', #'.join(map(str, report.anchors_checked))} match"
    found = report.first_break
    if found is None:
        return f"{line}: intact"
    event = f"event id {found.event_id}" if found.event_id is not None else "no event"
    return f"{line}: BROKEN at #{found.sequence} ({event}): {found.reason}: {found.detail}"
