# Heartbeats of running tasks and the watchdog's re-queue count (issue 15, part 6: lost tasks).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("projects", "0004_review"),
    ]

    operations = [
        migrations.AddField(
            model_name="stagerun",
            name="heartbeat",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="stagerun",
            name="requeues",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="sweeprun",
            name="heartbeat",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
