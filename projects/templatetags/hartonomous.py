from django import template

register = template.Library()


@register.filter
def label(key: str) -> str:
    """A stored key as people read it: a job kind's title, or the words of a snake_case key."""
    from projects.background import registry

    kind = registry.get(key)
    if kind is not None:
        return kind.title
    text = str(key).replace("_", " ").replace(" kv", " (key/value)")
    return text[:1].upper() + text[1:]


@register.filter
def is_mapping(value) -> bool:
    return isinstance(value, dict)


@register.filter
def get(mapping, key):
    """``mapping|get:key`` — look up a key that is not a valid template variable name."""
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def split(value: str) -> list[str]:
    return str(value).split()


@register.filter
def human_count(value) -> str:
    """134515008 -> "134.5 M"."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—"
    for limit, suffix in ((1e12, " T"), (1e9, " B"), (1e6, " M"), (1e3, " k")):
        if abs(number) >= limit:
            return f"{number / limit:.1f}{suffix}"
    return f"{int(number)}"
