from django import template

from readerstudy.operations import links

register = template.Library()


@register.simple_tag
def import_url(study_id: int) -> str:
    return links.import_url(study_id)
