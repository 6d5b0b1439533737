"""The one exception the analysis raises for bad input (stdlib only: the web app imports it)."""


class AnalysisInputError(ValueError):
    """Input the analysis cannot use; the message names the row/column/value and what was expected."""
