"""Where each page of a study is, and which page fixes each unmet readiness check."""

from django.urls import NoReverseMatch, reverse

from readerstudy.studies.models import Study


def import_url(study_id: int) -> str:
    """The import page (built by another part of operations): by name once it exists, else by its path."""
    try:
        return reverse("operations:import", args=[study_id])
    except NoReverseMatch:
        return f"{reverse('operations:overview', args=[study_id])}import/"


# readiness check key -> (page, what to do there)
FIXES = {
    "status": ("overview", "a launched or closed study cannot be launched again"),
    "modalities": ("configure", "add the modalities on the configuration page"),
    "sequential": ("configure", "put the unaided modality first on the configuration page"),
    "readers": ("readers", "add readers"),
    "cases": ("import", "import cases"),
    "truth": ("import", "import cases with truth for both classes"),
    "series": ("import", "re-import the cases whose series cannot be read"),
    "predictions": ("precompute", "precompute DL predictions, or accept launching without them"),
    "reader_groups": ("readers", "add readers, or fewer split-plot groups on the configuration page"),
    "planned_power": ("planning", "store a pilot and the plan's effect size (planning page)"),
}


def fix_link(study: Study, key: str) -> tuple[str, str]:
    """(url, text) of what fixes the check ``key``."""
    page, text = FIXES.get(key, ("overview", "see the overview"))
    if page == "import":
        return import_url(study.pk), text
    if page == "precompute":
        return reverse("operations:overview", args=[study.pk]) + "#precompute", text
    return reverse(f"operations:{page}", args=[study.pk]), text
