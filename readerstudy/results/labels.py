"""Size-stratum labels for people: their order by bin and their display ("<=10" -> "≤10 mm")."""

import re


def stratum_key(label: str) -> tuple[int, float, str]:
    """'<=10' < '10-30' < '>30' < anything else (the analysis JSON sorts labels as text)."""
    numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", label)]
    if label.startswith("<=") and numbers:
        return (0, numbers[0], label)
    if label.startswith(">") and numbers:
        return (2, numbers[0], label)
    if len(numbers) == 2:
        return (1, numbers[0], label)
    return (3, 0.0, label)


def stratum_display(label: str) -> str:
    if label == "overall":
        return "Overall"
    m = re.fullmatch(r"<=\s*([\d.]+)", label)
    if m:
        return f"≤{m.group(1)} mm"
    m = re.fullmatch(r">\s*([\d.]+)", label)
    if m:
        return f">{m.group(1)} mm"
    m = re.fullmatch(r"([\d.]+)-([\d.]+)", label)
    if m:
        return f"{m.group(1)}–{m.group(2)} mm"
    return label
