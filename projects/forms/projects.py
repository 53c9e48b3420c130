"""Forms for projects."""

from django import forms


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=120)
    slug = forms.SlugField(max_length=60, required=False, help_text="Derived from the name if empty.")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
