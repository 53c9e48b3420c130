"""Forms of the agent, endpoint, feedback and audit pages. Choices come from the view's scoped rows."""

from __future__ import annotations

from django import forms

from runtime.models import Backend, Outcome, Source

GPU_LAYERS_HELP = (
    "Layers offloaded to the GPU. Blank: automatic — as many as fit in the free GPU memory "
    "when the agent is deployed (0 without a GPU). -1: every layer; 0: CPU only."
)


def model_label(model) -> str:
    size = f"{model.size_bytes / 2**20:.1f} MiB" if model.size_bytes else ""
    details = " · ".join(p for p in (model.project.name, model.file_type, size) if p)
    return f"{model.name} ({details})" if details else model.name


class AgentForm(forms.Form):
    """Create (with ``projects``) or edit (without: an agent stays in its project) an agent."""

    name = forms.CharField(max_length=120)
    project = forms.ChoiceField(help_text="The agent belongs to this project.")
    backend = forms.ChoiceField(choices=Backend.choices, initial=Backend.LLAMA_CPP)
    model = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="— choose a GGUF model —",
        help_text="Ready GGUF models of this organisation that can chat (llama.cpp backend).",
    )
    system_prompt = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Sent before every conversation; leave blank for none.",
    )
    temperature = forms.FloatField(
        min_value=0, max_value=2, initial=0.7, help_text="0 is deterministic; higher is more varied."
    )
    top_p = forms.FloatField(min_value=0.01, max_value=1, initial=0.95, label="Top-p")
    max_tokens = forms.IntegerField(
        min_value=1, max_value=32768, initial=512, label="Max tokens", help_text="Longest answer, in tokens."
    )
    context_length = forms.IntegerField(
        min_value=64,
        max_value=1_048_576,
        initial=2048,
        label="Context length",
        help_text="Tokens of conversation the model sees; older turns are left out when it is full.",
    )
    gpu_layers = forms.IntegerField(min_value=-1, required=False, label="GPU layers", help_text=GPU_LAYERS_HELP)
    use_mmap = forms.BooleanField(
        required=False,
        initial=True,
        label="Memory-map the model file",
        help_text="Faster loads and shared pages; turn off to read the whole file into memory.",
    )
    threads = forms.IntegerField(min_value=1, max_value=512, required=False, help_text="CPU threads; blank: all cores.")
    remote_url = forms.URLField(
        required=False,
        label="Remote URL",
        assume_scheme="https",
        help_text="Base URL of an OpenAI-compatible API, e.g. http://gpu-host:8080/v1 (remote backend).",
    )
    remote_model = forms.CharField(
        max_length=200,
        required=False,
        label="Remote model",
        help_text="The model name the remote API expects; blank: this agent's slug.",
    )
    remote_api_key = forms.CharField(
        max_length=500,
        required=False,
        label="Remote API key",
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Sent as the bearer token; write-only, never shown again.",
    )

    #: Field groups as the template shows them.
    GROUPS = (
        ("Agent", ("name", "project", "backend", "model", "system_prompt")),
        ("Generation", ("temperature", "top_p", "max_tokens", "context_length")),
        ("llama.cpp", ("gpu_layers", "use_mmap", "threads")),
        ("Remote endpoint", ("remote_url", "remote_model", "remote_api_key")),
    )

    def __init__(self, *args, models, projects=None, has_key: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].queryset = models
        self.fields["model"].label_from_instance = model_label
        if projects is None:
            del self.fields["project"]
        else:
            self.fields["project"].choices = [(p.slug, p.name) for p in projects]
        if has_key:
            self.fields[
                "remote_api_key"
            ].help_text = "A key is set; leave blank to keep it, or type a new one. Never shown again."

    def groups(self):
        return [(title, [self[name] for name in names if name in self.fields]) for title, names in self.GROUPS]

    def agent_fields(self) -> dict:
        """The cleaned values as runtime.actions takes them."""
        data = dict(self.cleaned_data)
        data.pop("project", None)
        return data


class EndpointForm(forms.Form):
    name = forms.CharField(max_length=120, help_text="Also the name the OpenAI-compatible API knows it by (as a slug).")
    project = forms.ChoiceField()
    baseline = forms.ModelChoiceField(queryset=None, empty_label=None, help_text="The agent answering by default.")
    candidate = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="— no test —",
        help_text="Optional: an agent tested against the baseline.",
    )
    candidate_share = forms.FloatField(
        min_value=0,
        max_value=1,
        initial=0.5,
        label="Candidate's share",
        help_text="Fraction (0–1) of new conversations the candidate answers.",
    )

    def __init__(self, *args, agents, projects, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].choices = [(p.slug, p.name) for p in projects]
        self.fields["baseline"].queryset = agents
        self.fields["candidate"].queryset = agents


class ChangeTestForm(forms.Form):
    candidate = forms.ModelChoiceField(queryset=None, required=False, empty_label="— no candidate —")
    candidate_share = forms.FloatField(
        min_value=0,
        max_value=1,
        label="Candidate's share",
        help_text="Fraction (0–1) of new conversations the candidate answers.",
    )
    note = forms.CharField(max_length=500, required=False, help_text="Optional: why, for the history.")

    def __init__(self, *args, agents, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["candidate"].queryset = agents


class NoteForm(forms.Form):
    note = forms.CharField(max_length=500, required=False, help_text="Optional: why, for the history.")


class FeedbackForm(forms.Form):
    rating = forms.TypedChoiceField(choices=[(1, "Thumbs up"), (-1, "Thumbs down")], coerce=int)
    comment = forms.CharField(max_length=2000, required=False)


class AuditFilterForm(forms.Form):
    """GET filters of the audit page; invalid values are ignored (the form is never bound to a POST)."""

    outcome = forms.ChoiceField(choices=[("", "Any outcome"), *Outcome.choices], required=False)
    source = forms.ChoiceField(choices=[("", "Any source"), *Source.choices], required=False)
    user = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    since = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="From this day on."
    )

    def __init__(self, *args, users, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["user"].choices = [("", "Anyone"), *((u.pk, u.get_username()) for u in users)]
