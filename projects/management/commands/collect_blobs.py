from django.core.management.base import BaseCommand
from django.template.defaultfilters import filesizeformat

from projects.blobs import collect_garbage


class Command(BaseCommand):
    help = "Delete stored blobs that no model, dataset or upload references any more."

    def handle(self, *args, **options):
        deleted, freed = collect_garbage()
        self.stdout.write(f"{deleted} unreferenced blob(s) deleted, {filesizeformat(freed)} freed.")
