"""`manage.py breach_response`: the breach playbook as one command.

    manage.py breach_response --org acme --new-key v3 --dry-run
    manage.py breach_response --org acme --new-key v3 --yes
    manage.py breach_response --all --new-key aws-kms:alias/vault-2026 --yes

Prints each step and its counts; every step is recorded in the audit trail. Running it again
resumes the open incident of the same scope (an interrupted run continues where it stopped);
once the incident is closed, running it again does nothing unless --new-incident says this
is another breach. See docs/breach-response.md.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from audit.models import ActorType
from audit.services import Actor
from credentials import crypto
from credentials.rotation import BatchProgress
from incidents import services
from incidents.models import Incident
from orgs.selectors import organization_get_by_slug


def _operator() -> Actor:
    try:
        who = getpass.getuser()
    except OSError:
        who = "unknown"
    return Actor(ActorType.SYSTEM, "", f"manage.py breach_response ({who})")


class Command(BaseCommand):
    help = (
        "Contain a suspected credential leak: rotate and re-encrypt, revoke agent tokens, mark "
        "credentials compromised, notify people, write the access review."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        scope = parser.add_mutually_exclusive_group(required=True)
        scope.add_argument("--org", help="organisation slug")
        scope.add_argument("--all", action="store_true", help="every organisation")
        parser.add_argument(
            "--new-key",
            help="key id to re-encrypt under (v3, local:v3, aws-kms:...); default: the active key",
        )
        parser.add_argument("--dry-run", action="store_true", help="show what would happen")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        parser.add_argument(
            "--new-incident",
            action="store_true",
            help="start a new incident even though one for this scope was closed before",
        )
        parser.add_argument(
            "--report-dir",
            type=Path,
            default=None,
            help="where the access review goes (default: <var dir>/incidents/)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scope = self._scope(options)
        target_key_id = self._target_key(options["new_key"])
        actor = _operator()
        report_dir = options["report_dir"] or Path(settings.VAR_DIR) / "incidents"

        latest = services.incident_latest(scope=scope)
        resuming = latest if latest is not None and latest.closed_at is None else None
        if resuming is not None and resuming.target_key_id != target_key_id:
            raise CommandError(
                f"Incident {resuming.id} for {scope.label} is still open with target key "
                f"{resuming.target_key_id}; finish it with --new-key {resuming.target_key_id}."
            )
        if latest is not None and latest.closed_at is not None and not options["new_incident"]:
            self.stdout.write(
                f"Incident {latest.id} for {scope.label} was completed at "
                f"{latest.closed_at:%Y-%m-%d %H:%M:%S} UTC: nothing to do. If this is another "
                f"breach, run again with --new-incident."
            )
            return

        cut_off = resuming.opened_at if resuming is not None else timezone.now()
        plan = services.plan(scope=scope, target_key_id=target_key_id, cut_off=cut_off)
        self._print_plan(plan, resuming, dry_run=options["dry_run"])
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing was changed.")
            return
        self._confirm(scope.label, yes=options["yes"])

        incident = resuming or services.incident_open(
            scope=scope, target_key_id=target_key_id, actor=actor
        )
        self.stdout.write(
            f"{'Resuming' if resuming else 'Opened'} incident {incident.id} ({scope.label})."
        )
        self._run_steps(incident, actor, report_dir)
        services.incident_close(incident=incident, actor=actor)
        self.stdout.write(self.style.SUCCESS(f"Incident {incident.id}: every step done."))
        self.stdout.write(f"Access review: {incident.report_path}")

    # --- arguments ---------------------------------------------------------------------------

    def _scope(self, options: dict[str, Any]) -> services.Scope:
        if options["all"]:
            return services.Scope(org=None)
        org = organization_get_by_slug(slug=options["org"])
        if org is None:
            raise CommandError(f"No organisation with slug {options['org']!r}.")
        return services.Scope(org=org)

    def _target_key(self, requested: str | None) -> str:
        try:
            ring = crypto.get_keyring()
        except crypto.KeyConfigurationError as exc:
            raise CommandError(f"The key configuration is broken: {exc}") from None
        if requested is None:
            return ring.active_key_id
        key_id = crypto.normalise_key_id(requested)
        try:
            ring.provider(key_id)
        except crypto.KeyNotConfiguredError:
            raise CommandError(
                f"Refusing to start: the new key {key_id} is not configured. Add it to the "
                f"environment of this command, the web and the workers first "
                f"(docs/key-rotation.md)."
            ) from None
        if key_id != ring.active_key_id:
            # Otherwise the web would keep sealing new secrets under the old key while we
            # move everything off it.
            raise CommandError(
                f"Refusing to start: {key_id} is configured but the active key is "
                f"{ring.active_key_id}. Set {crypto.ACTIVE_KEY_VARIABLE}={key_id} for the web, "
                f"the workers and this command first."
            )
        return key_id

    def _confirm(self, label: str, *, yes: bool) -> None:
        if yes:
            return
        if not sys.stdin.isatty():
            raise CommandError("Not on a terminal: pass --yes to run the playbook.")
        answer = input(f"This changes {label} now. Type 'contain' to go on: ")
        if answer.strip() != "contain":
            raise CommandError("Not confirmed; nothing was changed.")

    # --- output ----------------------------------------------------------------------------

    def _print_plan(self, plan: services.Plan, resuming: Incident | None, *, dry_run: bool) -> None:
        would = "would " if dry_run else ""
        rotate = sum(plan.rows_to_rotate.values())
        lines = [
            f"Breach response for {plan.scope.label}"
            + (f" (resuming incident {resuming.id})" if resuming else ""),
            f"1. rotate: {would}re-encrypt {rotate} credential(s) under {plan.target_key_id} "
            f"(new data keys), from "
            + (", ".join(f"{k}: {n}" for k, n in plan.rows_to_rotate.items()) or "no other key")
            + f"; {plan.rows_under_target} already under it",
            f"2. revoke_tokens: {would}revoke {plan.active_tokens} active agent token(s) "
            f"and {plan.active_personal_tokens} personal token(s) of its members, and end "
            f"their signed-in sessions",
            f"3. mark_compromised: {would}mark {plan.credentials_to_mark} credential(s) "
            f"compromised",
            f"4. notify: {would}mail {len(plan.recipients)} person(s)"
            + (
                f" ({len(plan.recipients_without_address)} without an email address: "
                f"{', '.join(plan.recipients_without_address)})"
                if plan.recipients_without_address
                else ""
            ),
            f"5. review_report: {would}write the access review of the last 30 days",
        ]
        if rotate == 0 and plan.rows_under_target:
            lines.append(
                f"   note: every credential already is under {plan.target_key_id}; if that "
                f"key itself may be exposed, configure a new one and pass --new-key."
            )
        for line in lines:
            self.stdout.write(line)

    def _run_steps(self, incident: Incident, actor: Actor, report_dir: Path) -> None:
        def done(step: str, counts: dict[str, Any]) -> None:
            self.stdout.write(f"   {step}: {json.dumps(counts, default=str, sort_keys=True)}")

        self.stdout.write("1. rotate ...")
        bar = tqdm(unit="row", disable=None, file=sys.stderr)

        def progress(batch: BatchProgress) -> None:
            bar.total = batch.total
            bar.update(batch.rewrapped + batch.concurrent + batch.failed)

        try:
            done("rotate", services.step_rotate(incident=incident, actor=actor, on_batch=progress))
        except services.StepFailedError as exc:
            raise CommandError(
                f"Step 1 (rotate) stopped: {exc}. Run the same command again to resume "
                f"incident {incident.id}."
            ) from None
        finally:
            bar.close()
        self.stdout.write("2. revoke_tokens ...")
        done("revoke_tokens", services.step_revoke_tokens(incident=incident, actor=actor))
        self.stdout.write("3. mark_compromised ...")
        done("mark_compromised", services.step_mark_compromised(incident=incident, actor=actor))
        self.stdout.write("4. notify ...")
        try:
            done("notify", services.step_notify(incident=incident, actor=actor))
        except services.StepFailedError as exc:
            raise CommandError(
                f"Step 4 (notify) failed: {exc}. Steps 1-3 are done; fix the mail settings "
                f"(EMAIL_URL) and run the same command again to resume incident {incident.id}."
            ) from None
        self.stdout.write("5. review_report ...")
        done(
            "review_report",
            services.step_review_report(incident=incident, actor=actor, report_dir=report_dir),
        )
