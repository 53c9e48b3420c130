from django import forms

from projects.models import DatasetFormat, DatasetRole

UNIT_CHOICES = [
    ("", "Default (a line for .txt, a whole file inside a .zip)"),
    ("line", "One document per line"),
    ("paragraph", "One document per paragraph (blank-line separated)"),
    ("file", "One document per file"),
]


class DatasetUploadForm(forms.Form):
    """A whole file posted with its options (multipart; Django spools large files to disk)."""

    project = forms.ChoiceField()
    file = forms.FileField(
        help_text="UTF-8 (or UTF-16 with a byte-order mark, or Windows-1252) .txt, .jsonl, .csv/.tsv, "
        "or a .zip of text files."
    )
    name = forms.CharField(max_length=200, required=False, help_text="Defaults to the file name.")
    role = forms.ChoiceField(choices=DatasetRole.choices, initial=DatasetRole.DOMAIN)
    format = forms.ChoiceField(choices=[("", "From the file name"), *DatasetFormat.choices], required=False)
    text_field = forms.CharField(
        max_length=200,
        required=False,
        label="JSONL text field",
        help_text="The field holding the text (default “text”).",
    )
    template = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Question: {question}\nAnswer: {answer}"}),
        label="Template (JSONL or CSV)",
        help_text="Builds each document from fields, instead of one text field or column.",
    )
    column = forms.CharField(
        max_length=200,
        required=False,
        label="CSV column",
        help_text="The column holding the text (default: a column called “text”, or the only one).",
    )
    delimiter = forms.CharField(
        max_length=2,
        required=False,
        strip=False,
        label="CSV delimiter",
        help_text="Default “,” (a tab for .tsv); write \\t for a tab.",
    )
    unit = forms.ChoiceField(choices=UNIT_CHOICES, required=False, label="Text unit (.txt and .zip)")
    split_ratio = forms.FloatField(initial=0.9, min_value=0.01, max_value=0.99, label="Train fraction")
    split_seed = forms.IntegerField(initial=0, min_value=0, label="Split seed")

    def __init__(self, *args, projects=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].choices = [(p.slug, p.name) for p in projects]

    def clean_template(self) -> str:
        return self.cleaned_data["template"].replace("\r\n", "\n")

    def clean_delimiter(self) -> str:
        value = self.cleaned_data["delimiter"]
        return "\t" if value == "\\t" else value

    def options(self) -> dict[str, str]:
        return {
            key: self.cleaned_data[key]
            for key in ("text_field", "template", "column", "delimiter", "unit")
            if self.cleaned_data.get(key)
        }


class SplitForm(forms.Form):
    ratio = forms.FloatField(min_value=0.01, max_value=0.99, label="Train fraction")
    seed = forms.IntegerField(min_value=0, label="Seed")
