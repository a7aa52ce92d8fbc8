"""`manage.py credential_keys <generate|status|rotate|verify|retire>`: the key lifecycle.

The runbook is docs/key-rotation.md. Keys are read from the environment only (never argv);
`generate` prints a new key on stdout so it can go straight into a file or a secret store.

`rotate` and `verify` decrypt (unwrap every data key; verify decrypts every payload), which
only worker processes may do: they run inside credentials.crypto.worker_role(). An operator
who may run this command holds the keys already (the same environment as the workers), so the
role adds no power; what it keeps is the rule that nothing here prints a plaintext.
"""

from __future__ import annotations

import json
import secrets
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError

from credentials import crypto, rotation, selectors, services
from credentials.checks import check_credential_keys
from credentials.models import Credential
from orgs.models import Organization

INTERRUPTED_EXIT = 130  # what a shell reports for a process stopped by Ctrl-C


class Command(BaseCommand):
    help = "Manage credential keys: generate, status, rotate, verify, retire."
    # Each sub-command checks the key configuration itself and says what is wrong; the other
    # startup checks (SECRET_KEY and the like) concern the web, not an operator's key work.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        sub.add_parser(
            "generate",
            help="print a new random local key as NAME=<64 hex>; nothing else on stdout",
        )
        status = sub.add_parser("status", help="keys, usage, active key, retirable keys")
        status.add_argument("--json", action="store_true", help="one JSON document")
        rotate = sub.add_parser("rotate", help="move every credential onto the target key")
        rotate.add_argument("--to", required=True, dest="to_key_id", metavar="KEY_ID")
        rotate.add_argument(
            "--batch-size", type=int, default=rotation.DEFAULT_BATCH_SIZE, metavar="N"
        )
        rotate.add_argument(
            "--reencrypt",
            action="store_true",
            help="also replace each data key and re-encrypt the payload",
        )
        rotate.add_argument("--org", metavar="SLUG", help="only this organisation")
        rotate.add_argument("--dry-run", action="store_true", help="count, change nothing")
        verify = sub.add_parser("verify", help="decrypt every credential; report failures")
        verify.add_argument("--org", metavar="SLUG", help="only this organisation")
        verify.add_argument("--json", action="store_true", help="one JSON document")
        retire = sub.add_parser("retire", help="confirm no credential uses a key any more")
        retire.add_argument("key_id", metavar="KEY_ID")

    def handle(self, *args: Any, **options: Any) -> None:
        subcommand = options["subcommand"]
        try:
            if subcommand == "generate":
                self.generate()
            elif subcommand == "status":
                self.status(as_json=options["json"])
            elif subcommand == "rotate":
                self.rotate(
                    to_key_id=options["to_key_id"],
                    batch_size=options["batch_size"],
                    reencrypt=options["reencrypt"],
                    org_slug=options["org"],
                    dry_run=options["dry_run"],
                )
            elif subcommand == "verify":
                self.verify(org_slug=options["org"], as_json=options["json"])
            elif subcommand == "retire":
                self.retire(key_id=options["key_id"])
        except services.KeyLifecycleError as exc:
            raise CommandError(str(exc)) from None

    # --- generate --------------------------------------------------------------------------

    def generate(self) -> None:
        versions = set()
        for name in settings.CREDENTIAL_KEYS:
            suffix = name.removeprefix(f"{crypto.LOCAL_KEY_PREFIX}V")
            if suffix.isdigit():
                versions.add(int(suffix))
        try:
            # A version some row or counter still names must not be reused: its rows would
            # fail authentication under the new key instead of reporting a missing key.
            versions |= selectors.used_local_versions()
        except DatabaseError as exc:
            self.stderr.write(
                f"note: could not read the stored key ids ({type(exc).__name__}); the name "
                f"below only avoids the versions configured here"
            )
        variable = f"{crypto.LOCAL_KEY_PREFIX}V{max(versions, default=0) + 1}"
        self.stdout.write(f"{variable}={secrets.token_hex(32)}")

    # --- status ----------------------------------------------------------------------------

    def status(self, *, as_json: bool) -> None:
        ring = _keyring()
        keys = selectors.credential_key_status(keyring=ring)
        problems = check_credential_keys(databases=[DEFAULT_DB_ALIAS])
        if as_json:
            document = {
                "active_key": ring.active_key_id,
                "keys": [key.as_dict() for key in keys],
                "retirable": [key.key_id for key in keys if key.retirable],
                "problems": [
                    {"id": p.id, "level": "error" if p.is_serious() else "warning", "msg": p.msg}
                    for p in problems
                ],
            }
            self.stdout.write(json.dumps(document, indent=2))
            return
        header = ("key id", "provider", "active", "credentials", "wraps", "state")
        lines = [header]
        for key in keys:
            state = (
                "NOT CONFIGURED"
                if not key.configured and key.credentials
                else "retired"
                if not key.configured
                else "retirable"
                if key.retirable
                else "in use"
            )
            lines.append(
                (
                    key.key_id,
                    key.provider,
                    "yes" if key.active else "",
                    str(key.credentials),
                    str(key.wraps),
                    state,
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        for line in lines:
            self.stdout.write(
                "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
            )
        retirable = [key.key_id for key in keys if key.retirable]
        self.stdout.write("")
        self.stdout.write(f"active key: {ring.active_key_id}")
        self.stdout.write(f"can be retired: {', '.join(retirable) if retirable else 'none'}")
        for problem in problems:
            self.stdout.write(f"{'ERROR' if problem.is_serious() else 'WARNING'}: {problem.msg}")

    # --- rotate ----------------------------------------------------------------------------

    def rotate(
        self,
        *,
        to_key_id: str,
        batch_size: int,
        reencrypt: bool,
        org_slug: str | None,
        dry_run: bool,
    ) -> None:
        org = _org(org_slug)
        plan = services.credential_keys_rotation_plan(
            to_key_id=to_key_id, batch_size=batch_size, org=org
        )
        if not sum(plan.values()):
            raise CommandError(_empty(org))
        moving = {key: n for key, n in plan.items() if key != to_key_id}
        total = sum(moving.values())
        if dry_run:
            self.stdout.write(
                f"dry run: {total} credential(s) would move to {to_key_id}"
                + (" with new data keys and payloads" if reencrypt else "")
                + f", in about {-(-total // batch_size)} batch(es) of {batch_size}"
            )
            for key, n in sorted(moving.items()):
                self.stdout.write(f"  {key}: {n}")
            self.stdout.write(f"  already under {to_key_id}: {plan.get(to_key_id, 0)}")
            return
        if not total:
            self.stdout.write(
                f"nothing to do: all {plan.get(to_key_id, 0)} credential(s) are under {to_key_id}"
            )
            return
        progress = _Progress(self, total=total, tty=self.stdout.isatty())
        try:
            result = services.credential_keys_rotate(
                to_key_id=to_key_id,
                batch_size=batch_size,
                reencrypt=reencrypt,
                org=org,
                on_batch=progress.batch,
            )
        finally:
            progress.close()
        self._report_rotation(result, progress.tty)

    def _report_rotation(self, result: rotation.RotationResult, tty: bool) -> None:
        summary = {
            "event": "done" if result.complete else "stopped",
            "to": result.target_key_id,
            "reencrypt": result.reencrypt,
            "rewrapped": result.rewrapped,
            "changed_concurrently": result.concurrent,
            "failed": len(result.failures),
            "remaining": result.remaining,
            "batches": result.batches,
            "rows_by_key": result.rows_after,
        }
        if tty:
            self.stdout.write(
                f"{result.rewrapped} credential(s) moved to {result.target_key_id} in "
                f"{result.batches} batch(es); {result.remaining} remain on other keys"
            )
        else:
            self.stdout.write(json.dumps(summary))
        for failure in result.failures:
            self.stderr.write(f"credential {failure.credential_id}: {failure.reason}")
        again = "run the same command again to resume"
        if result.interrupted:
            raise CommandError(
                f"interrupted: every finished batch is committed, the one in flight was rolled "
                f"back; {again}",
                returncode=INTERRUPTED_EXIT,
            )
        if result.error:
            raise CommandError(
                f"stopped: {result.error}; {result.rewrapped} credential(s) were moved before "
                f"that. Fix the cause, then {again}"
            )
        if result.failures:
            raise CommandError(
                f"{len(result.failures)} credential(s) could not be unwrapped and were left as "
                f"they are (listed above); `credential_keys verify` shows them all"
            )
        if result.remaining:
            raise CommandError(
                f"{result.remaining} credential(s) are still on other keys after "
                f"{result.passes} passes: are web or worker processes still writing with an "
                f"old {crypto.ACTIVE_KEY_VARIABLE}? Fix that, then {again}"
            )

    # --- verify ----------------------------------------------------------------------------

    def verify(self, *, org_slug: str | None, as_json: bool) -> None:
        _keyring()
        org = _org(org_slug)
        if not selectors.credentials_in_scope(org.id if org else None).exists():
            raise CommandError(_empty(org))
        result = services.credential_keys_verify(org=org)
        if as_json:
            self.stdout.write(
                json.dumps(
                    {
                        "checked": result.checked,
                        "ok_by_key": result.ok_by_key,
                        "failed_by_key": result.failed_by_key,
                        "failures": [
                            {"id": f.credential_id, "key_id": f.key_id, "reason": f.reason}
                            for f in result.failures
                        ],
                    },
                    indent=2,
                )
            )
        else:
            failed = result.failed_by_key
            for key_id in sorted(set(result.ok_by_key) | set(failed)):
                self.stdout.write(
                    f"{key_id}: {result.ok_by_key.get(key_id, 0)} ok, "
                    f"{failed.get(key_id, 0)} failed"
                )
            for failure in result.failures:
                self.stdout.write(f"FAILED credential {failure.credential_id}: {failure.reason}")
        if result.failures:
            raise CommandError(
                f"{len(result.failures)} of {result.checked} credential(s) failed to decrypt"
            )
        if not as_json:
            self.stdout.write(f"all {result.checked} credential(s) decrypt")

    # --- retire ----------------------------------------------------------------------------

    def retire(self, *, key_id: str) -> None:
        retired = services.credential_keys_retire(key_id=key_id)
        if retired.variable == crypto.KMS_KEYS_VARIABLE:
            how = (
                f"remove {key_id} from {retired.variable} for the web and the workers and "
                f"restart them. Keep the KMS key itself (disable it rather than schedule its "
                f"deletion) for as long as a database backup from before the rotation may be "
                f"restored."
            )
        else:
            how = (
                f"remove {retired.variable} (or {retired.variable}_FILE) from the environment "
                f"of the web and the workers and restart them. Keep an offline copy for as "
                f"long as a database backup from before the rotation may be restored."
            )
        self.stdout.write(
            f"no credential uses {key_id} ({retired.wraps} wraps in its lifetime); {how}"
        )


def _keyring() -> crypto.Keyring:
    try:
        return crypto.get_keyring()
    except crypto.KeyConfigurationError as exc:
        raise CommandError(str(exc)) from None


def _org(slug: str | None) -> Organization | None:
    if slug is None:
        return None
    org = Organization.objects.filter(slug=slug).first()
    if org is None:
        raise CommandError(f"no organisation with slug {slug!r}")
    return org


def _empty(org: Organization | None) -> str:
    where = f"organisation {org.slug}" if org else "the database"
    return (
        f"{where} holds no credentials: nothing to do. Is DATABASE_URL the vault's database? "
        f"({Credential._meta.db_table} is empty)"
    )


class _Progress:
    """tqdm on a terminal; otherwise one JSON line per committed batch on stdout."""

    def __init__(self, command: BaseCommand, *, total: int, tty: bool) -> None:
        self.command = command
        self.tty = tty
        self._bar: Any = None
        if tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="row", file=sys.stderr, dynamic_ncols=True)

    def batch(self, progress: rotation.BatchProgress) -> None:
        if self._bar is not None:
            self._bar.update(progress.rewrapped + progress.concurrent + progress.failed)
            return
        self.command.stdout.write(json.dumps({"event": "batch", **progress.as_dict()}))
        self.command.stdout.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
