from django import template

register = template.Library()


@register.filter
def label(key: str) -> str:
    """A stored key as people read it: a job kind's title, or the words of a snake_case key."""
    from projects.jobs_base import registry

    kind = registry.get(key)
    if kind is not None:
        return kind.title
    text = str(key).replace("_", " ")
    return text[:1].upper() + text[1:]


@register.filter
def is_mapping(value) -> bool:
    return isinstance(value, dict)
