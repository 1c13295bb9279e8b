"""Numbers as operators read them: thousands separators, money with its currency, prices to the
digits their symbol is quoted in."""

from django import template

register = template.Library()

CURRENCY = "$"  # the bot's account currency (profits are in dollars: profit_dollars)


def _number(value, digits: int) -> str:
    return f"{abs(float(value)):,.{digits}f}"


@register.filter
def money(value) -> str:
    """1234.5 -> "$1,234.50"; -12 -> "−$12.00"; None -> ""."""
    if value is None or value == "":
        return ""
    sign = "−" if float(value) < 0 else ""
    return f"{sign}{CURRENCY}{_number(value, 2)}"


@register.filter
def count(value) -> str:
    """12345 -> "12,345"."""
    if value is None or value == "":
        return ""
    return f"{int(value):,}"


def symbol_digits(symbol: str) -> int:
    """The digits a symbol is quoted in: yen pairs 3, gold and silver 2, other pairs 5."""
    symbol = (symbol or "").upper()
    if symbol.startswith(("XAU", "XAG")):
        return 2
    if "JPY" in symbol:
        return 3
    return 5


@register.filter
def price(value, symbol: str = "") -> str:
    """A price to its symbol's digits: price 1.0853 "EURUSD" -> "1.08530"; 151.2 "USDJPY" -> "151.200"."""
    if value is None or value == "":
        return ""
    digits = symbol_digits(symbol)
    return f"{'-' if float(value) < 0 else ''}{_number(value, digits)}"
