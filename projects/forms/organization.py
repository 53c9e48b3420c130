"""Forms for organisations, invitations, roles and API tokens."""

from django import forms

from projects.models import Role


class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=120)
    slug = forms.SlugField(
        max_length=60, required=False, help_text="Used in addresses; derived from the name if empty."
    )


class InvitationForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)
    email = forms.EmailField(required=False, help_text="Optional: who the link is for.")


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class TokenForm(forms.Form):
    name = forms.CharField(max_length=80, help_text="What will use it, e.g. “nightly eval script”.")


class DeleteOrganizationForm(forms.Form):
    confirm = forms.CharField(max_length=60, help_text="Type the organisation's slug to confirm.")
