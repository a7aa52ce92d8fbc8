"""Hash chain: per-chain sequence, prev_hash, hash, chain heads; indexes for every filter.

Events written before this migration are chained here, in id order per org, so `audit verify`
covers them from now on (they were not tamper-evident before it).
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from audit import chain


def chain_existing_events(apps, schema_editor):
    AuditEvent = apps.get_model("audit", "AuditEvent")
    AuditChainHead = apps.get_model("audit", "AuditChainHead")
    heads = {}
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        key = chain.chain_key(event.org_id)
        sequence, prev_hash = heads.get(key, (0, chain.GENESIS_HASH))
        metadata = chain.canonical_metadata(event.metadata)
        ip = chain.normalise_ip(event.ip)
        fields = {
            name: getattr(event, name)
            for name in (
                "occurred_at", "actor_type", "actor_id", "actor_label", "action", "target_type",
                "target_id", "target_label", "outcome", "request_id", "job_id", "user_agent",
            )
        }
        digest = chain.event_hash(
            prev_hash=prev_hash, chain=key, sequence=sequence + 1, ip=ip, metadata=metadata,
            **fields,
        )
        AuditEvent.objects.filter(pk=event.pk).update(
            sequence=sequence + 1, prev_hash=prev_hash, hash=digest, metadata=metadata, ip=ip
        )
        heads[key] = (sequence + 1, digest)
    AuditChainHead.objects.bulk_create(
        AuditChainHead(chain=key, sequence=sequence, hash=digest)
        for key, (sequence, digest) in heads.items()
    )


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0001_initial"),
        ("orgs", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditChainHead",
            fields=[
                ("chain", models.CharField(max_length=36, primary_key=True, serialize=False)),
                ("sequence", models.BigIntegerField(default=0)),
                ("hash", models.CharField(default="0000000000000000000000000000000000000000000000000000000000000000", max_length=64)),
            ],
        ),
        migrations.RemoveIndex(model_name="auditevent", name="audit_org_action_time"),
        migrations.RemoveIndex(model_name="auditevent", name="audit_org_target"),
        migrations.AlterModelOptions(name="auditevent", options={"ordering": ["-id"]}),
        migrations.AlterField(
            model_name="auditevent",
            name="occurred_at",
            field=models.DateTimeField(db_index=True, default=django.utils.timezone.now),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="org",
            field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to="orgs.organization"),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="request_id",
            field=models.CharField(blank=True, max_length=128),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="job_id",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="sequence",
            field=models.BigIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash_format",
            field=models.PositiveSmallIntegerField(default=1),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(chain_existing_events, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.UniqueConstraint(fields=("org", "sequence"), name="audit_sequence_in_chain"),
        ),
        migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.UniqueConstraint(condition=models.Q(("org__isnull", True)), fields=("sequence",), name="audit_sequence_in_system_chain"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["action", "org", "sequence"], name="audit_action"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["actor_type", "org", "sequence"], name="audit_actor_type"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["actor_id", "org", "sequence"], name="audit_actor_id"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["actor_label", "org", "sequence"], name="audit_actor_label"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["target_id", "org", "sequence"], name="audit_target"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["request_id", "org", "sequence"], name="audit_request"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["job_id", "org", "sequence"], name="audit_job"),
        ),
    ]
