"""The projects app's models, one module per area, re-exported here (``from projects.models import Job``).

- ``tenancy``: organisations, memberships and roles, invitations, API tokens
- ``projects``: projects
- ``jobs``: the row behind every background job
- ``blobs``: content-addressed files
- ``teachers``: teacher language models, their files and tensor inventory
- ``uploads``: chunked uploads
- ``datasets``: domain, control and prompt-pair datasets
"""

from projects.models.blobs import Blob
from projects.models.datasets import Dataset, DatasetFormat, DatasetRole, DatasetStatus
from projects.models.jobs import Job, JobStatus
from projects.models.projects import Project, ProjectQuerySet
from projects.models.teachers import LanguageModel, ModelFile, ModelFormat, ModelRole, ModelStatus, TensorRecord
from projects.models.tenancy import (
    ApiToken,
    ApiTokenQuerySet,
    Invitation,
    InvitationQuerySet,
    Membership,
    Organization,
    OrganizationQuerySet,
    Role,
    hash_secret,
)
from projects.models.uploads import Upload, UploadStatus

__all__ = [
    "ApiToken",
    "ApiTokenQuerySet",
    "Blob",
    "Dataset",
    "DatasetFormat",
    "DatasetRole",
    "DatasetStatus",
    "Invitation",
    "InvitationQuerySet",
    "Job",
    "JobStatus",
    "LanguageModel",
    "Membership",
    "ModelFile",
    "ModelFormat",
    "ModelRole",
    "ModelStatus",
    "Organization",
    "OrganizationQuerySet",
    "Project",
    "ProjectQuerySet",
    "Role",
    "TensorRecord",
    "Upload",
    "UploadStatus",
    "hash_secret",
]
