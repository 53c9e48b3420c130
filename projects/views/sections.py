"""A placeholder page for a section whose capability has not landed yet."""

from __future__ import annotations

from projects.views.base import OrgPageView


class SectionView(OrgPageView):
    """A section whose content arrives with a later capability (models, datasets, …)."""

    template_name = "section_empty.html"
    section: str = ""
    explanation: str = ""

    def get_context_data(self, **kwargs):
        return super().get_context_data(section=self.section, explanation=self.explanation, **kwargs)
