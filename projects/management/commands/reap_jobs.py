from django.core.management.base import BaseCommand

from projects.background import reap_stale_jobs


class Command(BaseCommand):
    help = "Mark running jobs whose worker stopped sending heartbeats as failed."

    def handle(self, *args, **options):
        count = reap_stale_jobs(force=True)
        self.stdout.write(f"{count} stale job(s) marked failed.")
