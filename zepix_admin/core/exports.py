"""CSV exports that a spreadsheet cannot turn against its reader."""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """Text that a spreadsheet would run as a formula (`=HYPERLINK(...)`) is prefixed with a
    quote so it shows as text; numbers, dates and empty cells pass unchanged (OWASP's advice)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
