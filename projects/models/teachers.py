"""Teacher language models: a model row, its files (blobs) and the inventory of its tensors."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from projects.models.blobs import Blob
from projects.models.projects import Project
from projects.models.tenancy import Organization
from projects.tenancy import TenantModel


class ModelFormat(models.TextChoices):
    GGUF = "gguf", "GGUF"
    SAFETENSORS = "safetensors", "Safetensors (Hugging Face)"


class ModelStatus(models.TextChoices):
    IMPORTING = "importing", "Importing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class ModelRole(models.TextChoices):
    TEACHER = "teacher", "Teacher"
    STUDENT = "student", "Student"


class LanguageModel(TenantModel):
    """A model in a project: its files (blobs), what its headers say, and its tensors as rows.

    Teachers are uploaded or imported; students are built by distillation; a conversion of
    either (GGUF <-> Hugging Face) records what it was ``derived_from``.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="language_models")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="language_models")
    name = models.CharField(max_length=200)
    role = models.CharField(max_length=10, choices=ModelRole.choices, default=ModelRole.TEACHER)
    format = models.CharField(max_length=12, choices=ModelFormat.choices)
    status = models.CharField(max_length=10, choices=ModelStatus.choices, default=ModelStatus.IMPORTING)
    error = models.TextField(blank=True)
    #: The model this one was converted from (GGUF -> HF checkpoint, or back).
    derived_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="derivatives"
    )
    architecture = models.CharField(max_length=60, blank=True)
    parameter_count = models.BigIntegerField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    file_type = models.CharField(max_length=40, blank=True)
    #: Header facts (block count, embedding length, heads, context, vocabulary, chat template, ...).
    metadata = models.JSONField(default=dict, blank=True)
    #: {"chat": bool, "analysis": bool, "distillation": bool, "reasons": {...}}
    capabilities = models.JSONField(default=dict, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def can(self, phase: str) -> bool:
        return bool(self.capabilities.get(phase))


class ModelFile(TenantModel):
    """One file of a model, as it is laid out in the model's folder."""

    tenant_field = "model__organization"

    model = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="files")
    #: Path inside the model's folder (e.g. "model-00001-of-00002.safetensors").
    path = models.CharField(max_length=500)
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="model_files")

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["model", "path"], name="uniq_model_file_path")]

    def __str__(self) -> str:
        return self.path


class TensorRecord(TenantModel):
    """One tensor of a model ("atomization"): where its bytes are and what they are."""

    tenant_field = "model__organization"

    model = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="tensors")
    file = models.ForeignKey(ModelFile, on_delete=models.CASCADE, related_name="tensors")
    name = models.CharField(max_length=200)
    #: Transformer block index, or None for embeddings, final norm, output head.
    layer = models.IntegerField(null=True, blank=True)
    #: attn_q, attn_k, attn_v, attn_o, mlp_gate, mlp_up, mlp_down, norm, embedding, output_head, other
    component = models.CharField(max_length=20)
    #: PyTorch order (GGUF lists dimensions the other way round).
    shape = models.JSONField(default=list)
    dtype = models.CharField(max_length=20)
    n_params = models.BigIntegerField()
    offset = models.BigIntegerField()
    n_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)

    class Meta:
        ordering = ["model", "offset"]
        indexes = [models.Index(fields=["model", "layer", "component"], name="tensor_model_layer_comp")]

    def __str__(self) -> str:
        return self.name
